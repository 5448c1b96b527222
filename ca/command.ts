// `meshlet ca`: the mesh's certificate authority, on the Kubernetes API.
import { Command } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { CA_FLAGS, DEFAULT_WAYPOINT_IMAGE, parseListen, parseSecretRef, type CaConfig } from '../lib/config/ca.ts';
import { addFlags } from '../lib/config/flags.ts';
import { jsonLogger } from '../lib/core/log.ts';
import { startCa } from './service.ts';

export function caCommand(): Command {
  const command = new Command('ca')
    .description('run the mesh CA: keep the root in a Secret, sign workload certificates for the ztunnels whose nodes host them, and (--waypoint-controller) deploy waypoint Gateways');
  return addFlags(command, CA_FLAGS)
    .action(async (flags: CaConfig) => {
      const { host, port } = parseListen(flags.listen);
      const { defaultTtl: defaultTtlSeconds, maxTtl: maxTtlSeconds } = flags;
      if (defaultTtlSeconds > maxTtlSeconds) throw new ConfigError(`--default-ttl (${defaultTtlSeconds} s) exceeds --max-ttl (${maxTtlSeconds} s)`);
      if (flags.waypointController && flags.waypointCaUrl === undefined) {
        throw new ConfigError('--waypoint-controller needs --waypoint-ca-url: this CA\'s address as waypoint pods reach it (e.g. https://meshlet-ca.meshlet-system.svc:15012)');
      }
      const log = jsonLogger('ca');
      const ca = await startCa({
        host, port, stateDir: flags.stateDir, kubeconfig: flags.kubeconfig, rootSecret: parseSecretRef(flags.rootSecret),
        tokenAudience: flags.tokenAudience, nodeAccounts: flags.nodeAccount,
        trustDomain: flags.trustDomain, defaultTtlSeconds, maxTtlSeconds, serverNames: flags.serverName, log,
        ...(flags.signRate === undefined ? {} : { signRatePerSecond: flags.signRate }),
        ...(flags.signBurst === undefined ? {} : { signBurst: flags.signBurst }),
        ...(flags.waypointController && flags.waypointCaUrl !== undefined
          ? { waypoints: { image: flags.waypointImage ?? DEFAULT_WAYPOINT_IMAGE, caUrl: flags.waypointCaUrl } }
          : {}),
      });
      const shutdown = () => void ca.close().then(() => process.exit(0));
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
}

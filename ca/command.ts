// `meshlet ca`: the mesh's certificate authority, on the Kubernetes API.
import { Command } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { CA_FLAGS, parseListen, parseSecretRef, type CaConfig } from '../lib/config/ca.ts';
import { addFlags } from '../lib/config/flags.ts';
import { jsonLogger } from '../lib/core/log.ts';
import { startCa } from './service.ts';

export function caCommand(): Command {
  const command = new Command('ca')
    .description('run the mesh CA: keep the root in a Secret, sign workload certificates for the ztunnels whose nodes host them');
  return addFlags(command, CA_FLAGS)
    .action(async (flags: CaConfig) => {
      const { host, port } = parseListen(flags.listen);
      const { defaultTtl: defaultTtlSeconds, maxTtl: maxTtlSeconds } = flags;
      if (defaultTtlSeconds > maxTtlSeconds) throw new ConfigError(`--default-ttl (${defaultTtlSeconds} s) exceeds --max-ttl (${maxTtlSeconds} s)`);
      const log = jsonLogger('ca');
      const ca = await startCa({
        host, port, stateDir: flags.stateDir, kubeconfig: flags.kubeconfig, rootSecret: parseSecretRef(flags.rootSecret),
        tokenAudience: flags.tokenAudience, nodeAccounts: flags.nodeAccount,
        trustDomain: flags.trustDomain, defaultTtlSeconds, maxTtlSeconds, serverNames: flags.serverName, log,
        ...(flags.signRate === undefined ? {} : { signRatePerSecond: flags.signRate }),
        ...(flags.signBurst === undefined ? {} : { signBurst: flags.signBurst }),
      });
      const shutdown = () => void ca.close().then(() => process.exit(0));
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
}

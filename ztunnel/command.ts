// `meshlet ztunnel`: the node proxy, run in the node's network namespace and
// its own cgroup (the capture hooks recognise it by that cgroup).
import { Command } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { drainOnSignal } from '../lib/core/drain-on-signal.ts';
import { addFlags } from '../lib/config/flags.ts';
import { ZTUNNEL_FLAGS, type ZtunnelConfig } from '../lib/config/ztunnel.ts';
import { CaClient } from '../lib/identity/ca-client.ts';
import { CertificateStore } from '../lib/identity/store.ts';
import { jsonLogger, type Logger } from '../lib/core/log.ts';
import type { MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { startZtunnel } from './ztunnel.ts';

/** Certificates from the CA when one is configured; all three CA flags go together. */
function identityFrom(opts: ZtunnelConfig, log: Logger): { identity?: MeshIdentity } {
  const given = [opts.caUrl, opts.caBundle, opts.caTokenFile].filter((v) => v !== undefined).length;
  if (given === 0 && opts.plaintextTunnels) return {};
  if (given === 0) throw new ConfigError('the ztunnel needs --ca-url, --ca-bundle and --ca-token-file to secure tunnels with mutual TLS (--plaintext-tunnels runs without a CA, for tests only)');
  if (given < 3) throw new ConfigError('--ca-url, --ca-bundle and --ca-token-file go together: the ztunnel needs all three to get certificates');
  const issuer = new CaClient({ url: opts.caUrl!, bundleFile: opts.caBundle!, tokenFile: opts.caTokenFile! });
  const certs = new CertificateStore({ issuer, log, ...(opts.certTtl ? { ttlSeconds: opts.certTtl } : {}) });
  return { identity: { trustDomain: opts.trustDomain, certs } };
}

export function ztunnelCommand(): Command {
  const command = new Command('ztunnel')
    .description('run the node proxy: outbound capture, inbound tunnel, flow table and admin API (started per node, next to the agent)');
  return addFlags(command, ZTUNNEL_FLAGS)
    .action(async (opts: ZtunnelConfig) => {
      const log = jsonLogger('ztunnel');
      const zt = await startZtunnel({ ...opts, log, ...identityFrom(opts, log) });
      zt.listeningForTraffic.catch((err: unknown) => {
        log.error('cannot listen for traffic', { error: err instanceof Error ? err.message : String(err) });
        process.exit(1);
      });
      await drainOnSignal(log, opts.drainSeconds, (drainMs) => zt.shutdown(drainMs));
    });
}

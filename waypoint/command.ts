// `meshlet waypoint`: the L7 proxy of one waypoint Gateway, run in the pod
// the waypoint controller deploys for it (ca/waypoint-objects.ts).
import { Command } from 'commander';
import { addFlags } from '../lib/config/flags.ts';
import { parseGatewayRef, parseListenAddress, WAYPOINT_FLAGS, type WaypointConfig } from '../lib/config/waypoint.ts';
import { drainOnSignal } from '../lib/core/drain-on-signal.ts';
import { ConfigError } from '../lib/core/errors.ts';
import { jsonLogger, type Logger } from '../lib/core/log.ts';
import { CaClient } from '../lib/identity/ca-client.ts';
import { CertificateStore } from '../lib/identity/store.ts';
import { limitHeapGrowth } from './heap-growth.ts';
import { atLevel } from './log-level.ts';
import { enableLinearRegexpFallback } from './regexp-engine.ts';
import { startWaypoint } from './waypoint.ts';

// Before any route's pattern is compiled (regexp-engine.ts says why).
enableLinearRegexpFallback();
limitHeapGrowth();

/** Its certificate from the CA when one is configured; all three CA flags go together. */
function certsFrom(opts: WaypointConfig, log: Logger): CertificateStore | undefined {
  const given = [opts.caUrl, opts.caBundle, opts.caTokenFile].filter((v) => v !== undefined).length;
  if (given === 0 && opts.plaintextTunnels) return undefined;
  if (given === 0) throw new ConfigError('the waypoint needs --ca-url, --ca-bundle and --ca-token-file to hold its identity and speak mutual TLS (--plaintext-tunnels runs without a CA, for tests only)');
  if (given < 3) throw new ConfigError('--ca-url, --ca-bundle and --ca-token-file go together: the waypoint needs all three to get its certificate');
  const issuer = new CaClient({ url: opts.caUrl!, bundleFile: opts.caBundle!, tokenFile: opts.caTokenFile! });
  return new CertificateStore({ issuer, log, ...(opts.certTtl ? { ttlSeconds: opts.certTtl } : {}) });
}

export function waypointCommand(): Command {
  const command = new Command('waypoint')
    .description('run a waypoint: the L7 proxy (routes, retries, timeouts, faults, mirrors, L7 policy) for the traffic bound to one Gateway of class istio-waypoint');
  return addFlags(command, WAYPOINT_FLAGS)
    .action(async (opts: WaypointConfig) => {
      const log = atLevel(jsonLogger('waypoint'), opts.logLevel);
      const gateway = parseGatewayRef(opts.gateway, '--gateway');
      const certs = certsFrom(opts, log);
      const readiness = parseListenAddress(opts.readiness, '--readiness');
      const admin = parseListenAddress(opts.admin, '--admin');
      const metrics = parseListenAddress(opts.metrics, '--metrics');
      const waypoint = await startWaypoint({
        gateway,
        trustDomain: opts.trustDomain,
        serviceAccount: opts.serviceAccount ?? gateway.name,
        ...(certs ? { certs } : {}),
        listen: parseListenAddress(opts.listen, '--listen'),
        ...(readiness.port !== 0 ? { readiness } : {}),
        ...(admin.port !== 0 ? { admin } : {}),
        ...(metrics.port !== 0 ? { metrics } : {}),
        hbonePort: opts.hbonePort,
        log,
        // The controller's Deployment sets POD_NAME (the downward API): recent requests are named after the pod.
        ...(process.env.POD_NAME ? { name: process.env.POD_NAME } : {}),
        ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
        onFatal: (error) => {
          process.stderr.write(`meshlet: ${error instanceof Error ? error.message : String(error)}\n`);
          process.exit(1);
        },
      });
      await drainOnSignal(log, opts.drainSeconds, (drainMs) => waypoint.shutdown(drainMs));
    });
}

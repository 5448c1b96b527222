// `meshlet ztunnel`: the node proxy, run in the node's network namespace and
// its own cgroup (the capture hooks recognise it by that cgroup).
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { PORTS } from '../lib/mesh/model.ts';
import { parseDuration } from '../lib/core/duration.ts';
import { CaClient } from '../lib/identity/ca-client.ts';
import { DEFAULT_TRUST_DOMAIN, trustDomainProblem } from '../lib/identity/spiffe.ts';
import { CertificateStore } from '../lib/identity/store.ts';
import { jsonLogger, type Logger } from '../lib/core/log.ts';
import type { MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { startZtunnel, type ZtunnelOptions } from './ztunnel.ts';

/** The flags: the ztunnel's options, plus how to reach the CA. */
interface ZtunnelCliOptions extends Omit<ZtunnelOptions, 'log' | 'identity'> {
  drainSeconds: number;
  trustDomain: string;
  caUrl?: string;
  caBundle?: string;
  caTokenFile?: string;
  certTtl?: number;
  plaintextTunnels?: boolean;
}

const ipOf = (family: 4 | 6) => (value: string, flag: string): string => {
  if (isIP(value) !== family) throw new ConfigError(`${flag} must be an IPv${family} address, got "${value}"`);
  return value;
};

function parsePort(flag: string, { zero = false } = {}) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < (zero ? 0 : 1) || n > 65535) throw new ConfigError(`${flag} must be a port number${zero ? ' (0 turns it off)' : ''}, got "${value}"`);
    return n;
  };
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`--drain-seconds must be a non-negative number, got "${value}"`);
  return n;
}

const ipOption = (flags: string, description: string, family: 4 | 6) => {
  const flag = flags.split(' ')[0];
  return new Option(flags, description).argParser((v: string) => ipOf(family)(v, flag));
};

/** Certificates from the CA when one is configured; all three CA flags go together. */
function identityFrom(opts: ZtunnelCliOptions, log: Logger): { identity?: MeshIdentity } {
  const given = [opts.caUrl, opts.caBundle, opts.caTokenFile].filter((v) => v !== undefined).length;
  if (given === 0 && opts.plaintextTunnels) return {};
  if (given === 0) throw new ConfigError('the ztunnel needs --ca-url, --ca-bundle and --ca-token-file to secure tunnels with mutual TLS (--plaintext-tunnels runs without a CA, for tests only)');
  if (given < 3) throw new ConfigError('--ca-url, --ca-bundle and --ca-token-file go together: the ztunnel needs all three to get certificates');
  const problem = trustDomainProblem(opts.trustDomain);
  if (problem) throw new ConfigError(`--trust-domain: ${problem}`);
  const issuer = new CaClient({ url: opts.caUrl!, bundleFile: opts.caBundle!, tokenFile: opts.caTokenFile! });
  const certs = new CertificateStore({ issuer, log, ...(opts.certTtl ? { ttlSeconds: opts.certTtl } : {}) });
  return { identity: { trustDomain: opts.trustDomain, certs } };
}

export function ztunnelCommand(): Command {
  return new Command('ztunnel')
    .description('run the node proxy: outbound capture, inbound tunnel, flow table and admin API (started per node, next to the agent)')
    .requiredOption('--node <name>', 'name of this node in mesh state')
    .addOption(ipOption('--capture-ip4 <ip>', 'IPv4 address the capture hooks redirect outbound connections to', 4).makeOptionMandatory())
    .addOption(ipOption('--capture-ip6 <ip>', 'IPv6 capture address', 6))
    .addOption(ipOption('--node-ip <ip>', 'node IPv4 address: inbound tunnel and readiness listeners', 4).makeOptionMandatory())
    .addOption(ipOption('--node-ip6 <ip>', 'node IPv6 address', 6))
    .addOption(ipOption('--inbound-source-ip <ip>', 'source of connections to local pods, as the ingress hook admits it (default: --node-ip)', 4))
    .addOption(ipOption('--inbound-source-ip6 <ip>', 'IPv6 source of connections to local pods (default: --node-ip6)', 6))
    .requiredOption('--control-socket <path>', 'Unix socket the agent pushes state to')
    .requiredOption('--admin-socket <path>', 'Unix socket of the admin API (flows, state, health)')
    .addOption(new Option('--outbound-port <port>', 'outbound capture port').argParser(parsePort('--outbound-port')).default(PORTS.outbound))
    .addOption(new Option('--hbone-port <port>', 'inbound tunnel port, here and on peers').argParser(parsePort('--hbone-port')).default(PORTS.hbone))
    .addOption(new Option('--admin-port <port>', 'admin API on 127.0.0.1 (0: off)').argParser(parsePort('--admin-port', { zero: true })).default(PORTS.admin))
    .addOption(new Option('--readiness-port <port>', 'GET /healthz/ready on the node IPs (0: off)').argParser(parsePort('--readiness-port', { zero: true })).default(PORTS.readiness))
    .addOption(new Option('--metrics-port <port>', 'Prometheus /metrics on the node IPs (0: admin socket only)').argParser(parsePort('--metrics-port', { zero: true })).default(PORTS.metrics))
    .addOption(new Option('--drain-seconds <s>', 'on SIGTERM, how long open connections may finish').argParser(parseSeconds).default(5))
    .option('--trust-domain <domain>', 'SPIFFE trust domain of the mesh', DEFAULT_TRUST_DOMAIN)
    .option('--ca-url <url>', 'the mesh CA (meshlet ca), e.g. https://10.200.0.2:15012; without it tunnels are cleartext')
    .option('--ca-bundle <file>', 'PEM file of the mesh root the CA and peers chain to')
    .option('--ca-token-file <file>', 'this node\'s bootstrap credential for the CA')
    .option('--plaintext-tunnels', 'no CA: tunnels between nodes are cleartext HTTP/2 (tests only; never in a mesh)')
    .addOption(new Option('--cert-ttl <duration>', 'workload certificate lifetime to ask for, e.g. 30s or 24h (rotation at half)').argParser((v: string) => parseDuration(v, '--cert-ttl')))
    .action(async (opts: ZtunnelCliOptions) => {
      const log = jsonLogger('ztunnel');
      const zt = await startZtunnel({ ...opts, log, ...identityFrom(opts, log) });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info('signal', { signal });
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      // Open flows are cut after the drain time; this only guards against a peer that never lets a session close.
      setTimeout(() => {
        log.error('shutdown_timeout');
        process.exit(1);
      }, opts.drainSeconds * 1000 + 5000).unref();
      await zt.shutdown(opts.drainSeconds * 1000);
    });
}

// `meshlet ca`: the mesh's certificate authority.
import { Command } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { DEFAULT_TRUST_DOMAIN, trustDomainProblem } from '../lib/identity/spiffe.ts';
import { jsonLogger } from '../lib/core/log.ts';
import { parseDuration } from '../lib/core/duration.ts';
import { startCa } from './service.ts';

interface CaFlags {
  listen: string;
  stateDir: string;
  stateFile: string;
  nodeTokens: string;
  trustDomain: string;
  defaultTtl: string;
  maxTtl: string;
  serverName: string[];
}

/** "ip:port" or "[ipv6]:port". */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(`--listen ${JSON.stringify(text)} is not ip:port (e.g. 0.0.0.0:15012 or [::]:15012)`);
  return { host: (match[1] ?? match[2])!, port };
}

export function caCommand(): Command {
  return new Command('ca')
    .description('run the mesh CA: keep the root, sign workload certificates for the nodes that host them')
    .option('--listen <ip:port>', 'HTTPS address to serve on', '0.0.0.0:15012')
    .requiredOption('--state-dir <dir>', 'directory holding the mesh root (created on first start, reused after); its root-cert.pem is the trust bundle')
    .requiredOption('--state-file <path>', 'YAML file of Kubernetes objects: which node runs which service accounts')
    .requiredOption('--node-tokens <file>', 'JSON {"<node>": "<bearer token>"} of node bootstrap credentials, re-read on change')
    .option('--trust-domain <name>', 'SPIFFE trust domain', DEFAULT_TRUST_DOMAIN)
    .option('--default-ttl <duration>', 'certificate lifetime when the request names none (s, m, h, d)', '24h')
    .option('--max-ttl <duration>', 'longest lifetime granted; longer requests are capped', '720h')
    .option('--server-name <name...>', 'extra DNS names or IPs clients reach the CA by', [])
    .action(async (flags: CaFlags) => {
      const { host, port } = parseListen(flags.listen);
      const problem = trustDomainProblem(flags.trustDomain);
      if (problem) throw new ConfigError(`--trust-domain ${JSON.stringify(flags.trustDomain)}: ${problem}`);
      const defaultTtlSeconds = parseDuration(flags.defaultTtl, '--default-ttl');
      const maxTtlSeconds = parseDuration(flags.maxTtl, '--max-ttl');
      if (defaultTtlSeconds > maxTtlSeconds) throw new ConfigError(`--default-ttl ${flags.defaultTtl} exceeds --max-ttl ${flags.maxTtl}`);
      const log = jsonLogger('ca');
      const ca = await startCa({
        host, port, stateDir: flags.stateDir, stateFile: flags.stateFile, nodeTokensFile: flags.nodeTokens,
        trustDomain: flags.trustDomain, defaultTtlSeconds, maxTtlSeconds, serverNames: flags.serverName, log,
      });
      const shutdown = () => void ca.close().then(() => process.exit(0));
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
}

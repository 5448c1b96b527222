// `meshlet ca`'s configuration: its flags, parsed and validated, and what a
// launcher passes (configArgs) to start one.
import { ConfigError } from '../core/errors.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import { durationFlag, trustDomainFlag, type FlagTable } from './flags.ts';

export interface CaConfig {
  /** "ip:port" or "[ipv6]:port" to serve HTTPS on. */
  listen: string;
  stateDir: string;
  stateFile: string;
  nodeTokens: string;
  trustDomain: string;
  /** Seconds. */
  defaultTtl: number;
  /** Seconds. */
  maxTtl: number;
  serverName: string[];
}

/** "ip:port" or "[ipv6]:port". */
export function parseListen(text: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(`${flag} ${JSON.stringify(text)} is not ip:port (e.g. 0.0.0.0:15012 or [::]:15012)`);
  return { host: (match[1] ?? match[2])!, port };
}

export const CA_FLAGS: FlagTable<CaConfig> = {
  listen: { value: '<ip:port>', description: 'HTTPS address to serve on', default: '0.0.0.0:15012', parse: (text, flag) => (parseListen(text, flag), text) },
  stateDir: { value: '<dir>', description: 'directory holding the mesh root (created on first start, reused after); its root-cert.pem is the trust bundle', required: true },
  stateFile: { value: '<path>', description: 'YAML file of Kubernetes objects: which node runs which service accounts', required: true },
  nodeTokens: { value: '<file>', description: 'JSON {"<node>": "<bearer token>"} of node bootstrap credentials, re-read on change', required: true },
  trustDomain: { value: '<name>', description: 'SPIFFE trust domain', default: DEFAULT_TRUST_DOMAIN, parse: trustDomainFlag },
  defaultTtl: { value: '<duration>', description: 'certificate lifetime when the request names none (s, m, h, d)', default: 86_400, defaultLabel: '24h', parse: durationFlag },
  maxTtl: { value: '<duration>', description: 'longest lifetime granted; longer requests are capped', default: 720 * 3600, defaultLabel: '720h', parse: durationFlag },
  serverName: { value: '<name...>', description: 'extra DNS names or IPs clients reach the CA by', default: [] },
};

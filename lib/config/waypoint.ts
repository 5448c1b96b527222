// `meshlet waypoint`'s configuration: its flags, parsed and validated. The
// waypoint controller (ca/waypoint-objects.ts) is the launcher: it passes
// --gateway, --trust-domain and the three CA flags; the rest keep Istio's
// waypoint ports and meshlet's defaults.
import { ConfigError } from '../core/errors.ts';
import { canonicalIp, isPort } from '../core/ip.ts';
import { dnsLabelProblem, dnsSubdomainProblem } from '../cluster/names.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import { PORTS } from '../mesh/model.ts';
import { durationFlag, portFlag, secondsFlag, trustDomainFlag, type FlagTable } from './flags.ts';

export const LOG_LEVELS = ['info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface WaypointConfig {
  /** `<namespace>/<name>` of the waypoint's Gateway. */
  gateway: string;
  trustDomain: string;
  /** The waypoint's ServiceAccount; default the Gateway's name (the controller names it so). */
  serviceAccount?: string;
  caUrl?: string;
  caBundle?: string;
  caTokenFile?: string;
  plaintextTunnels?: boolean;
  /** Certificate lifetime to ask for, in seconds. */
  certTtl?: number;
  /** Absent: the pod's in-cluster configuration (its ServiceAccount token). */
  kubeconfig?: string;
  /** HBONE listener, `host:port`. */
  listen: string;
  /** GET /healthz/ready only (the kubelet's probe), `host:port`; port 0: off. */
  readiness: string;
  /** The admin API (recent requests, config, clusters, certs, memory), `host:port`; loopback by default, as Envoy's; port 0: off. */
  admin: string;
  /** Prometheus metrics, `host:port`; port 0: off. */
  metrics: string;
  /** The nodes' ztunnels' HBONE port: where hop 2 goes. */
  hbonePort: number;
  logLevel: LogLevel;
  /** On SIGTERM, how long open requests may finish. */
  drainSeconds: number;
}

/** A listen address as `host:port`, the host an IP (IPv6 in brackets). */
export interface ListenAddress {
  host: string;
  port: number;
}

/** `[::]:15008`, `0.0.0.0:15021`, `127.0.0.1:0`. */
export function parseListenAddress(text: string, flag: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const raw = m ? (m[1] ?? m[2]) : undefined;
  const host = raw === undefined ? undefined : canonicalIp(raw);
  const port = m ? Number(m[3]) : NaN;
  if (host === undefined || !(port === 0 || isPort(port)) || (m![1] !== undefined) !== host.includes(':')) {
    throw new ConfigError(`${flag} must be an address ip:port (IPv6 in brackets, e.g. [::]:${PORTS.hbone}), got "${text}"`);
  }
  return { host, port };
}

const addressFlag = (text: string, flag: string): string => {
  parseListenAddress(text, flag);
  return text;
};

/** `<namespace>/<name>`, both as Kubernetes names them. */
export function parseGatewayRef(text: string, flag: string): { namespace: string; name: string } {
  const [namespace, name, ...rest] = text.split('/');
  const problem = rest.length > 0 || namespace === undefined || name === undefined
    ? 'is not <namespace>/<name>'
    : (dnsLabelProblem(namespace, 'its namespace') ?? dnsLabelProblem(name, 'its name'));
  if (problem) throw new ConfigError(`${flag} "${text}": ${problem}; name the waypoint's Gateway, e.g. --gateway demo/waypoint`);
  return { namespace: namespace!, name: name! };
}

const gatewayFlag = (text: string, flag: string): string => {
  parseGatewayRef(text, flag);
  return text;
};

const serviceAccountFlag = (text: string, flag: string): string => {
  const problem = dnsSubdomainProblem(text, flag);
  if (problem) throw new ConfigError(problem);
  return text;
};

const logLevelFlag = (text: string, flag: string): LogLevel => {
  if (!(LOG_LEVELS as readonly string[]).includes(text)) throw new ConfigError(`${flag} must be one of ${LOG_LEVELS.join(', ')}, got "${text}"`);
  return text as LogLevel;
};

export const WAYPOINT_FLAGS: FlagTable<WaypointConfig> = {
  gateway: { value: '<namespace>/<name>', description: 'the waypoint\'s Gateway (class istio-waypoint or meshlet-waypoint): the routes, policies and traffic bound to it', required: true, parse: gatewayFlag },
  trustDomain: { value: '<domain>', description: 'SPIFFE trust domain of the mesh', default: DEFAULT_TRUST_DOMAIN, parse: trustDomainFlag },
  serviceAccount: { value: '<name>', description: 'the waypoint pod\'s ServiceAccount, whose identity it holds (default: the Gateway\'s name)', parse: serviceAccountFlag },
  caUrl: { value: '<url>', description: 'the mesh CA (meshlet ca), e.g. https://10.200.0.2:15012' },
  caBundle: { value: '<file>', description: 'PEM file of the mesh root the CA and peers chain to' },
  caTokenFile: { value: '<file>', description: 'the pod\'s projected ServiceAccount token for the CA (audience meshlet-ca), re-read on every request' },
  plaintextTunnels: { description: 'no CA: HBONE in and out is cleartext HTTP/2 (tests only; never in a mesh)' },
  certTtl: { value: '<duration>', description: 'certificate lifetime to ask for, e.g. 30s or 24h (renewed at half)', parse: durationFlag },
  kubeconfig: { value: '<path>', description: 'kubeconfig to read the cluster with (default: the pod\'s in-cluster ServiceAccount)' },
  listen: { value: '<ip:port>', description: 'HBONE listener (hop 1 from the ztunnels)', default: `[::]:${PORTS.hbone}`, parse: addressFlag },
  readiness: { value: '<ip:port>', description: 'GET /healthz/ready only (ready once the certificate is held and the config synced); port 0: off', default: `[::]:${PORTS.readiness}`, parse: addressFlag },
  admin: { value: '<ip:port>', description: 'admin API: GET /requests (recent requests, JSON; ?follow streams them), /config, /clusters, /certs, /memory; it shows paths and principals, so keep it on loopback; port 0: off', default: `127.0.0.1:${PORTS.admin}`, parse: addressFlag },
  metrics: { value: '<ip:port>', description: 'Prometheus /metrics; port 0: off', default: `[::]:${PORTS.metrics}`, parse: addressFlag },
  hbonePort: { value: '<port>', description: 'HBONE port of the nodes\' ztunnels (hop 2)', parse: portFlag(), default: PORTS.hbone },
  logLevel: { value: '<level>', description: `least severe log lines written: ${LOG_LEVELS.join(', ')}`, default: 'info', parse: logLevelFlag },
  drainSeconds: { value: '<s>', description: 'on SIGTERM, how long open requests may finish', parse: secondsFlag, default: 5 },
};

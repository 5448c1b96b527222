// `meshlet ca`'s configuration: its flags, parsed and validated, and what a
// launcher passes (configArgs) to start one.
import { ConfigError } from '../core/errors.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import { countFlag, durationFlag, httpsOriginFlag, objectRefFlag, rateFlag, trustDomainFlag, type FlagTable, type ObjectRef } from './flags.ts';

/** The audience the ztunnel's projected ServiceAccount token is issued for (serviceAccountToken.audience). */
export const DEFAULT_TOKEN_AUDIENCE = 'meshlet-ca';
/** The ztunnel DaemonSet's ServiceAccount, as TokenReview names its user. */
export const DEFAULT_NODE_ACCOUNT = 'system:serviceaccount:meshlet-system:meshlet-ztunnel';
/**
 * Signing requests per node: a ztunnel asks once per identity on its node at
 * start (at most a node's pods, 110 by default) and once per identity per half
 * certificate lifetime after; 50 at once and 10 a second serve a full node in
 * seconds, while holding a node that floods the CA to 10 signatures a second.
 */
export const DEFAULT_SIGN_RATE = 10;
export const DEFAULT_SIGN_BURST = 50;
/** Where the mesh root's certificate and key live. */
export const DEFAULT_ROOT_SECRET = 'meshlet-system/meshlet-ca-root';
/** The image waypoint Deployments run (`meshlet waypoint`): the one meshlet image (daemonset/Dockerfile), as the sandbox names it. */
export const DEFAULT_WAYPOINT_IMAGE = 'meshlet';

export interface CaConfig {
  /** "ip:port" or "[ipv6]:port" to serve HTTPS on. */
  listen: string;
  /** Where the CA writes the trust bundle (the root certificate, never its key). */
  stateDir: string;
  /** The CA's own ServiceAccount credentials. */
  kubeconfig: string;
  /** "<namespace>/<name>" of the Secret holding the mesh root. */
  rootSecret: string;
  tokenAudience: string;
  /** Usernames ("system:serviceaccount:<namespace>:<name>") whose pod-bound tokens may request certificates. */
  nodeAccount: string[];
  trustDomain: string;
  /** Seconds. */
  defaultTtl: number;
  /** Seconds. */
  maxTtl: number;
  serverName: string[];
  /** Signing requests per second per node (default DEFAULT_SIGN_RATE). */
  signRate?: number;
  /** Signing requests a node may make at once (default DEFAULT_SIGN_BURST). */
  signBurst?: number;
  /** Also run the waypoint controller: Gateways of class istio-waypoint or meshlet-waypoint become waypoint Deployments. */
  waypointController?: boolean;
  /** The image of the waypoint Deployments (default DEFAULT_WAYPOINT_IMAGE). */
  waypointImage?: string;
  /** This CA as waypoint pods reach it (https://host:port); required with waypointController. */
  waypointCaUrl?: string;
}

/** "ip:port" or "[ipv6]:port". */
export function parseListen(text: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(`${flag} ${JSON.stringify(text)} is not ip:port (e.g. 0.0.0.0:15012 or [::]:15012)`);
  return { host: (match[1] ?? match[2])!, port };
}

/** An https URL with a host, as the ztunnels' and waypoints' --ca-url take it. */
export const parseCaUrl = httpsOriginFlag('the CA', 'https://meshlet-ca.meshlet-system.svc:15012');

const secretRef = objectRefFlag('a Secret', DEFAULT_ROOT_SECRET);

/** "<namespace>/<name>" of a Secret, as Kubernetes names them. */
export function parseSecretRef(text: string, flag = '--root-secret'): ObjectRef {
  return secretRef(text, flag);
}

export const CA_FLAGS: FlagTable<CaConfig> = {
  listen: { value: '<ip:port>', description: 'HTTPS address to serve on', default: '0.0.0.0:15012', parse: (text, flag) => (parseListen(text, flag), text) },
  stateDir: { value: '<dir>', description: 'directory the CA writes root-cert.pem into, the trust bundle clients pin (the root key stays in --root-secret)', required: true },
  kubeconfig: { value: '<path>', description: 'kubeconfig of the CA\'s ServiceAccount: it watches pods, reviews tokens and keeps the root Secret', required: true },
  rootSecret: { value: '<namespace/name>', description: 'Secret holding the mesh root (tls.crt, tls.key); created with a new root when missing, never overwritten', default: DEFAULT_ROOT_SECRET, parse: (text, flag) => (parseSecretRef(text, flag), text) },
  tokenAudience: { value: '<audience>', description: 'audience of the ztunnels\' projected ServiceAccount tokens', default: DEFAULT_TOKEN_AUDIENCE },
  nodeAccount: { value: '<user...>', description: 'ServiceAccount user (system:serviceaccount:<ns>:<name>) whose pod-bound tokens speak for a node; repeatable', default: [DEFAULT_NODE_ACCOUNT] },
  trustDomain: { value: '<name>', description: 'SPIFFE trust domain', default: DEFAULT_TRUST_DOMAIN, parse: trustDomainFlag },
  defaultTtl: { value: '<duration>', description: 'certificate lifetime when the request names none (s, m, h, d)', default: 86_400, defaultLabel: '24h', parse: durationFlag },
  maxTtl: { value: '<duration>', description: 'longest lifetime granted; longer requests are capped', default: 720 * 3600, defaultLabel: '720h', parse: durationFlag },
  serverName: { value: '<name...>', description: 'extra DNS names or IPs clients reach the CA by', default: [] },
  signRate: { value: '<per-second>', description: `signing requests per second each node may make; more are answered 429 (default ${DEFAULT_SIGN_RATE})`, parse: rateFlag },
  signBurst: { value: '<n>', description: `signing requests a node may make at once before --sign-rate applies (default ${DEFAULT_SIGN_BURST})`, parse: countFlag },
  waypointController: { description: 'also reconcile Gateways of class istio-waypoint or meshlet-waypoint into waypoint Deployments, Services and ServiceAccounts, and write their status' },
  waypointImage: { value: '<image>', description: `image of the waypoint Deployments (default ${DEFAULT_WAYPOINT_IMAGE})`, parse: imageFlag },
  waypointCaUrl: { value: '<url>', description: 'this CA as waypoint pods reach it, passed to them as --ca-url (e.g. https://meshlet-ca.meshlet-system.svc:15012); required with --waypoint-controller', parse: parseCaUrl },
};

function imageFlag(text: string, flag: string): string {
  if (text === '' || /\s/.test(text)) throw new ConfigError(`${flag} ${JSON.stringify(text)} is not an image reference (e.g. registry.example/meshlet:0.1.0)`);
  return text;
}

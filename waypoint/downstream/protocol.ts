// Which protocol a Service port declares, after Istio's rules
// (pkg/config/protocol): `appProtocol` wins when it names a protocol Istio
// knows (including Kubernetes' kubernetes.io/h2c, /ws and /wss), else the
// port name's prefix before the first '-' (`http`, `http-web`, `grpc-api`),
// case-insensitively; anything else is undeclared. And how the waypoint
// serves each: the HTTP family through its HTTP servers, the TCP family as L4
// passthrough, an undeclared port by looking at the client's first bytes.

/** A Service port's name and appProtocol, as the Service declares them. */
export interface PortDeclaration {
  name?: string;
  appProtocol?: string;
}

export type PortProtocol = 'http' | 'http2' | 'grpc' | 'grpc-web' | 'http-proxy' | 'https' | 'tls' | 'tcp' | 'mongo' | 'mysql' | 'redis' | 'udp';

/** Istio's protocol names, lower-cased. */
const BY_NAME: Readonly<Record<string, PortProtocol>> = {
  http: 'http',
  http2: 'http2',
  grpc: 'grpc',
  'grpc-web': 'grpc-web',
  http_proxy: 'http-proxy',
  https: 'https',
  tls: 'tls',
  tcp: 'tcp',
  mongo: 'mongo',
  mysql: 'mysql',
  redis: 'redis',
  udp: 'udp',
};

/** Kubernetes' standard appProtocol values (KEP-3726). */
const KUBERNETES_APP_PROTOCOLS: Readonly<Record<string, PortProtocol>> = {
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'https',
};

const lookup = (table: Readonly<Record<string, PortProtocol>>, key: string): PortProtocol | undefined =>
  Object.hasOwn(table, key) ? table[key] : undefined;

function fromAppProtocol(appProtocol: string): PortProtocol | undefined {
  const value = appProtocol.toLowerCase();
  return lookup(KUBERNETES_APP_PROTOCOLS, value) ?? lookup(BY_NAME, value);
}

function fromPortName(name: string): PortProtocol | undefined {
  const lower = name.toLowerCase();
  // grpc-web is itself a name with a dash: it is the whole name or its prefix before a further dash.
  if (lower === 'grpc-web' || lower.startsWith('grpc-web-')) return 'grpc-web';
  return lookup(BY_NAME, lower.split('-')[0]!);
}

/** The protocol the port declares, or undefined when it declares none Istio knows. */
export function declaredProtocol(port: PortDeclaration): PortProtocol | undefined {
  const byApp = port.appProtocol ? fromAppProtocol(port.appProtocol) : undefined;
  return byApp ?? (port.name ? fromPortName(port.name) : undefined);
}

/**
 * How the waypoint serves a stream: `http` through its HTTP servers (HTTP/1.1
 * or, on the HTTP/2 preface, HTTP/2 with prior knowledge, as Envoy's AUTO
 * codec does), `tcp` as L4 passthrough, `detect` by the client's first bytes.
 */
export type Serving = 'http' | 'tcp' | 'detect';

export function servingOf(protocol: PortProtocol | undefined): Serving {
  switch (protocol) {
    case 'http':
    case 'http2':
    case 'grpc':
    case 'grpc-web':
    case 'http-proxy':
      return 'http';
    case undefined:
      return 'detect';
    default:
      // TLS the waypoint cannot terminate, and the protocols Istio proxies at L4.
      return 'tcp';
  }
}

/** Whether the port declares HTTP/2 (or gRPC): the upstream may then speak HTTP/2 even to an HTTP/1.1 client. */
export const declaresHttp2 = (protocol: PortProtocol | undefined): boolean => protocol === 'http2' || protocol === 'grpc';

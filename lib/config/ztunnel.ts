// `meshlet ztunnel`'s configuration: its flags, parsed and validated, and what
// a launcher passes (configArgs) to start one.
import { PORTS } from '../mesh/model.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import type { NodeAddresses } from './addresses.ts';
import { MAX_STREAMS_PER_SESSION } from '../hbone/h2-settings.ts';
import { countFlag, durationFlag, durationOrOffFlag, ipFlag, portFlag, secondsFlag, trustDomainFlag, type FlagTable } from './flags.ts';

export interface ZtunnelConfig extends Omit<NodeAddresses, 'probeSourceIp4' | 'probeSourceIp6'> {
  /** This node's name in mesh state. */
  node: string;
  controlSocket: string;
  adminSocket: string;
  /** Created once the ztunnel listens for traffic, removed as it stops. */
  listeningFile?: string;
  outboundPort: number;
  /** Inbound tunnel port, here and on every peer. */
  hbonePort: number;
  /** 0: no TCP admin listener (the Unix socket stays). */
  adminPort: number;
  /** 0: no readiness listener. */
  readinessPort: number;
  /** 0: metrics only on the admin socket. */
  metricsPort: number;
  /** On SIGTERM, how long open connections may finish. */
  drainSeconds: number;
  trustDomain: string;
  caUrl?: string;
  caBundle?: string;
  caTokenFile?: string;
  plaintextTunnels?: boolean;
  /** Workload certificate lifetime to ask for, in seconds. */
  certTtl?: number;
  // The bounds below are optional: unset, ztunnelLimits() gives the defaults (ZTUNNEL_LIMIT_DEFAULTS).
  /** Seconds a TLS handshake on a tunnel may take: a client's on 15008, and a peer's when this node connects out. */
  hboneHandshakeTimeout?: number;
  /** 15008: seconds a session may carry no stream before the server closes it. */
  hboneIdleTimeout?: number;
  /**
   * Concurrent streams per HBONE session: the server refuses (REFUSED_STREAM) and counts a stream past it, under the
   * protocol limit it advertises, twice this (ztunnel/inbound.ts); the client pool opens another session beyond it.
   */
  hboneMaxStreams?: number;
  /** 15008: connections one peer address may hold at once (TLS handshakes included). */
  hboneMaxSessionsPerPeer?: number;
  /** 15001: connections one source pod address may hold at once. */
  maxConnectionsPerPod?: number;
  /** Seconds a relayed connection may move no byte before both sides are reset; 0: never. */
  idleTimeout?: number;
  /** Seconds a TCP connect to a destination, or a tunnel's answer to its CONNECT, may take before the flow closes with connect_timeout. */
  connectTimeout?: number;
}

export type ZtunnelLimits = Required<Pick<ZtunnelConfig, 'hboneHandshakeTimeout' | 'hboneIdleTimeout' | 'hboneMaxStreams' | 'hboneMaxSessionsPerPeer' | 'maxConnectionsPerPod' | 'idleTimeout' | 'connectTimeout'>>;

/**
 * Why these: the handshake timeout is Envoy's transport_socket_connect_timeout
 * (10 s); a server session idles twice the client pool's 60 s, so the client
 * closes an idle session first and never races a GOAWAY with a new stream;
 * 100 streams is what the pool already used; 1024 sessions per peer cover
 * every pair of identities two busy nodes share (one session per pair, more
 * only past 100 streams); 4096 connections per pod is four times the
 * benchmark's 1000 held connections, and bounds one pod's share of the
 * ztunnel's descriptors; the relay idle timeout is Envoy's tcp_proxy
 * idle_timeout (1 h), so a connection that is idle under an Istio sidecar is
 * idle here too; the connect timeout is Istio's default connect_timeout for
 * its clusters (10 s), where the kernel alone would retry a SYN for two minutes.
 */
export const ZTUNNEL_LIMIT_DEFAULTS: ZtunnelLimits = {
  hboneHandshakeTimeout: 10,
  hboneIdleTimeout: 120,
  hboneMaxStreams: MAX_STREAMS_PER_SESSION,
  hboneMaxSessionsPerPeer: 1024,
  maxConnectionsPerPod: 4096,
  idleTimeout: 3600,
  connectTimeout: 10,
};

/** The config's bounds, defaults filled in. */
export function ztunnelLimits(config: Partial<ZtunnelLimits>): ZtunnelLimits {
  const d = ZTUNNEL_LIMIT_DEFAULTS;
  return {
    hboneHandshakeTimeout: config.hboneHandshakeTimeout ?? d.hboneHandshakeTimeout,
    hboneIdleTimeout: config.hboneIdleTimeout ?? d.hboneIdleTimeout,
    hboneMaxStreams: config.hboneMaxStreams ?? d.hboneMaxStreams,
    hboneMaxSessionsPerPeer: config.hboneMaxSessionsPerPeer ?? d.hboneMaxSessionsPerPeer,
    maxConnectionsPerPod: config.maxConnectionsPerPod ?? d.maxConnectionsPerPod,
    idleTimeout: config.idleTimeout ?? d.idleTimeout,
    connectTimeout: config.connectTimeout ?? d.connectTimeout,
  };
}

/** The bounds' flags: the ztunnel's own, and `meshlet install`'s for every ztunnel of the cluster. */
export const ZTUNNEL_LIMIT_FLAGS: FlagTable<ZtunnelLimits> = {
  hboneHandshakeTimeout: { value: '<duration>', description: `time a tunnel's TLS handshake may take, inbound and outbound (default ${ZTUNNEL_LIMIT_DEFAULTS.hboneHandshakeTimeout}s)`, parse: durationFlag },
  hboneIdleTimeout: { value: '<duration>', description: `inbound tunnel: a session with no stream for this long is closed (default ${ZTUNNEL_LIMIT_DEFAULTS.hboneIdleTimeout}s)`, parse: durationFlag },
  hboneMaxStreams: { value: '<n>', description: `concurrent streams per tunnel session, enforced inbound and kept outbound (default ${ZTUNNEL_LIMIT_DEFAULTS.hboneMaxStreams})`, parse: countFlag },
  hboneMaxSessionsPerPeer: { value: '<n>', description: `inbound tunnel: connections one peer address may hold at once; more are refused (default ${ZTUNNEL_LIMIT_DEFAULTS.hboneMaxSessionsPerPeer})`, parse: countFlag },
  maxConnectionsPerPod: { value: '<n>', description: `outbound capture: connections one pod may hold at once; more are refused (default ${ZTUNNEL_LIMIT_DEFAULTS.maxConnectionsPerPod})`, parse: countFlag },
  idleTimeout: { value: '<duration>', description: `a relayed connection that moves no byte for this long is reset both ways, 0 never (default ${ZTUNNEL_LIMIT_DEFAULTS.idleTimeout / 3600}h)`, parse: durationOrOffFlag },
  connectTimeout: { value: '<duration>', description: `time a TCP connect to a destination pod, or a tunnel's answer to its CONNECT, may take; then the flow closes with connect_timeout (default ${ZTUNNEL_LIMIT_DEFAULTS.connectTimeout}s)`, parse: durationFlag },
};

/** The bounds `config` sets, and only those: absent ones stay absent, for each ztunnel's default. */
export function limitsSet(config: Partial<ZtunnelLimits>): Partial<ZtunnelLimits> {
  return Object.fromEntries(Object.keys(ZTUNNEL_LIMIT_FLAGS).flatMap((k) => {
    const value = config[k as keyof ZtunnelLimits];
    return value === undefined ? [] : [[k, value]];
  })) as Partial<ZtunnelLimits>;
}

export const ZTUNNEL_FLAGS: FlagTable<ZtunnelConfig> = {
  node: { value: '<name>', description: 'name of this node in mesh state', required: true },
  captureIp4: { value: '<ip>', description: 'IPv4 address the capture hooks redirect outbound connections to', required: true, parse: ipFlag(4) },
  captureIp6: { value: '<ip>', description: 'IPv6 capture address', parse: ipFlag(6) },
  nodeIp4: { value: '<ip>', description: 'node IPv4 address: inbound tunnel, readiness and metrics listeners', required: true, parse: ipFlag(4) },
  nodeIp6: { value: '<ip>', description: 'node IPv6 address', parse: ipFlag(6) },
  inboundSourceIp4: { value: '<ip>', description: 'source of connections to local pods, as the ingress hook admits it (default: --node-ip4)', parse: ipFlag(4) },
  inboundSourceIp6: { value: '<ip>', description: 'IPv6 source of connections to local pods (default: --node-ip6)', parse: ipFlag(6) },
  controlSocket: { value: '<path>', description: 'Unix socket the agent pushes state to', required: true },
  adminSocket: { value: '<path>', description: 'Unix socket of the admin API (flows, state, health)', required: true },
  listeningFile: { value: '<path>', description: 'file created once the ztunnel listens for traffic and removed as it stops: a startup probe of the pod\'s own, where the readiness port is shared with a rolling update\'s other ztunnel' },
  outboundPort: { value: '<port>', description: 'outbound capture port', parse: portFlag(), default: PORTS.outbound },
  hbonePort: { value: '<port>', description: 'inbound tunnel port, here and on peers', parse: portFlag(), default: PORTS.hbone },
  adminPort: { value: '<port>', description: 'admin API on 127.0.0.1 (0: off)', parse: portFlag({ zero: true }), default: PORTS.admin },
  readinessPort: { value: '<port>', description: 'GET /healthz/ready on the node IPs (0: off)', parse: portFlag({ zero: true }), default: PORTS.readiness },
  metricsPort: { value: '<port>', description: 'Prometheus /metrics on the node IPs (0: admin socket only)', parse: portFlag({ zero: true }), default: PORTS.metrics },
  drainSeconds: { value: '<s>', description: 'on SIGTERM, how long open connections may finish', parse: secondsFlag, default: 5 },
  trustDomain: { value: '<domain>', description: 'SPIFFE trust domain of the mesh', default: DEFAULT_TRUST_DOMAIN, parse: trustDomainFlag },
  caUrl: { value: '<url>', description: 'the mesh CA (meshlet ca), e.g. https://10.200.0.2:15012; without it tunnels are cleartext' },
  caBundle: { value: '<file>', description: 'PEM file of the mesh root the CA and peers chain to' },
  caTokenFile: { value: '<file>', description: 'the pod\'s projected ServiceAccount token for the CA (audience meshlet-ca), re-read on every request' },
  plaintextTunnels: { description: 'no CA: tunnels between nodes are cleartext HTTP/2 (tests only; never in a mesh)' },
  certTtl: { value: '<duration>', description: 'workload certificate lifetime to ask for, e.g. 30s or 24h (rotation at half)', parse: durationFlag },
  ...ZTUNNEL_LIMIT_FLAGS,
};

// `meshlet ztunnel`'s configuration: its flags, parsed and validated, and what
// a launcher passes (configArgs) to start one.
import { PORTS } from '../mesh/model.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import type { NodeAddresses } from './addresses.ts';
import { durationFlag, ipFlag, portFlag, secondsFlag, trustDomainFlag, type FlagTable } from './flags.ts';

export interface ZtunnelConfig extends Omit<NodeAddresses, 'probeSourceIp4' | 'probeSourceIp6'> {
  /** This node's name in mesh state. */
  node: string;
  controlSocket: string;
  adminSocket: string;
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
};

// The mesh's own view of the cluster: what the agent derives from Kubernetes
// objects and pushes to the ztunnel. The data path reads only these types,
// never raw API objects; kinds.ts lists them (and the policies) as MeshState.
import type { QosClass } from '../cluster/cgroup-layout.ts';

export interface Workload {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  /** Node the pod runs on. */
  node: string;
  /** Pod IPs, IPv4 first when the pod has one. */
  ips: string[];
  labels: Record<string, string>;
  /** Captured by the mesh (namespace enrolled, pod not opted out). */
  enrolled: boolean;
  /** Outbound ports the pod asked to bypass the mesh (meshlet.io/exclude-outbound-ports). */
  excludeOutboundPorts: number[];
  /** Ports of the pod's tcpSocket/httpGet probes: the node may reach them in plaintext under STRICT. Agent-only. */
  probePorts?: number[];
  /** The pod's QoS class: which of the kubelet's QoS cgroups holds the pod's cgroup. Agent-only. */
  qosClass?: QosClass;
}

export interface ServicePort {
  /** Unique among the Service's ports; absent for a Service's one unnamed port. Its EndpointSlices' ports carry the same name. */
  name?: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** One ready address behind a Service, from its EndpointSlices. */
export interface ServiceEndpoint {
  /** A known pod's address, in the family of the EndpointSlice it came from. */
  ip: string;
  /**
   * The port to reach it on per Service port name ('' for the unnamed port),
   * as its EndpointSlice resolved the targetPort (a named one, per pod). A
   * Service port missing here has no port on this endpoint.
   */
  ports: Record<string, number>;
}

export interface Service {
  namespace: string;
  name: string;
  /** ClusterIPs. */
  vips: string[];
  ports: ServicePort[];
  /** The ready endpoints of its EndpointSlices that are pods' addresses, ordered by address; empty when it has none. */
  endpoints: ServiceEndpoint[];
}

export interface MeshNode {
  name: string;
  /** Address other ztunnels reach this node's inbound (HBONE) port on. */
  address: string;
}

export const serviceKey = (s: Pick<Service, 'namespace' | 'name'>): string => `${s.namespace}/${s.name}`;

/** Ports, after Istio's ztunnel. */
export const PORTS = {
  admin: 15000,
  outbound: 15001,
  inboundPlaintext: 15006,
  hbone: 15008,
  metrics: 15020,
  readiness: 15021,
} as const;

// The mesh's own view of the cluster: what the agent derives from Kubernetes
// objects and pushes to the ztunnel. The data path reads only these types,
// never raw API objects; kinds.ts lists them (and the policies) as MeshState.
import type { QosClass } from '../cluster/cgroup-layout.ts';
import type { AuthzAction } from '../policy/types.ts';
import type { L7Target } from '../l7/authz-types.ts';

/** A waypoint Gateway, by namespace and name (its Service and ServiceAccount share the name). */
export interface WaypointRef {
  namespace: string;
  name: string;
}

/**
 * The waypoint an object's traffic goes through, from `istio.io/use-waypoint`
 * (and `istio.io/use-waypoint-namespace`): the object's own label wins over
 * its namespace's, and `none` on the object opts it out (then it has none).
 */
export interface WaypointBinding extends WaypointRef {
  /** Where the label was: on the object itself, or on its namespace. */
  from: 'object' | 'namespace';
}

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
  /** The waypoint its pod-IP traffic goes through, if the waypoint takes workload traffic; absent: none. */
  waypoint?: WaypointBinding;
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
  /** spec.ports[].appProtocol as the Service declares it: the waypoint serves the port by it before the name's prefix. */
  appProtocol?: string;
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
  /** The waypoint its VIP traffic goes through, if the waypoint takes service traffic; absent: none. */
  waypoint?: WaypointBinding;
}

/** `istio.io/waypoint-for` on the Gateway: which traffic the waypoint takes (default service). */
export type WaypointTraffic = 'service' | 'workload' | 'all' | 'none';

/**
 * A waypoint: a Gateway API Gateway of class istio-waypoint (or
 * meshlet-waypoint) with an HBONE listener on 15008. Where it is reached and
 * as whom is not here but in the rest of the state (lib/mesh/waypoints.ts):
 * its Service `<name>` in its namespace lists its ready pods, and the pods
 * labelled `gateway.networking.k8s.io/gateway-name: <name>` there are its
 * instances, whose ServiceAccounts are its identities.
 */
export interface Waypoint extends WaypointRef {
  trafficType: WaypointTraffic;
  /** spec.gatewayClassName: what a GatewayClass target of a policy names. */
  className: string;
}

/**
 * What the ztunnel needs of an AuthorizationPolicy bound by targetRefs (a
 * waypoint's policy, lib/l7): what it targets. The waypoint enforces its
 * rules; the ztunnel only refuses traffic that would go around the waypoint
 * to what it covers (waypoint_bypass).
 */
export interface WaypointPolicy {
  /** `<namespace>/<name>`. */
  key: string;
  namespace: string;
  name: string;
  action: AuthzAction;
  targets: L7Target[];
  /** Set on the stand-in for a policy meshlet rejected: why. It targets what could still be read of the policy, and the waypoint denies every request to it. */
  failClosed?: string;
}

export interface MeshNode {
  name: string;
  /** Address other ztunnels reach this node's inbound (HBONE) port on. */
  address: string;
}

export const serviceKey = (s: Pick<Service, 'namespace' | 'name'>): string => `${s.namespace}/${s.name}`;

/** `namespace/name` of a waypoint (and of its Service). */
export const waypointKey = (w: WaypointRef): string => `${w.namespace}/${w.name}`;

/** Ports, after Istio's ztunnel. */
export const PORTS = {
  admin: 15000,
  outbound: 15001,
  inboundPlaintext: 15006,
  hbone: 15008,
  metrics: 15020,
  readiness: 15021,
} as const;

// The Kubernetes kinds meshlet reads, as data: adding a kind (more Istio or
// Gateway API resources) is one entry here, no code.

/** One resource the source lists and watches. */
export interface WatchedKind {
  /** API group; '' for the core group. */
  group: string;
  version: string;
  /** The resource as it appears in the URL: "pods", "authorizationpolicies". */
  plural: string;
  /** Set on every object, since list responses omit it per item: "Pod". */
  kind: string;
  namespaced: boolean;
}

export const NAMESPACES: WatchedKind = { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false };
export const PODS: WatchedKind = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };
export const NODES: WatchedKind = { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false };
export const SERVICES: WatchedKind = { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true };
export const ENDPOINT_SLICES: WatchedKind = { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true };
export const AUTHORIZATION_POLICIES: WatchedKind = { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true };
export const PEER_AUTHENTICATIONS: WatchedKind = { group: 'security.istio.io', version: 'v1', plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true };
/** Gateway API Gateways: those of a waypoint class are the waypoints (the agent's: where bound traffic goes; the controller's: what to deploy). */
export const GATEWAYS: WatchedKind = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', kind: 'Gateway', namespaced: true };

/** The node agent's view: pods (AGENT_POD_FIELD_SELECTOR), the nodes they run on, the services, waypoints and policies that apply to them. */
export const AGENT_KINDS: readonly WatchedKind[] = [NAMESPACES, PODS, NODES, SERVICES, ENDPOINT_SLICES, AUTHORIZATION_POLICIES, PEER_AUTHENTICATIONS, GATEWAYS];

/**
 * The agent's pods: cluster-wide, not only its node's, because a Service
 * endpoint on another node is reached through that node's ztunnel, which must
 * present the identity of the endpoint pod's ServiceAccount, and an
 * EndpointSlice does not carry it. hostNetwork pods are never workloads (their
 * address is their node's), so the API server leaves them out. Enrollment
 * takes this node's pods alone.
 */
export const AGENT_POD_FIELD_SELECTOR = 'spec.hostNetwork=false';

/** The CA's view: which service accounts run on which node, so pods on every node. */
export const CA_KINDS: readonly WatchedKind[] = [PODS];

export const GATEWAY_CLASSES: WatchedKind = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gatewayclasses', kind: 'GatewayClass', namespaced: false };
export const DEPLOYMENTS: WatchedKind = { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true };
export const CLUSTER_ROLE_BINDINGS: WatchedKind = { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false };

/**
 * The waypoint controller's view (in the CA process): waypoint Gateways and
 * their classes, Deployments, whose status says when a waypoint is up, and
 * ClusterRoleBindings, since each waypoint's is cluster-scoped and so not
 * garbage-collected with its Gateway: the controller deletes its own.
 */
export const CONTROLLER_KINDS: readonly WatchedKind[] = [GATEWAYS, GATEWAY_CLASSES, DEPLOYMENTS, CLUSTER_ROLE_BINDINGS];

export const VIRTUAL_SERVICES: WatchedKind = { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', kind: 'VirtualService', namespaced: true };
export const DESTINATION_RULES: WatchedKind = { group: 'networking.istio.io', version: 'v1', plural: 'destinationrules', kind: 'DestinationRule', namespaced: true };
export const HTTP_ROUTES: WatchedKind = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true };
export const GRPC_ROUTES: WatchedKind = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', kind: 'GRPCRoute', namespaced: true };

/**
 * The waypoint's view: every Service, its endpoints and their pods and nodes
 * (hop 2 goes to a pod's node with its identity), namespaces and Gateways
 * (which traffic is bound to it), and the routing and policy resources it
 * enforces. Pods as the agent's (AGENT_POD_FIELD_SELECTOR).
 */
export const WAYPOINT_KINDS: readonly WatchedKind[] = [
  SERVICES, ENDPOINT_SLICES, PODS, NODES, NAMESPACES, VIRTUAL_SERVICES, DESTINATION_RULES, HTTP_ROUTES, GRPC_ROUTES, AUTHORIZATION_POLICIES, GATEWAYS,
];

/** "v1", "security.istio.io/v1": what each object's apiVersion says. */
export function apiVersionOf(kind: WatchedKind): string {
  return kind.group === '' ? kind.version : `${kind.group}/${kind.version}`;
}

/** Names the kind in status and logs, unique across groups (Istio and Gateway API both have a Gateway). */
export function kindName(kind: WatchedKind): string {
  return `${apiVersionOf(kind)} ${kind.kind}`;
}

/** The collection across all namespaces: "/api/v1/pods", "/apis/security.istio.io/v1/authorizationpolicies". */
export function collectionPath(kind: WatchedKind): string {
  return `${kind.group === '' ? '/api' : '/apis'}/${apiVersionOf(kind)}/${kind.plural}`;
}

// Where and how a captured connection goes, decided without a socket: from
// the state view, the pod's address and the application's original
// destination to a plan that outbound.ts carries out. Each way a connection
// can go is one kind of plan; the plan holds everything the flow record and
// the act step need. A destination bound to a waypoint goes through it: one
// tunnel, to a waypoint pod, which terminates HBONE itself.
//
// The source is named by its address, which the kernel vouches for: it marks
// a connection whose source address is not the connecting pod's own, and such
// a connection is refused (source_mismatch), never carried under anyone's
// identity.
import { hostPort, isV6 } from '../lib/core/ip.ts';
import { baggage, forwardedFor } from '../lib/hbone/headers.ts';
import { identityOf } from '../lib/identity/mesh-identity.ts';
import { formatSpiffeId, type SpiffeId } from '../lib/identity/spiffe.ts';
import type { MeshNode, Workload } from '../lib/mesh/model.ts';
import type { StateView } from '../lib/mesh/state.ts';
import type { AuthzRequest } from '../lib/policy/index.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import { refOf, type FlowInit } from '../lib/telemetry/flow-table.ts';
import type { Refusal } from '../lib/telemetry/reasons.ts';
import { decide, verdictOf, waypointBypass, type Authorization } from './destination-policy.ts';
import type { Resolver, Route } from './resolve.ts';

/**
 * The local port the kernel's getsockname reports for a redirected connection
 * whose source address is not the connecting pod's own (SOURCE_MISMATCH_PORT
 * in bpf/orig_dst.h). The local address is then that pod's own address, or
 * the unspecified address when the kernel had none. No redirected connection
 * has this port otherwise: the capture hooks leave a connect to port 0 alone.
 */
export const SOURCE_MISMATCH_PORT = 0;

/** Whether the accepted socket's local address is the kernel's source-mismatch mark. */
export const isSourceMismatch = (local: Endpoint): boolean => local.port === SOURCE_MISMATCH_PORT;

const unspecified = (ip: string): string => (isV6(ip) ? '::' : '0.0.0.0');

export interface OutboundInput {
  /** The pod's address: the accepted socket's peer. */
  source: Endpoint;
  /** Where the application connected: the accepted socket's local address, as the kernel reports it (or its source-mismatch mark). */
  destination: Endpoint;
  /** The capture listeners' own `host:port`s: a connection addressed to one was not redirected, and must not loop. */
  ownAddresses: ReadonlySet<string>;
  /** The mesh's trust domain when tunnels are mutual TLS; absent: cleartext (no CA configured). */
  trustDomain?: string;
  /** Picks among a Service's endpoints; its round-robin cursors are the only state a plan advances. */
  resolver: Resolver;
}

/** The flow record's fields, but for the trace id the act step draws for a tunnel. */
export type OutboundFlow = Omit<FlowInit, 'traceId'>;

/** Request headers of a tunnel (the act step adds a fresh traceparent). */
export interface TunnelHeaders {
  forwarded: string;
  baggage?: string;
}

export type OutboundPlan =
  /** Refused before any upstream: the client is reset, the flow closes with `reason`. */
  | { kind: 'refuse'; reason: Exclude<Refusal, 'denied' | 'waypoint_bypass'>; flow: OutboundFlow }
  /**
   * Refused for the destination as this node knows it: its policy denied a
   * same-node connection, or the connection would go around the
   * destination's waypoint (any node's destination: its ztunnel would refuse
   * it too). `status` is what a tunnel would have answered.
   */
  | { kind: 'deny'; status: 401; flow: OutboundFlow; authz: Authorization }
  /** Dial `target` straight: a pod on this node (this ztunnel is its destination's too: `authz`), or a destination outside the mesh. */
  | { kind: 'direct'; path: 'local' | 'passthrough'; target: Endpoint; flow: OutboundFlow; authz?: Authorization }
  /**
   * CONNECT to `target` through `via`: the ztunnel of a node, or a waypoint
   * pod (then `port` is its HBONE port, and `target` the original
   * destination). `mtls`: the identities the session presents and expects;
   * absent, the tunnel is cleartext (no CA, or a source that is not a known
   * workload).
   */
  | { kind: 'tunnel'; target: Endpoint; via: MeshNode; port?: number; headers: TunnelHeaders; flow: OutboundFlow; mtls?: { source: SpiffeId; destination: SpiffeId } };

type Base = Pick<OutboundFlow, 'direction' | 'source' | 'originalDestination'>;

/**
 * The kernel's mark: the pod it saw connect (by its own address) bound
 * another. Refused before anything else, whatever the state, and recorded
 * under that pod with the address it claimed.
 */
function refuseSourceMismatch(view: StateView | undefined, claimed: Endpoint, mark: Endpoint): OutboundPlan {
  const known = mark.ip !== unspecified(mark.ip);
  const pod = known ? view?.workloadByIp(mark.ip) : undefined;
  return {
    kind: 'refuse',
    reason: 'source_mismatch',
    flow: {
      direction: 'outbound',
      source: { ip: mark.ip, port: claimed.port, workload: refOf(pod) },
      claimedSource: claimed,
      // The kernel reports the mark in its place.
      originalDestination: { ip: unspecified(mark.ip), port: 0 },
    },
  };
}

export function planOutbound(view: StateView | undefined, input: OutboundInput): OutboundPlan {
  const { source: src, destination: dst, trustDomain } = input;
  if (isSourceMismatch(dst)) return refuseSourceMismatch(view, src, dst);
  const sourceWorkload = view?.workloadByIp(src.ip);
  const uri = (w: Workload | undefined) => (w && trustDomain ? formatSpiffeId(identityOf(w, trustDomain)) : undefined);
  const sourceIdentity = uri(sourceWorkload);
  const base = {
    direction: 'outbound',
    source: { ...src, workload: refOf(sourceWorkload), ...(sourceIdentity ? { identity: sourceIdentity } : {}) },
    originalDestination: dst,
  } as const;
  if (!view) return { kind: 'refuse', reason: 'not_ready', flow: base };
  if (input.ownAddresses.has(hostPort(dst.ip, dst.port))) return { kind: 'refuse', reason: 'loop', flow: base };
  // Only enrolled pods' connections are captured, and the agent tells the ztunnel of a pod before it enrols it.
  if (!sourceWorkload) return { kind: 'refuse', reason: 'unknown_source', flow: base };
  const route = input.resolver.resolve(view, dst, sourceWorkload);
  if (route.kind === 'reject') {
    const waypoint = route.reason === 'waypoint_unavailable' ? { waypoint: refOf(route.waypoint), verdictReason: route.problem } : {};
    return { kind: 'refuse', reason: route.reason, flow: { ...base, service: refOf(route.service), ...waypoint } };
  }
  if (route.kind === 'waypoint') return throughWaypoint(route, base, src, sourceWorkload, trustDomain);

  const meshed = route.kind === 'tunnel' || route.path === 'local';
  const destinationIdentity = meshed ? uri(route.workload) : undefined;
  const flow: OutboundFlow = {
    ...base,
    service: refOf(route.service),
    destination: { ...route.target, workload: refOf(route.workload), node: route.workload?.node, ...(destinationIdentity ? { identity: destinationIdentity } : {}) },
    path: route.kind === 'tunnel' ? 'tunnel' : route.path,
    ...(meshed ? { security: trustDomain ? 'mutual_tls' : 'plaintext' } as const : {}),
  };
  const requestTo = (workload: Workload): AuthzRequest => ({
    source: { ip: src.ip, ...(sourceIdentity ? { principal: sourceIdentity } : {}) },
    destination: { ip: route.target.ip, port: route.target.port, workload },
  });
  if (route.kind === 'tunnel') {
    const request = requestTo(route.workload);
    // Refused here as its own ztunnel would: the flow says why, at the source.
    const bypass = waypointBypass(view, request);
    if (bypass) return { kind: 'deny', status: 401, flow: { ...flow, ...verdictOf(bypass) }, authz: { request, decision: bypass } };
    const headers: TunnelHeaders = { forwarded: forwardedFor(src), ...(sourceWorkload ? { baggage: baggage(sourceWorkload) } : {}) };
    const mtls = trustDomain && sourceWorkload ? { source: identityOf(sourceWorkload, trustDomain), destination: identityOf(route.workload, trustDomain) } : undefined;
    return { kind: 'tunnel', target: route.target, via: route.node, headers, flow, ...(mtls ? { mtls } : {}) };
  }
  if (route.path === 'passthrough') return { kind: 'direct', path: 'passthrough', target: route.target, flow };
  const request = requestTo(route.workload);
  const decision = decide(view, request);
  const authz = { request, decision };
  const judged = { ...flow, ...verdictOf(decision) };
  return decision.allowed ? { kind: 'direct', path: 'local', target: route.target, flow: judged, authz } : { kind: 'deny', status: 401, flow: judged, authz };
}

/**
 * Hop 1: one HBONE tunnel to the waypoint pod's own 15008 (it terminates
 * HBONE itself, so there is no tunnel in a tunnel), under the source
 * workload's identity, expecting the waypoint pod's in its certificate, and
 * asking for the original destination (`:authority` = VIP:port or pod
 * IP:port), from which the waypoint picks the service.
 */
function throughWaypoint(route: Extract<Route, { kind: 'waypoint' }>, base: Base, src: Endpoint, sourceWorkload: Workload | undefined, trustDomain: string | undefined): OutboundPlan {
  const { endpoint } = route;
  const identity = trustDomain ? formatSpiffeId(identityOf(endpoint.workload, trustDomain)) : undefined;
  const flow: OutboundFlow = {
    ...base,
    service: refOf(route.service),
    waypoint: refOf(route.waypoint),
    destination: { ip: endpoint.ip, port: endpoint.port, workload: refOf(endpoint.workload), node: endpoint.workload.node, ...(identity ? { identity } : {}) },
    path: 'tunnel',
    security: trustDomain ? 'mutual_tls' : 'plaintext',
  };
  const headers: TunnelHeaders = { forwarded: forwardedFor(src), ...(sourceWorkload ? { baggage: baggage(sourceWorkload) } : {}) };
  const mtls = trustDomain && sourceWorkload ? { source: identityOf(sourceWorkload, trustDomain), destination: identityOf(endpoint.workload, trustDomain) } : undefined;
  const via = { name: `${endpoint.workload.namespace}/${endpoint.workload.name}`, address: endpoint.ip };
  return { kind: 'tunnel', target: route.target, via, port: endpoint.port, headers, flow, ...(mtls ? { mtls } : {}) };
}

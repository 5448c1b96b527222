// Whether a CONNECT stream from another ztunnel may reach a pod on this node,
// decided without a socket: from the state view, the request headers and
// what the session's TLS handshake established, to a plan that inbound.ts
// carries out (answer, dial, relay).
//
// The Forwarded header's source is the peer ztunnel's word: it is taken only
// if it names a workload on the peer's own node (the node whose address the
// session comes from) with the identity the peer's certificate proved. Any
// other claim is ignored, so policy (ipBlocks) judges the peer itself, and
// recorded (claimedSource, sourceMismatch). A waypoint pod (hop 2) is the
// source of what it sends, as in Istio: L4 policy judges its own identity
// and address, and a Forwarded claim from it is not believed (one session
// carries many clients' requests), nor counted as a mismatch.
//
// A workload under a waypoint's L7 policy takes mesh traffic from that
// waypoint only (destination-policy.ts, waypoint_bypass).
import { parseHostPort } from '../lib/core/ip.ts';
import { parseForwardedFor, traceIdOf, type TunnelRequest } from '../lib/hbone/headers.ts';
import { identityOf } from '../lib/identity/mesh-identity.ts';
import { formatSpiffeId, sameIdentity, type SpiffeId } from '../lib/identity/spiffe.ts';
import { claimRefusal } from '../lib/mesh/forwarded-claim.ts';
import type { WaypointRef } from '../lib/mesh/model.ts';
import type { StateView } from '../lib/mesh/state.ts';
import type { AuthzRequest } from '../lib/policy/index.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import { refOf, type FlowInit } from '../lib/telemetry/flow-table.ts';
import { decide, verdictOf, type Authorization } from './destination-policy.ts';

/** The stream's request headers that matter (absent or repeated ones as undefined; lib/hbone/headers.ts reads them). */
export type { TunnelRequest };

/** What the session's mutual TLS handshake established. */
export interface SessionTls {
  /** The local identity the client named in SNI, if it is one of ours. */
  sni: SpiffeId | undefined;
  /** The client's verified identity in our trust domain, or why it has none. */
  client: { identity: SpiffeId } | { error: unknown };
}

export interface InboundInput {
  /** This node: only its pods are reachable here, the tunnel is not an open relay. */
  node: string;
  request: TunnelRequest;
  /** The session's remote address: the source when no Forwarded header names one. */
  peer: Endpoint | undefined;
  /** With mutual TLS: the trust domain, and the session's TLS facts (absent once its socket is gone). Absent: cleartext. */
  mtls?: { trustDomain: string; session: SessionTls | undefined };
}

/** What the refusal's log line says beside the peer and the status; absent, the refusal is not logged. */
export interface RefusalLog {
  method?: string | undefined;
  authority: string | undefined;
  reason?: string;
  error?: unknown;
}

export type InboundPlan =
  /** Answer `status` and end the stream; no flow is recorded. */
  | { kind: 'refuse'; status: 400 | 401 | 503; log?: RefusalLog }
  /** Policy denied it: record the flow, answer 401; the pod is never dialled. `sourceMismatch`: why the Forwarded claim was ignored. */
  | { kind: 'deny'; status: 401; flow: FlowInit; authz: Authorization; sourceMismatch?: string }
  /** Dial `target`, answer 200 once it is up, relay, and keep the connection under policy watch. */
  | { kind: 'accept'; target: Endpoint; flow: FlowInit; authz: Authorization; sourceMismatch?: string };

/**
 * The waypoint whose pod the peer is: by its address, and with mutual TLS by
 * the identity its certificate proved, which must be that pod's.
 */
function waypointPeer(view: StateView, peer: Endpoint | undefined, mtls: { trustDomain: string; identity: SpiffeId } | undefined): WaypointRef | undefined {
  const pod = peer && view.workloadByIp(peer.ip);
  const waypoint = pod && view.waypointIndex.instanceOf(pod);
  if (!pod || !waypoint) return undefined;
  return !mtls || sameIdentity(identityOf(pod, mtls.trustDomain), mtls.identity) ? waypoint : undefined;
}

export function planInbound(view: StateView | undefined, input: InboundInput): InboundPlan {
  const { request: headers, mtls } = input;
  const { authority } = headers;
  const target = authority === undefined ? undefined : parseHostPort(authority);
  if (headers.method !== 'CONNECT' || !target) return { kind: 'refuse', status: 400, log: { method: headers.method, authority } };
  const workload = view?.workloadByIp(target.ip);
  if (!view || !workload || workload.node !== input.node) {
    return { kind: 'refuse', status: 503, log: { authority, reason: workload ? `pod is on node ${workload.node}` : 'not a known pod' } };
  }
  const claimed = parseForwardedFor(headers.forwarded);
  if (!claimed && !input.peer) return { kind: 'refuse', status: 400 };
  let peerIdentity: { trustDomain: string; identity: SpiffeId } | undefined;
  let sourceIdentity: string | undefined;
  let destinationIdentity: string | undefined;
  if (mtls) {
    const { session } = mtls;
    if (!session) return { kind: 'refuse', status: 400 };
    const expected = identityOf(workload, mtls.trustDomain);
    const named = session.sni;
    // The client proved it wanted this workload's identity (SNI); a stream may not reach another.
    if (!named || !sameIdentity(named, expected)) {
      return { kind: 'refuse', status: 400, log: { authority, reason: `the session is for ${named ? formatSpiffeId(named) : 'no local identity'}, the target is ${formatSpiffeId(expected)}` } };
    }
    if ('error' in session.client) return { kind: 'refuse', status: 401, log: { authority, error: session.client.error } };
    peerIdentity = { trustDomain: mtls.trustDomain, identity: session.client.identity };
    sourceIdentity = formatSpiffeId(session.client.identity);
    destinationIdentity = formatSpiffeId(expected);
  }
  const waypoint = waypointPeer(view, input.peer, peerIdentity);
  const sourceMismatch = claimed && !waypoint && claimRefusal(view, claimed, input.peer, peerIdentity);
  const src = claimed && !waypoint && !sourceMismatch ? claimed : input.peer;
  if (!src) return { kind: 'refuse', status: 400 };
  const request: AuthzRequest = { source: { ip: src.ip, ...(sourceIdentity ? { principal: sourceIdentity } : {}) }, destination: { ip: target.ip, port: target.port, workload } };
  const decision = decide(view, request);
  const flow: FlowInit = {
    direction: 'inbound',
    source: { ...src, workload: refOf(view.workloadByIp(src.ip)), ...(sourceIdentity ? { identity: sourceIdentity } : {}) },
    ...(sourceMismatch ? { claimedSource: claimed } : {}),
    ...(waypoint ? { waypoint: refOf(waypoint) } : {}),
    originalDestination: target,
    destination: { ...target, workload: refOf(workload), node: workload.node, ...(destinationIdentity ? { identity: destinationIdentity } : {}) },
    path: 'tunnel',
    traceId: traceIdOf(headers.traceparent),
    security: mtls ? 'mutual_tls' : 'plaintext',
    ...verdictOf(decision),
  };
  const authz = { request, decision };
  const mismatch = sourceMismatch ? { sourceMismatch } : {};
  return decision.allowed ? { kind: 'accept', target, flow, authz, ...mismatch } : { kind: 'deny', status: 401, flow, authz, ...mismatch };
}

// One captured connection as the ztunnel saw it; served by the admin API and
// rendered by `meshlet flows`.
import type { CloseReason, ConnectionSecurity, Verdict } from './reasons.ts';

export interface WorkloadRef {
  namespace: string;
  name: string;
}

export interface Endpoint {
  ip: string;
  port: number;
}

export type FlowDirection = 'outbound' | 'inbound';
export type FlowState = 'open' | 'closed';

export interface FlowRecord {
  id: string;
  node: string;
  direction: FlowDirection;
  /** `identity`: the SPIFFE ID the source proved (mTLS) or is known by. */
  source: Endpoint & { workload?: WorkloadRef; identity?: string };
  /**
   * A source address that did not check out, so nothing was granted on it
   * (meshlet_source_mismatches_total counts them). Outbound: the address the
   * pod's socket was bound to, which is not the pod's own (the flow closes
   * source_mismatch; `source` is the pod the kernel saw connect). Inbound: the
   * Forwarded header's, which is no workload of the peer ztunnel's node with
   * the peer's certificate identity (policy judged `source`, the peer itself).
   */
  claimedSource?: Endpoint;
  /** Where the application connected (for a Service: its VIP and port); the unspecified address and port 0 when unknown. */
  originalDestination: Endpoint;
  service?: WorkloadRef;
  /**
   * The waypoint (its Gateway) the destination is bound to: outbound, the
   * connection went to one of its pods (`destination`), or was refused
   * (waypoint_unavailable); inbound, the peer is one of its pods (hop 2).
   */
  waypoint?: WorkloadRef;
  /** Where the ztunnel sent it: the chosen pod (a waypoint's, through one), and its node. */
  destination?: Endpoint & { workload?: WorkloadRef; node?: string; identity?: string };
  /** How it travelled: direct to a local pod, tunnelled to another node, or passthrough (not a mesh destination). */
  path?: 'local' | 'tunnel' | 'passthrough';
  /** Bytes from the client towards the server. */
  bytesSent: number;
  /** Bytes from the server back to the client. */
  bytesReceived: number;
  state: FlowState;
  startedAt: string;
  durationMs?: number;
  /** W3C trace id sent in the tunnel's traceparent: the same at both ends of a tunnelled connection. */
  traceId?: string;
  /** The destination's authorization decision, and the policy (`namespace/name`) that made it. */
  verdict?: Verdict;
  policy?: string;
  verdictReason?: string;
  security?: ConnectionSecurity;
  /** Why it ended (reasons.ts lists them). */
  closeReason?: CloseReason;
}

/** Event on the admin API's follow stream (`GET /flows?follow=1`, NDJSON). */
export interface FlowEvent {
  event: 'open' | 'close';
  flow: FlowRecord;
}

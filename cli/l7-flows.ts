// The L7 rows of `meshlet flows`: one HTTP request a waypoint carried (its
// RequestSummary from GET /requests), as `hubble observe` shows HTTP flows,
// and the JSON record that says it is one (`"type": "l7"`; the ztunnels' L4
// records keep their shape).
import type { RequestSummary, SummaryPeer } from '../waypoint/api.ts';

/** The waypoint pod that carried a request. */
export interface WaypointPodRef {
  /** The waypoint (its Gateway): namespace and name. */
  namespace: string;
  name: string;
  pod: string;
  node: string;
}

export interface L7FlowRecord extends RequestSummary {
  type: 'l7';
  waypoint: WaypointPodRef;
}

export const l7Record = (waypoint: WaypointPodRef, summary: RequestSummary): L7FlowRecord => ({ type: 'l7', waypoint, ...summary });

/** From or to namespace `ns`, or for a Service of it; every record when `ns` is undefined. */
export function matchesL7(r: RequestSummary, ns: string | undefined): boolean {
  return ns === undefined || r.source.namespace === ns || r.destination.namespace === ns || r.service?.namespace === ns;
}

/** A workload as `ns/name`, else its principal. */
function peer(p: SummaryPeer): string | undefined {
  if (p.workload) return p.namespace ? `${p.namespace}/${p.workload}` : p.workload;
  return p.principal;
}

/** What a client sent (method, authority, path) reaches a terminal: control characters are shown escaped, never interpreted. */
const printable = (text: string): string => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

function formatDuration(ms: number): string {
  return ms < 10 ? `${Math.round(ms * 10) / 10}ms` : `${Math.round(ms)}ms`;
}

function status(r: RequestSummary): string {
  // 0: the client went away before any response (Envoy logs it as 0 too, with flag DC).
  const http = r.status === 0 ? '-' : String(r.status);
  return r.grpcStatus === undefined ? http : `${http} grpc=${r.grpcStatus}`;
}

export const L7_HEADER = ['TIME', 'WAYPOINT', 'SOURCE', 'DESTINATION', 'METHOD', 'AUTHORITY', 'PATH', 'STATUS', 'DURATION', 'ROUTE', 'FLAGS'];
export const L7_WIDE_HEADER = [...L7_HEADER, 'UPSTREAM HOST', 'REQUEST ID', 'TRACE ID'];

export function l7Row(r: L7FlowRecord, wide: boolean): string[] {
  const w = r.waypoint;
  const to = peer(r.destination) ?? (r.service ? `${r.service.namespace}/${r.service.name}` : '-');
  const base = [r.startTime.slice(11, 23), `${w.namespace}/${w.name}@${w.node}`, peer(r.source) ?? '-', to, r.method, r.authority, r.path, status(r), formatDuration(r.durationMs), r.route ?? '-', r.flags];
  const cells = wide ? [...base, r.upstreamHost ?? '-', r.requestId, r.traceId ?? '-'] : base;
  return cells.map(printable);
}

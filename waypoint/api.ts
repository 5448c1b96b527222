// What the waypoint's admin API serves, for the CLI (`meshlet flows` reads
// GET /requests on the admin port): its shapes, no code, so that importing
// this loads nothing of the waypoint.
export type { RequestSummary, SummaryPeer } from './telemetry/recent-requests.ts';

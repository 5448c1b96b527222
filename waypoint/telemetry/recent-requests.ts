// The most recent requests the waypoint carried, for `meshlet flows` (as
// `hubble observe` shows HTTP): a ring of summaries, oldest overwritten
// first, with a follow stream, after lib/telemetry/flow-table.ts's ring of
// closed L4 flows. Bounded in entries and in each entry's size.
import { traceIdOf } from '../../lib/hbone/headers.ts';
import { formatResponseFlags } from './response-flags.ts';
import type { RequestRecord } from './request-record.ts';

/** A peer as a summary names it. */
export interface SummaryPeer {
  namespace?: string;
  workload?: string;
  principal?: string;
}

/** One request as `meshlet flows` shows it. */
export interface RequestSummary {
  id: string;
  startTime: string;
  durationMs: number;
  method: string;
  /** The Host / :authority the client sent. */
  authority: string;
  path: string;
  protocol: string;
  /** 0: no response was sent. */
  status: number;
  grpcStatus?: string;
  /** Envoy response flags, comma-separated, or '-'. */
  flags: string;
  route?: string;
  service?: { namespace: string; name: string };
  source: SummaryPeer;
  destination: SummaryPeer;
  upstreamHost?: string;
  requestId: string;
  traceId?: string;
  /** The HBONE tunnel's trace id: the L4 flow this request rode on. */
  tunnelTraceId?: string;
}

export type RequestListener = (summary: RequestSummary) => void;

/** Longer paths and authorities are cut: a ring entry stays small whatever a client sends. */
const MAX_TEXT = 1024;
const cut = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

const peerOf = (p: { namespace?: string; workload?: string; principal?: string }): SummaryPeer => ({
  ...(p.namespace ? { namespace: p.namespace } : {}),
  ...(p.workload ? { workload: p.workload } : {}),
  ...(p.principal ? { principal: p.principal } : {}),
});

export function summaryOf(id: string, r: RequestRecord): RequestSummary {
  const traceId = traceIdOf(r.traceparent);
  return {
    id,
    startTime: r.startTime,
    durationMs: r.durationMs,
    method: cut(r.method),
    authority: cut(r.host),
    path: cut(r.path),
    protocol: r.protocol,
    status: r.responseCode,
    ...(r.grpc && r.grpcStatus !== undefined ? { grpcStatus: cut(r.grpcStatus) } : {}),
    flags: formatResponseFlags(r.responseFlags),
    ...(r.routeName ? { route: cut(r.routeName) } : {}),
    ...(r.service ? { service: r.service } : {}),
    source: peerOf(r.source),
    destination: peerOf(r.destination),
    ...(r.upstreamHost ? { upstreamHost: r.upstreamHost } : {}),
    requestId: cut(r.requestId),
    ...(traceId ? { traceId } : {}),
    ...(r.tunnelTraceId ? { tunnelTraceId: r.tunnelTraceId } : {}),
  };
}

export class RecentRequests {
  readonly #name: string;
  readonly #capacity: number;
  readonly #ring: RequestSummary[] = [];
  readonly #listeners = new Set<RequestListener>();
  #next = 0;
  #ids = 0;

  /** `name` prefixes the ids (the waypoint pod's name); `capacity` is how many summaries are kept. */
  constructor(name: string, capacity = 2000) {
    this.#name = name;
    this.#capacity = Math.max(1, capacity);
  }

  get size(): number {
    return this.#ring.length;
  }

  add(r: RequestRecord): RequestSummary {
    const summary = summaryOf(`${this.#name}-${++this.#ids}`, r);
    if (this.#ring.length < this.#capacity) this.#ring.push(summary);
    else this.#ring[this.#next] = summary;
    this.#next = (this.#next + 1) % this.#capacity;
    for (const l of this.#listeners) l(summary);
    return summary;
  }

  /** Oldest first. */
  list(): RequestSummary[] {
    if (this.#ring.length < this.#capacity) return [...this.#ring];
    return [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
  }

  subscribe(listener: RequestListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

// Request mirroring (VirtualService mirror/mirrors, HTTPRoute RequestMirror)
// as Envoy's shadowing does it: fire and forget, Host with `-shadow`, the
// answer read and dropped. Nothing a mirror does reaches the client's
// response: it starts after the primary is under way, waits for the request
// body on its own, and its failures end with it. Bounded: at most
// `maxInFlight` mirrors at once (more are dropped and counted), each within
// a timeout, a body only within the request body's bound.
import { realClock, type Clock } from '../lib/core/clock.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ResolvedBackend } from '../lib/l7/index.ts';
import type { ClusterSet } from './clusters.ts';
import type { WaypointConfig } from './config.ts';
import type { RequestBody } from './request-body.ts';
import { UpstreamTimeoutError } from './upstream/errors.ts';
import type { RequestView as BalanceView } from './upstream/endpoint.ts';

export const DEFAULT_MAX_MIRRORS_IN_FLIGHT = 256;
/** Used when the route sets no timeout: a mirror that never answers must not hold its place for ever. */
export const DEFAULT_MIRROR_TIMEOUT_MS = 15_000;

export interface MirrorRequest {
  method: string;
  path: string;
  /** Upstream headers, Host already suffixed (shadowAuthority). */
  headers: Record<string, string | string[]>;
  body: RequestBody | undefined;
  timeoutMs?: number;
}

export interface MirrorsOptions {
  clusters: ClusterSet;
  clock?: Clock;
  maxInFlight?: number;
  log: Logger;
}

/** Why a mirror was not sent (the meshlet_waypoint_mirrors_total result label), or 'sent'. */
export type MirrorResult = 'sent' | 'failed' | 'dropped_in_flight_limit' | 'skipped_body' | 'no_upstream';

export class Mirrors {
  readonly #o: MirrorsOptions;
  readonly #clock: Clock;
  readonly #max: number;
  #inFlight = 0;
  readonly counts: Record<MirrorResult, number> = { sent: 0, failed: 0, dropped_in_flight_limit: 0, skipped_body: 0, no_upstream: 0 };

  constructor(options: MirrorsOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#max = options.maxInFlight ?? DEFAULT_MAX_MIRRORS_IN_FLIGHT;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  send(config: WaypointConfig, backend: ResolvedBackend, balance: BalanceView, request: MirrorRequest): void {
    if (this.#inFlight >= this.#max) {
      this.counts.dropped_in_flight_limit++;
      return;
    }
    this.#inFlight++;
    void this.#mirror(config, backend, balance, request).then(
      (result) => this.counts[result]++,
      (error: unknown) => {
        this.counts.failed++;
        this.#o.log.warn('mirror_failed', { backend: backend.host, error });
      },
    ).finally(() => this.#inFlight--);
  }

  async #mirror(config: WaypointConfig, backend: ResolvedBackend, balance: BalanceView, request: MirrorRequest): Promise<MirrorResult> {
    const body = request.body ? await request.body.complete() : null;
    if (body === undefined) return 'skipped_body';
    const found = this.#o.clusters.forBackend(config, backend);
    if (!found.ok) return 'no_upstream';
    const picked = found.cluster.pick(balance);
    if (!picked.ok) return 'no_upstream';
    const timeoutMs = request.timeoutMs ?? DEFAULT_MIRROR_TIMEOUT_MS;
    const abort = new AbortController();
    const { scheduler } = this.#clock;
    const timer = scheduler.set(() => abort.abort(new UpstreamTimeoutError(timeoutMs)), timeoutMs);
    try {
      const result = await found.cluster.request(picked.endpoint, { method: request.method, path: request.path, headers: request.headers, body, signal: abort.signal });
      if (!result.ok) return 'failed';
      await result.body.dump().catch(() => {});
      return 'sent';
    } finally {
      scheduler.clear(timer);
    }
  }
}

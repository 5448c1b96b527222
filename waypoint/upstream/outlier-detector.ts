// Outlier detection as Envoy does it for a cluster (Istio's outlierDetection):
// per endpoint, counts of consecutive 5xx and of consecutive gateway errors
// (502, 503, 504; a connect failure or reset counts as 503, a timeout as 504).
// Reaching a threshold ejects the endpoint, unless that would take the
// ejected share over maxEjectionPercent: Envoy's test is
// 100 * (ejected + 1) / endpoints <= maxEjectionPercent, so with 10% and
// fewer than 10 endpoints nothing is ejected. An ejection lasts
// baseEjectionTime × its backoff, the backoff growing by one per ejection
// (capped at max(300 s, base)) and shrinking by one per interval the endpoint
// stays in; ejected endpoints return on the interval timer. Balancing over
// the survivors, and panic below minHealthPercent, are the cluster's.
import { realClock, type Clock } from '../../lib/core/clock.ts';
import type { OutlierDetectionPolicy } from '../../lib/l7/cluster-policy.ts';

/** What one request to an endpoint came to: its status code, or a failure without one. */
export type UpstreamOutcome = number | 'connect_failure' | 'reset' | 'timeout';

export type EjectionType = 'consecutive_5xx' | 'consecutive_gateway_failure';

/** For metrics (Envoy's outlier_detection.ejections_* counters) and logs. */
export type OutlierEvent =
  | { kind: 'ejected'; endpoint: string; type: EjectionType; durationMs: number }
  /** A threshold was reached, but maxEjectionPercent kept the endpoint in (ejections_overflow). */
  | { kind: 'overflow'; endpoint: string; type: EjectionType }
  | { kind: 'returned'; endpoint: string };

export interface OutlierDetectorOptions {
  clock?: Clock;
  onEvent?(event: OutlierEvent): void;
  /** An endpoint was ejected or returned: the set to balance over changed. */
  onChange?(): void;
}

/** Envoy's consecutive_5xx default, which Istio keeps when consecutive5xxErrors is unset (0 disables it). */
const DEFAULT_CONSECUTIVE_5XX = 5;
/** Envoy's default max_ejection_time; a longer base ejection time raises it to the base. */
const DEFAULT_MAX_EJECTION_MS = 300_000;

interface Monitor {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Set while ejected. */
  ejectedAt: number | undefined;
  lastReturnedAt: number | undefined;
  /** Multiplies the base ejection time. */
  backoff: number;
}

const codeOf = (o: UpstreamOutcome): number => (o === 'timeout' ? 504 : typeof o === 'number' ? o : 503);

export class OutlierDetector {
  readonly #policy: OutlierDetectionPolicy;
  readonly #clock: Clock;
  readonly #onEvent: (event: OutlierEvent) => void;
  readonly #onChange: () => void;
  readonly #monitors = new Map<string, Monitor>();
  readonly #threshold5xx: number;
  readonly #thresholdGateway: number;
  readonly #maxEjectionMs: number;
  #ejected = 0;
  #timer: unknown;
  #closed = false;

  constructor(policy: OutlierDetectionPolicy, options: OutlierDetectorOptions = {}) {
    this.#policy = policy;
    this.#clock = options.clock ?? realClock;
    this.#onEvent = options.onEvent ?? (() => {});
    this.#onChange = options.onChange ?? (() => {});
    this.#threshold5xx = policy.consecutive5xxErrors ?? DEFAULT_CONSECUTIVE_5XX;
    this.#thresholdGateway = policy.consecutiveGatewayErrors ?? 0;
    this.#maxEjectionMs = Math.max(DEFAULT_MAX_EJECTION_MS, policy.baseEjectionTimeMs);
    this.#arm();
  }

  /** Endpoints currently ejected. */
  get ejectedCount(): number {
    return this.#ejected;
  }

  isEjected(endpoint: string): boolean {
    return this.#monitors.get(endpoint)?.ejectedAt !== undefined;
  }

  /** Follows the cluster's membership: new endpoints start clean, removed ones are forgotten. */
  setEndpoints(endpoints: Iterable<string>): void {
    const keep = new Set(endpoints);
    let changed = false;
    for (const [key, m] of this.#monitors) {
      if (keep.has(key)) continue;
      if (m.ejectedAt !== undefined) {
        this.#ejected--;
        changed = true;
      }
      this.#monitors.delete(key);
    }
    for (const key of keep) {
      if (!this.#monitors.has(key)) this.#monitors.set(key, { consecutive5xx: 0, consecutiveGateway: 0, ejectedAt: undefined, lastReturnedAt: undefined, backoff: 0 });
    }
    if (changed) this.#onChange();
  }

  record(endpoint: string, outcome: UpstreamOutcome): void {
    const m = this.#monitors.get(endpoint);
    if (!m) return;
    const code = codeOf(outcome);
    if (code < 500 || code > 599) {
      m.consecutive5xx = 0;
      m.consecutiveGateway = 0;
      return;
    }
    if (code >= 502 && code <= 504) {
      if (++m.consecutiveGateway === this.#thresholdGateway) this.#consecutiveError(endpoint, m, 'consecutive_gateway_failure');
    } else {
      m.consecutiveGateway = 0;
    }
    if (++m.consecutive5xx === this.#threshold5xx) this.#consecutiveError(endpoint, m, 'consecutive_5xx');
  }

  close(): void {
    this.#closed = true;
    this.#clock.scheduler.clear(this.#timer);
  }

  #consecutiveError(endpoint: string, m: Monitor, type: EjectionType): void {
    // Already out: its counters run on until it returns (which resets them), as in Envoy.
    if (m.ejectedAt !== undefined) return;
    this.#eject(endpoint, m, type);
    // Reset whether or not it was ejected, so that a further bout is detected without a success in between.
    if (type === 'consecutive_5xx') m.consecutive5xx = 0;
    else m.consecutiveGateway = 0;
  }

  #eject(endpoint: string, m: Monitor, type: EjectionType): void {
    const ejectedPercent = (100 * (this.#ejected + 1)) / this.#monitors.size;
    if (ejectedPercent > Math.min(100, this.#policy.maxEjectionPercent)) {
      this.#onEvent({ kind: 'overflow', endpoint, type });
      return;
    }
    this.#ejected++;
    m.ejectedAt = this.#clock.now();
    const base = this.#policy.baseEjectionTimeMs;
    if (m.backoff * base < this.#maxEjectionMs + base) m.backoff++;
    this.#onEvent({ kind: 'ejected', endpoint, type, durationMs: this.#ejectionMs(m) });
    this.#onChange();
  }

  #ejectionMs(m: Monitor): number {
    return Math.min(this.#policy.baseEjectionTimeMs * m.backoff, this.#maxEjectionMs);
  }

  #arm(): void {
    if (!this.#closed) this.#timer = this.#clock.scheduler.set(() => this.#sweep(), this.#policy.intervalMs);
  }

  /** The interval timer: return endpoints whose ejection is over; shrink the backoff of those that stayed in. */
  #sweep(): void {
    const now = this.#clock.now();
    let changed = false;
    for (const [endpoint, m] of this.#monitors) {
      if (m.ejectedAt === undefined || now - m.ejectedAt < this.#ejectionMs(m)) continue;
      m.ejectedAt = undefined;
      m.lastReturnedAt = now;
      // Counters near a threshold would eject again on very few new errors.
      m.consecutive5xx = 0;
      m.consecutiveGateway = 0;
      this.#ejected--;
      changed = true;
      this.#onEvent({ kind: 'returned', endpoint });
    }
    for (const m of this.#monitors.values()) {
      if (m.ejectedAt === undefined && m.lastReturnedAt !== undefined && now - m.lastReturnedAt >= this.#policy.intervalMs && m.backoff > 0) m.backoff--;
    }
    if (changed) this.#onChange();
    this.#arm();
  }
}

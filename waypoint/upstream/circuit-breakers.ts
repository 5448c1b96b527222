// Envoy's cluster circuit breakers, from Istio's connectionPool settings:
// counters shared by every endpoint of a cluster, each with its limit.
// Unset limits are Istio's defaults, 2^32-1 (in effect none). What overflows
// and what then happens follows Envoy's connection pools:
// - connections (maxConnections): a new connection is not opened, the
//   request waits for one (upstream_cx_overflow); an endpoint with no
//   connection at all may always open one;
// - pending (http1MaxPendingRequests, any protocol): a request that finds no
//   connection with room waits, and one past the limit is refused at once (UO);
// - requests (http2MaxRequests, any protocol): a request about to start on a
//   connection past the limit is refused (UO);
// - retries (maxRetries): a retry past the limit is not made (the caller
//   returns the response it has).
import type { ConnectionPoolLimits } from '../../lib/l7/cluster-policy.ts';

export const UNLIMITED = 2 ** 32 - 1;

export type Overflow = 'connections' | 'pending' | 'requests' | 'retries';

export interface CircuitBreakerCounts {
  connections: number;
  pending: number;
  requests: number;
  retries: number;
}

const limit = (n: number | undefined): number => (n === undefined || n <= 0 ? UNLIMITED : n);

export class CircuitBreakers {
  #maxConnections = UNLIMITED;
  #maxPending = UNLIMITED;
  #maxRequests = UNLIMITED;
  #maxRetries = UNLIMITED;
  #maxRequestsPerConnection = 0;
  readonly #active: CircuitBreakerCounts = { connections: 0, pending: 0, requests: 0, retries: 0 };
  /** How often each limit refused (Envoy's upstream_cx_overflow, upstream_rq_pending_overflow, upstream_rq_retry_overflow). */
  readonly overflows: CircuitBreakerCounts = { connections: 0, pending: 0, requests: 0, retries: 0 };
  readonly #onOverflow: (which: Overflow) => void;

  constructor(limits: ConnectionPoolLimits, onOverflow: (which: Overflow) => void = () => {}) {
    this.#onOverflow = onOverflow;
    this.setLimits(limits);
  }

  /** New limits apply to what comes next; nothing open is closed. */
  setLimits(limits: ConnectionPoolLimits): void {
    this.#maxConnections = limit(limits.maxConnections);
    this.#maxPending = limit(limits.http1MaxPendingRequests);
    this.#maxRequests = limit(limits.http2MaxRequests);
    this.#maxRetries = limit(limits.maxRetries);
    this.#maxRequestsPerConnection = limits.maxRequestsPerConnection ?? 0;
  }

  /** 0: a connection carries any number of requests. */
  get maxRequestsPerConnection(): number {
    return this.#maxRequestsPerConnection;
  }

  /** What is open, waiting and in flight now. */
  get active(): Readonly<CircuitBreakerCounts> {
    return this.#active;
  }

  /** Takes a connection; `onlyOne`: the endpoint has none, and may open one past the limit. */
  tryOpenConnection(onlyOne: boolean): boolean {
    return this.#take('connections', this.#maxConnections, onlyOne);
  }

  connectionClosed(): void {
    this.#active.connections--;
  }

  tryEnterPending(): boolean {
    return this.#take('pending', this.#maxPending);
  }

  leavePending(): void {
    this.#active.pending--;
  }

  tryStartRequest(): boolean {
    return this.#take('requests', this.#maxRequests);
  }

  requestEnded(): void {
    this.#active.requests--;
  }

  tryStartRetry(): boolean {
    return this.#take('retries', this.#maxRetries);
  }

  retryEnded(): void {
    this.#active.retries--;
  }

  #take(which: Overflow, max: number, force = false): boolean {
    if (this.#active[which] >= max) {
      this.overflows[which]++;
      this.#onOverflow(which);
      if (!force) return false;
    }
    this.#active[which]++;
    return true;
  }
}

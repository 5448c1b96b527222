// The router's waits, on the injected clock so tests move time rather than
// wait for it: a fault's delay, a retry's backoff, a route's timeout and a
// try's own timeout.
import type { Clock } from '../lib/core/clock.ts';
import { UpstreamTimeoutError } from './upstream/errors.ts';

/** Waits `ms`; resolves false at once if `signal` aborts first. */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => {
      clock.scheduler.clear(timer);
      resolve(false);
    };
    const timer = clock.scheduler.set(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A timeout that aborts its signal with UpstreamTimeoutError (which the
 * upstream side reads as UT); it runs from start() (a route's from the end of
 * the request, a try's from its start) until clear(). No `ms` (or 0): none.
 */
export class Timeout {
  readonly #clock: Clock;
  readonly #ms: number | undefined;
  #abort: AbortController | undefined;
  #timer: unknown;
  #started = false;
  #fired = false;
  #cleared = false;

  constructor(clock: Clock, ms: number | undefined) {
    this.#clock = clock;
    this.#ms = ms !== undefined && ms > 0 ? ms : undefined;
  }

  /** Made on first use: a request with no timeout never needs one. */
  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    return this.#abort.signal;
  }

  /** Whether this timeout can fire at all (it has a duration). */
  get armed(): boolean {
    return this.#ms !== undefined;
  }

  get fired(): boolean {
    return this.#fired;
  }

  start(): void {
    const ms = this.#ms;
    if (ms === undefined || this.#started || this.#cleared) return;
    this.#started = true;
    this.#timer = this.#clock.scheduler.set(() => {
      this.#fired = true;
      this.#abort ??= new AbortController();
      this.#abort.abort(new UpstreamTimeoutError(ms));
    }, ms);
  }

  clear(): void {
    this.#cleared = true;
    if (this.#started) this.#clock.scheduler.clear(this.#timer);
  }
}

/**
 * `signal` joined with the signals of those timeouts that can fire: most
 * requests have no timeout, and AbortSignal.any costs an allocation-heavy
 * composite signal per call.
 */
export function signalWith(signal: AbortSignal, ...timeouts: Timeout[]): AbortSignal {
  const armed = timeouts.filter((t) => t.armed);
  return armed.length === 0 ? signal : AbortSignal.any([signal, ...armed.map((t) => t.signal)]);
}

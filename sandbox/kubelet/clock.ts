// Time as the kubelet sees it: probes, restart backoff, lease renewal and
// status retries all go through one injected clock, so tests move time
// instead of waiting for it (test/support/manual-clock.ts fits this shape).
import type { Clock } from '../../lib/core/clock.ts';

/** A one-shot timer that can be re-armed or cancelled. */
export class Timer {
  readonly #clock: Clock;
  #handle: unknown;
  #armed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get armed(): boolean {
    return this.#armed;
  }

  /** Runs `fn` after `ms`, replacing any pending run. */
  arm(fn: () => void, ms: number): void {
    this.cancel();
    this.#armed = true;
    this.#handle = this.#clock.scheduler.set(() => {
      this.#armed = false;
      fn();
    }, Math.max(0, ms));
  }

  cancel(): void {
    if (this.#armed) this.#clock.scheduler.clear(this.#handle);
    this.#armed = false;
    this.#handle = undefined;
  }
}

/** A timestamp as the informer hands it: a Date from a list, an RFC 3339 string from a watch event. */
export function timestampMs(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

// The kubelet's waits: CrashLoopBackOff as kubelet computes it
// (flowcontrol.Backoff keyed per pod and container): the first restart is
// immediate, the next waits 10 s from the container's exit, doubling to
// 300 s; a container that ran longer than twice the maximum since its last
// restart starts over. And the capped doubling of its retried API calls and
// sandbox operations.

export const BACKOFF_INITIAL_MS = 10_000;
export const BACKOFF_MAX_MS = 300_000;

export class CrashLoopBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #delayMs: number | undefined;
  #lastUpdate = 0;

  constructor(initialMs = BACKOFF_INITIAL_MS, maxMs = BACKOFF_MAX_MS) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
  }

  /** The current wait, for messages ("back-off 20s restarting failed container"). */
  get delayMs(): number {
    return this.#delayMs ?? 0;
  }

  #expired(eventTime: number): boolean {
    return eventTime - this.#lastUpdate > 2 * this.#maxMs;
  }

  /** When a container that exited at `finishedAt` may start again (≤ now: at once). */
  restartAt(finishedAt: number): number {
    if (this.#delayMs === undefined || this.#expired(finishedAt)) return finishedAt;
    return finishedAt + this.#delayMs;
  }

  /** Records a restart of the container that exited at `finishedAt`: the next wait doubles. */
  next(finishedAt: number): void {
    this.#delayMs = this.#delayMs === undefined || this.#expired(finishedAt) ? this.#initialMs : Math.min(this.#delayMs * 2, this.#maxMs);
    this.#lastUpdate = finishedAt;
  }
}

/** A retried call's wait: `minMs` after the first failure, doubling to `maxMs`; reset() after a success. */
export class RetryDelay {
  readonly #minMs: number;
  readonly #maxMs: number;
  #ms: number;

  constructor(minMs: number, maxMs: number) {
    this.#minMs = minMs;
    this.#maxMs = maxMs;
    this.#ms = minMs;
  }

  /** The wait the next failure gets. */
  get ms(): number {
    return this.#ms;
  }

  /** The wait for this failure; the next one's doubles. */
  next(): number {
    const ms = this.#ms;
    this.#ms = Math.min(ms * 2, this.#maxMs);
    return ms;
  }

  reset(): void {
    this.#ms = this.#minMs;
  }
}

// A controller's work queue, by key (after client-go's rate-limited
// workqueue): a key queued twice runs once; a key added while its work runs
// runs again after it; a key's work never runs twice at once; a failure is
// retried with capped exponential backoff, and after `attempts` failures in
// a row the key is parked, reported, and left alone until it is added again
// (its object changed, or the controller's periodic resync), so that one
// object that always fails costs a few calls per resync, not a hot loop. The
// queue holds at most maxKeys keys; one added beyond that is dropped and
// counted (the next resync adds it again).
import type { Scheduler } from '../lib/core/clock.ts';
import type { Logger } from '../lib/core/log.ts';
import { describeError } from '../lib/cluster/sources/kube-client.ts';

export interface RetryPolicy {
  /** First retry after a failure; doubles per failure in a row, up to maxMs. */
  initialMs: number;
  maxMs: number;
  /** Failures in a row after which the key is parked. */
  attempts: number;
}

export interface WorkQueueOptions {
  /** Names the queue in logs. */
  name: string;
  /** Rejects to be retried. */
  work: (key: string) => Promise<void>;
  concurrency: number;
  maxKeys: number;
  retry: RetryPolicy;
  timers: Scheduler;
  /** In [0, 1): spreads the retries. */
  random: () => number;
  log: Logger;
}

export interface ParkedKey {
  key: string;
  attempts: number;
  error: string;
}

export interface WorkQueueStatus {
  queued: number;
  running: number;
  /** Waiting for a retry after a failure. */
  retrying: number;
  parked: ParkedKey[];
  /** Keys refused because the queue was full, since the start. */
  dropped: number;
}

interface Failures {
  count: number;
  error: string;
  timer?: unknown;
  parked: boolean;
}

export class WorkQueue {
  readonly #o: WorkQueueOptions;
  /** FIFO of keys to run; `#queued` says which entries still count (forget() leaves stale ones behind). */
  #order: string[] = [];
  readonly #queued = new Set<string>();
  readonly #running = new Set<string>();
  /** Added while running: runs again once the current run ends. */
  readonly #again = new Set<string>();
  readonly #failures = new Map<string, Failures>();
  #dropped = 0;
  #stopped = false;

  constructor(options: WorkQueueOptions) {
    this.#o = options;
  }

  /** Runs the key's work soon; a fresh start for a key that was failing or parked. */
  add(key: string): void {
    if (this.#stopped) return;
    this.#clearFailures(key);
    if (this.#running.has(key)) {
      this.#again.add(key);
      return;
    }
    this.#enqueue(key);
  }

  /** The key's object is gone: drop its queued work, retries and failures. */
  forget(key: string): void {
    this.#queued.delete(key);
    this.#again.delete(key);
    this.#clearFailures(key);
  }

  status(): WorkQueueStatus {
    const parked: ParkedKey[] = [];
    let retrying = 0;
    for (const [key, f] of this.#failures) {
      if (f.parked) parked.push({ key, attempts: f.count, error: f.error });
      else if (f.timer !== undefined) retrying += 1;
    }
    return { queued: this.#queued.size, running: this.#running.size, retrying, parked, dropped: this.#dropped };
  }

  /** Nothing runs after this; work in flight finishes unobserved. */
  stop(): void {
    this.#stopped = true;
    for (const f of this.#failures.values()) this.#o.timers.clear(f.timer);
    this.#failures.clear();
    this.#queued.clear();
    this.#order = [];
    this.#again.clear();
  }

  #clearFailures(key: string): void {
    const f = this.#failures.get(key);
    if (f === undefined) return;
    this.#o.timers.clear(f.timer);
    this.#failures.delete(key);
  }

  #enqueue(key: string): void {
    if (this.#queued.has(key)) return;
    if (this.#queued.size + this.#running.size >= this.#o.maxKeys) {
      this.#dropped += 1;
      if (this.#dropped === 1 || this.#dropped % 1000 === 0) {
        this.#o.log.warn('work queue full; dropping work until the next resync', { queue: this.#o.name, maxKeys: this.#o.maxKeys, dropped: this.#dropped });
      }
      return;
    }
    this.#queued.add(key);
    this.#order.push(key);
    this.#pump();
  }

  #pump(): void {
    while (!this.#stopped && this.#running.size < this.#o.concurrency && this.#order.length > 0) {
      const key = this.#order.shift()!;
      if (!this.#queued.delete(key)) continue;
      this.#run(key);
    }
  }

  #run(key: string): void {
    this.#running.add(key);
    let work: Promise<void>;
    try {
      work = this.#o.work(key);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.then(() => this.#clearFailures(key), (err: unknown) => this.#failed(key, err)).finally(() => {
      this.#running.delete(key);
      if (this.#again.delete(key)) this.add(key);
      this.#pump();
    });
  }

  #failed(key: string, err: unknown): void {
    if (this.#stopped) return;
    const { retry, log } = this.#o;
    const f = this.#failures.get(key) ?? { count: 0, error: '', parked: false };
    f.count += 1;
    f.error = describeError(err);
    this.#failures.set(key, f);
    if (f.count >= retry.attempts) {
      f.parked = true;
      log.error('giving up until the object changes or the next resync', { queue: this.#o.name, key, attempts: f.count, error: f.error });
      return;
    }
    const delay = Math.min(retry.maxMs, retry.initialMs * 2 ** (f.count - 1)) * (0.8 + 0.4 * this.#o.random());
    log.warn('work failed; retrying', { queue: this.#o.name, key, attempt: f.count, retryMs: Math.round(delay), error: f.error });
    f.timer = this.#o.timers.set(() => {
      f.timer = undefined;
      if (this.#failures.get(key) === f) this.#enqueue(key);
    }, delay);
  }
}

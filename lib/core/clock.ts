// Time as components see it: every timeout, retry, rotation and probe goes
// through an injected clock, so tests move time instead of waiting for it
// (test/support/manual-clock.ts is the test's clock).

export interface Scheduler<Handle = unknown> {
  set(fn: () => void, ms: number): Handle;
  clear(handle: Handle | undefined): void;
}

export interface Clock {
  now(): number;
  scheduler: Scheduler;
}

/** Real timers, unref'd: a pending retry never keeps a process alive on its own. */
export const realScheduler: Scheduler<NodeJS.Timeout> = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (handle) => clearTimeout(handle),
};

/** A time at whole seconds: X.509 validity and Kubernetes timestamps (metav1.Time) carry no fractions, so a time meant as "now" must not start a fraction later, and status comparisons stay stable. */
export const wholeSecond = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

export const realClock: Clock = { now: () => Date.now(), scheduler: realScheduler as Scheduler };

// setTimeout fires at once for delays above 2^31-1 ms (24.8 days); longer waits re-arm.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `fn` once when `clock` reaches `at` (ms since the epoch), at once if it has; the returned function cancels it. */
export function scheduleAt(clock: Clock, at: number, fn: () => void): () => void {
  let handle: unknown;
  const arm = () => {
    const left = at - clock.now();
    if (left <= 0) return fn();
    handle = clock.scheduler.set(arm, Math.min(left, MAX_TIMER_MS));
  };
  arm();
  return () => clock.scheduler.clear(handle);
}

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

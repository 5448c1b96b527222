// A clock and a scheduler that move only when the test says so, for code that
// takes them as options (lib/identity/store.ts). Timers fire in time order
// while advancing, each with the clock set to its due time.
import type { Scheduler } from '../../lib/core/clock.ts';

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

export class ManualClock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, Timer>();

  constructor(start: number) {
    this.#now = start;
  }

  readonly now = (): number => this.#now;

  readonly scheduler: Scheduler<number> = {
    set: (fn, ms) => {
      const seq = ++this.#seq;
      this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
      return seq;
    },
    clear: (handle) => {
      if (handle !== undefined) this.#timers.delete(handle);
    },
  };

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    this.advanceTo(this.#now + ms);
  }

  /** Moves to `to` (never back), firing every timer due by then, including ones those timers set. */
  advanceTo(to: number | Date): void {
    const target = Math.max(this.#now, typeof to === 'number' ? to : to.getTime());
    for (;;) {
      const next = [...this.#timers.values()].filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#timers.delete(next.seq);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = target;
  }
}

// Aggregation over the bench's rounds. Every round runs each workload on
// every path back to back, so two paths are compared within a round (a
// neighbour's load lands on one round, or on both paths of it, rather than
// on one path's whole block) and the rounds' comparisons are summarised as
// min / median / max.
import { median, round } from './stats.ts';

/** A comparison summarised over the rounds. */
export interface Spread {
  min: number;
  median: number;
  max: number;
  /** Each round's value, in round order; null where either side was missing. */
  rounds: (number | null)[];
}

/** Exactly `count` entries, position i being round i; missing and non-finite values become null. */
export function alignRounds(values: readonly (number | null | undefined)[], count: number): (number | null)[] {
  return Array.from({ length: count }, (_, i) => {
    const v = values[i];
    return v === null || v === undefined || !Number.isFinite(v) ? null : v;
  });
}

/** `combine(a[i], b[i])` for every round; null where either is missing or the result is not finite (a ratio to 0). */
export function perRound(a: readonly (number | null)[], b: readonly (number | null)[], combine: (a: number, b: number) => number): (number | null)[] {
  const count = Math.max(a.length, b.length);
  return Array.from({ length: count }, (_, i) => {
    const x = a[i];
    const y = b[i];
    if (x === null || x === undefined || y === null || y === undefined) return null;
    const v = combine(x, y);
    return Number.isFinite(v) ? v : null;
  });
}

/** min / median / max of the rounds that have a value, rounded to `digits`; null when none has. */
export function spread(values: readonly (number | null)[], digits: number): Spread | null {
  const present = values.filter((v): v is number => v !== null);
  if (present.length === 0) return null;
  return {
    min: round(Math.min(...present), digits),
    median: round(median(present)!, digits),
    max: round(Math.max(...present), digits),
    rounds: values.map((v) => (v === null ? null : round(v, digits))),
  };
}

/** a ÷ b round by round, summarised: how one path compares with another. */
export const ratioOverRounds = (a: readonly (number | null)[], b: readonly (number | null)[], digits = 3): Spread | null =>
  spread(perRound(a, b, (x, y) => x / y), digits);

/** a − b round by round, summarised: what one path adds over another (latency). */
export const differenceOverRounds = (a: readonly (number | null)[], b: readonly (number | null)[], digits = 3): Spread | null =>
  spread(perRound(a, b, (x, y) => x - y), digits);

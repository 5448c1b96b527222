// Signing requests per node: a token bucket each (burst, then a steady rate),
// so one node, or a stolen token of one, cannot keep the CA busy for the
// others. One bucket per authenticated node (and per waypoint identity,
// caller.ts rateKey), so the table is as large as the cluster and no larger.
import type { Clock } from '../lib/core/clock.ts';

export interface RateLimitOptions {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: requests a node may make at once after a quiet spell. */
  burst: number;
  now: Clock['now'];
}

interface Bucket {
  tokens: number;
  at: number;
}

export class NodeRateLimit {
  readonly #o: RateLimitOptions;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimitOptions) {
    this.#o = options;
  }

  /** Takes a token for `node`: undefined if it had one, else how many ms until it will. */
  take(node: string): number | undefined {
    const { ratePerSecond, burst } = this.#o;
    const now = this.#o.now();
    const bucket = this.#buckets.get(node) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) * ratePerSecond) / 1000);
    bucket.at = now;
    this.#buckets.set(node, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    return Math.ceil(((1 - bucket.tokens) * 1000) / ratePerSecond);
  }
}

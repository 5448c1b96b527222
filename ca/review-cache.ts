// TokenReview answers by token: the successful ones, so that each CSR of a
// ztunnel does not cost a review, and the API server's rejections, briefly,
// so that a caller repeating a bad token does not either. Keyed by the
// token's SHA-256 (the cache holds no token), each entry dropped a margin
// before its token expires or after a maximum age, whichever comes first,
// and at most `maxEntries` held (the oldest goes).
import { createHash } from 'node:crypto';

export interface ReviewCacheOptions {
  maxEntries: number;
  /** Bounds how long a token revoked at the API server is still taken from the cache. */
  maxAgeMs: number;
  /** An entry goes this long before its token's expiry, so an expired token is never taken from the cache. */
  expiryMarginMs: number;
  now: () => number;
}

export const DEFAULT_REVIEW_CACHE: Omit<ReviewCacheOptions, 'now'> = { maxEntries: 4096, maxAgeMs: 60_000, expiryMarginMs: 10_000 };
/** Rejections: short-lived, so a token that becomes valid (its not-before passes) is soon asked about again. */
export const DEFAULT_REJECTED_CACHE: Omit<ReviewCacheOptions, 'now'> = { maxEntries: 4096, maxAgeMs: 10_000, expiryMarginMs: 0 };

const keyOf = (token: string): string => createHash('sha256').update(token).digest('base64');

export class ReviewCache<T> {
  readonly #o: ReviewCacheOptions;
  /** In insertion order, so the first entry is the oldest. */
  readonly #entries = new Map<string, { value: T; until: number }>();

  constructor(options: ReviewCacheOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(token: string): T | undefined {
    const key = keyOf(token);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#o.now() < entry.until) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  /** Holds `value` for the token that expires at `expiresAtMs` (epoch ms); a token too close to its expiry is not held. */
  set(token: string, value: T, expiresAtMs: number): void {
    const now = this.#o.now();
    const until = Math.min(now + this.#o.maxAgeMs, expiresAtMs - this.#o.expiryMarginMs);
    if (until <= now) return;
    const key = keyOf(token);
    this.#entries.delete(key);
    if (this.#entries.size >= this.#o.maxEntries) this.#evict(now);
    this.#entries.set(key, { value, until });
  }

  /** Drops the expired entries, then the oldest until there is room for one. */
  #evict(now: number): void {
    for (const [key, entry] of this.#entries) if (entry.until <= now) this.#entries.delete(key);
    for (const key of this.#entries.keys()) {
      if (this.#entries.size < this.#o.maxEntries) return;
      this.#entries.delete(key);
    }
  }
}

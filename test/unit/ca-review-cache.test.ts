// The CA's cache of successful TokenReviews: an entry goes a margin before its
// token expires or after the maximum age, whichever is first, and the cache
// holds at most maxEntries (dropping expired entries, then the oldest).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReviewCache } from '../../ca/review-cache.ts';
import { ManualClock } from '../support/manual-clock.ts';

const START = 1_000_000;

function cache(maxEntries = 10) {
  const clock = new ManualClock(START);
  return { clock, cache: new ReviewCache<string>({ maxEntries, maxAgeMs: 60_000, expiryMarginMs: 10_000, now: clock.now }) };
}

test('an entry lasts the maximum age when its token outlives it', () => {
  const { clock, cache: c } = cache();
  c.set('token', 'node-1', START + 3_600_000);
  clock.advance(59_999);
  assert.equal(c.get('token'), 'node-1');
  clock.advance(1);
  assert.equal(c.get('token'), undefined);
  assert.equal(c.size, 0, 'an expired entry is dropped when found');
});

test('an entry goes the margin before its token expires, and a token about to expire is not held', () => {
  const { clock, cache: c } = cache();
  c.set('short', 'node-1', START + 30_000);
  clock.advance(19_999);
  assert.equal(c.get('short'), 'node-1');
  clock.advance(1);
  assert.equal(c.get('short'), undefined, 'gone 10 s before the token expires');
  c.set('ending', 'node-1', clock.now() + 10_000);
  c.set('no-expiry', 'node-1', 0);
  assert.equal(c.size, 0);
});

test('a full cache drops its expired entries first, then its oldest', () => {
  const { clock, cache: c } = cache(3);
  c.set('a', 'A', START + 15_000);
  c.set('b', 'B', START + 3_600_000);
  c.set('c', 'C', START + 3_600_000);
  clock.advance(5_000);
  c.set('d', 'D', START + 3_600_000);
  assert.deepEqual(['a', 'b', 'c', 'd'].map((k) => c.get(k)), [undefined, 'B', 'C', 'D'], 'the expired a made room');
  c.set('e', 'E', START + 3_600_000);
  assert.deepEqual(['b', 'c', 'd', 'e'].map((k) => c.get(k)), [undefined, 'C', 'D', 'E'], 'then the oldest, b');
  c.set('c', 'C2', START + 3_600_000);
  c.set('f', 'F', START + 3_600_000);
  assert.deepEqual(['c', 'd', 'e', 'f'].map((k) => c.get(k)), ['C2', undefined, 'E', 'F'], 'setting c again made it the newest');
  assert.equal(c.size, 3);
});

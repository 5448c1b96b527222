// Outlier detection as Envoy runs it, on a clock the test moves: consecutive
// 5xx and consecutive gateway errors per endpoint, the maxEjectionPercent
// cap with Envoy's rounding, ejection for base × backoff, return on the
// interval timer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OutlierDetectionPolicy } from '../../lib/l7/cluster-policy.ts';
import { OutlierDetector, type OutlierEvent, type UpstreamOutcome } from '../../waypoint/upstream/outlier-detector.ts';
import { ManualClock } from '../support/manual-clock.ts';

const policy = (over: Partial<OutlierDetectionPolicy> = {}): OutlierDetectionPolicy => ({ intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0, ...over });

function detector(p: OutlierDetectionPolicy, endpoints = ['a', 'b', 'c', 'd']) {
  const clock = new ManualClock(1_000_000);
  const events: OutlierEvent[] = [];
  let changes = 0;
  const d = new OutlierDetector(p, { clock, onEvent: (e) => events.push(e), onChange: () => changes++ });
  d.setEndpoints(endpoints);
  return { d, clock, events, changes: () => changes };
}

const feed = (d: OutlierDetector, endpoint: string, ...outcomes: UpstreamOutcome[]) => outcomes.forEach((o) => d.record(endpoint, o));

test('five consecutive 5xx eject by default (Istio keeps Envoy\'s consecutive_5xx of 5); a success in between resets the count', () => {
  const { d, events, changes } = detector(policy());
  feed(d, 'a', 500, 500, 500, 500, 200, 500, 500, 500, 500);
  assert.equal(d.isEjected('a'), false);
  feed(d, 'a', 500);
  assert.equal(d.isEjected('a'), true);
  assert.deepEqual(events, [{ kind: 'ejected', endpoint: 'a', type: 'consecutive_5xx', durationMs: 30_000 }]);
  assert.equal(changes(), 1);
  assert.equal(d.ejectedCount, 1);
});

test('consecutive gateway errors: 502, 503, 504, connect failures, resets and timeouts; other 5xx break the run', () => {
  const { d, events } = detector(policy({ consecutiveGatewayErrors: 3, consecutive5xxErrors: 0 }));
  feed(d, 'a', 502, 'connect_failure', 500, 'reset', 'timeout');
  assert.equal(d.isEjected('a'), false, 'the 500 broke the run');
  feed(d, 'a', 504);
  assert.equal(d.isEjected('a'), true);
  assert.deepEqual(events.map((e) => e.kind === 'ejected' && e.type), ['consecutive_gateway_failure']);
});

test('gateway errors eject only when consecutiveGatewayErrors is set; consecutive5xxErrors 0 disables 5xx ejection', () => {
  const { d } = detector(policy({ consecutive5xxErrors: 0 }));
  feed(d, 'a', ...Array<UpstreamOutcome>(20).fill(503));
  assert.equal(d.isEjected('a'), false);
  const other = detector(policy({ consecutive5xxErrors: 3 })).d;
  feed(other, 'b', 503, 'connect_failure', 'timeout');
  assert.equal(other.isEjected('b'), true, 'gateway errors are 5xx too');
});

test('maxEjectionPercent: Envoy ejects while 100 × (ejected + 1) / endpoints stays within it', () => {
  // 10 % of 4 endpoints: one ejection would be 25 %, so none happens.
  const small = detector(policy({ consecutive5xxErrors: 1, maxEjectionPercent: 10 }));
  feed(small.d, 'a', 500);
  assert.equal(small.d.ejectedCount, 0);
  assert.deepEqual(small.events, [{ kind: 'overflow', endpoint: 'a', type: 'consecutive_5xx' }]);
  // 50 % of 4: two of them.
  const half = detector(policy({ consecutive5xxErrors: 1, maxEjectionPercent: 50 }));
  for (const e of ['a', 'b', 'c']) feed(half.d, e, 500);
  assert.deepEqual([half.d.isEjected('a'), half.d.isEjected('b'), half.d.isEjected('c')], [true, true, false]);
  // 10 % of 10: exactly one.
  const ten = detector(policy({ consecutive5xxErrors: 1, maxEjectionPercent: 10 }), Array.from({ length: 10 }, (_, i) => `e${i}`));
  feed(ten.d, 'e0', 500);
  feed(ten.d, 'e1', 500);
  assert.equal(ten.d.ejectedCount, 1);
  // The only endpoint, with 100 %.
  const one = detector(policy({ consecutive5xxErrors: 1 }), ['a']);
  feed(one.d, 'a', 503);
  assert.equal(one.d.isEjected('a'), true);
});

test('an ejected endpoint returns on the first interval sweep after base × backoff; each ejection lengthens the next', () => {
  const { d, clock, events } = detector(policy({ consecutive5xxErrors: 1 }));
  feed(d, 'a', 500);
  clock.advance(20_000);
  assert.equal(d.isEjected('a'), true, 'two sweeps in, still out');
  clock.advance(10_000);
  assert.equal(d.isEjected('a'), false, 'back at the third sweep, 30 s after');
  // Ejected again at once: backoff 2, so 60 s.
  feed(d, 'a', 500);
  assert.deepEqual(events.at(-1), { kind: 'ejected', endpoint: 'a', type: 'consecutive_5xx', durationMs: 60_000 });
  clock.advance(50_000);
  assert.equal(d.isEjected('a'), true);
  clock.advance(10_000);
  assert.equal(d.isEjected('a'), false);
  // Staying in for two intervals brings the backoff back down, one step per interval.
  clock.advance(20_000);
  feed(d, 'a', 500);
  assert.deepEqual(events.at(-1), { kind: 'ejected', endpoint: 'a', type: 'consecutive_5xx', durationMs: 30_000 });
  assert.deepEqual(events.filter((e) => e.kind === 'returned').length, 2);
});

test('returning resets the counts, so a few new errors do not eject again', () => {
  const { d, clock } = detector(policy({ consecutive5xxErrors: 3 }));
  feed(d, 'a', 500, 500, 500, 500, 500);
  assert.equal(d.isEjected('a'), true);
  clock.advance(30_000);
  feed(d, 'a', 500, 500);
  assert.equal(d.isEjected('a'), false);
  feed(d, 'a', 500);
  assert.equal(d.isEjected('a'), true);
});

test('endpoints that leave are forgotten, ejected ones included; close() stops the interval timer', () => {
  const { d, clock, changes } = detector(policy({ consecutive5xxErrors: 1 }));
  feed(d, 'a', 500);
  d.setEndpoints(['b', 'c', 'd', 'e']);
  assert.equal(d.ejectedCount, 0);
  assert.equal(changes(), 2);
  feed(d, 'a', 500);
  assert.equal(d.ejectedCount, 0, 'results for an endpoint no longer there are ignored');
  assert.equal(clock.pending, 1);
  d.close();
  assert.equal(clock.pending, 0);
});

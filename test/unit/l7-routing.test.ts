// The routing case table (test/support/l7-cases.ts) through the route side:
// each case's resources converted and compiled, its request authorized and
// routed, the outcome compared with what the case expects. Shares are
// counted over many requests with a seeded random.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { L7_CASES, type Expectation, type HeaderExpectation, type L7Case } from '../support/l7-cases.ts';
import { outcomeOf, requestOf, seededRandom, waypointFor, type Outcome, type Waypoint } from '../support/l7-simulate.ts';
import type { HeaderMap } from '../../lib/l7/index.ts';

const SEED = 20261202;

function checkHeaders(actual: HeaderMap, expected: HeaderExpectation | undefined, what: string): void {
  for (const [name, value] of Object.entries(expected ?? {})) {
    if (value === null) assert.equal(actual[name], undefined, `${what} ${name} should be absent`);
    else assert.deepEqual(actual[name], value, `${what} ${name}`);
  }
}

function shareLabel(o: Outcome, of: 'backend' | 'status' | 'delayed' | 'mirrored'): string {
  switch (of) {
    case 'backend':
      return o.kind === 'forward' ? o.backend : `status ${o.status}`;
    case 'status':
      return o.kind === 'forward' ? 'forward' : String(o.status);
    case 'delayed':
      return o.delayMs > 0 ? 'delayed' : 'on time';
    case 'mirrored':
      return o.kind === 'forward' && o.mirrors.length > 0 ? 'mirrored' : 'not mirrored';
  }
}

function check(w: Waypoint, c: L7Case, expect: Expectation): void {
  const request = requestOf(c.request);
  const random = seededRandom(SEED);
  if (expect.kind === 'rejected') {
    const r = w.rejected.find((x) => x.object === expect.object);
    assert.ok(r, `${expect.object} should be rejected; rejected: ${JSON.stringify(w.rejected)}`);
    assert.ok(r.reason.includes(expect.reason), `reason ${JSON.stringify(r.reason)} should contain ${JSON.stringify(expect.reason)}`);
    assert.equal(r.failClosed !== undefined, expect.failClosed === true, `failClosed: ${r.failClosed}`);
    check(w, c, expect.then);
    return;
  }
  if (expect.kind === 'shares') {
    const counts = new Map<string, number>();
    for (let i = 0; i < expect.requests; i++) {
      const label = shareLabel(outcomeOf(w, request, random), expect.of);
      counts.set(label, (counts.get(label) ?? 0) + 1);
    }
    for (const label of counts.keys()) assert.ok(label in expect.shares, `unexpected outcome ${label} (${counts.get(label)} of ${expect.requests})`);
    for (const [label, share] of Object.entries(expect.shares)) {
      const got = (counts.get(label) ?? 0) / expect.requests;
      assert.ok(Math.abs(got - share) <= expect.tolerance, `${label}: ${got.toFixed(3)} of requests, expected ${share} ± ${expect.tolerance}`);
    }
    return;
  }
  const o = outcomeOf(w, request, random);
  if (expect.kind === 'status') {
    assert.equal(o.kind, 'status', `expected status ${expect.status}, got ${JSON.stringify(o)}`);
    if (o.kind !== 'status') return;
    assert.equal(o.status, expect.status, `status (${o.reason})`);
    if (expect.body !== undefined) assert.equal(o.body, expect.body);
    if (expect.location !== undefined) assert.equal(o.location, expect.location);
    checkHeaders(o.responseHeaders, expect.responseHeaders, 'response header');
    return;
  }
  assert.equal(o.kind, 'forward', `expected a forward to ${expect.backend}, got ${JSON.stringify(o)}`);
  if (o.kind !== 'forward') return;
  assert.equal(o.backend, expect.backend);
  if (expect.port !== undefined) assert.equal(o.port, expect.port);
  if (expect.path !== undefined) assert.equal(o.path, expect.path);
  if (expect.authority !== undefined) assert.equal(o.authority, expect.authority);
  checkHeaders(o.requestHeaders, expect.requestHeaders, 'request header');
  checkHeaders(o.responseHeaders, expect.responseHeaders, 'response header');
  if (expect.timeoutMs !== undefined) assert.equal(o.timeoutMs, expect.timeoutMs, 'timeout');
  if (expect.retry === null) assert.equal(o.retry, null, 'no retries');
  else if (expect.retry !== undefined) {
    assert.ok(o.retry, 'a retry policy');
    for (const [k, v] of Object.entries(expect.retry)) assert.deepEqual(o.retry[k as keyof typeof o.retry], v, `retry.${k}`);
  }
  if (expect.mirrors !== undefined) assert.deepEqual(o.mirrors, expect.mirrors);
  if (expect.delayMs !== undefined) assert.equal(o.delayMs, expect.delayMs);
}

test('the case table has at least 40 routing cases besides rejections', () => {
  assert.ok(L7_CASES.filter((c) => c.expect.kind !== 'rejected').length >= 40);
  const names = L7_CASES.map((c) => c.name);
  assert.equal(new Set(names).size, names.length, 'case names are unique');
});

for (const c of L7_CASES) {
  test(c.name, () => {
    const w = waypointFor(c.resources);
    // A case whose resources are refused by mistake would test nothing.
    if (c.expect.kind !== 'rejected') assert.deepEqual(w.rejected, [], 'every resource converts');
    check(w, c, c.expect);
  });
}

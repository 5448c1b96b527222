// The routing case table (test/support/l7-cases.ts) replayed through a real
// waypoint: each case's resources become the waypoint's cluster state beside
// the fixture services, its request goes from a client workload over hop 1
// (mutual TLS, CONNECT to the Service's VIP:port), through the router and
// hop 2 to a real backend, and what the client gets and the backend sees is
// compared with the case's expectation. Routing's chances come from the same
// seeded random as the route-side suite, so shares come out the same; a
// fault's delay passes at once on the waypoint's clock, and shows in the
// request's DI flag. What a real request cannot show (the route's timeout and
// retry policy as data) is the route-side suite's to check.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BACKEND_HEADER, L7_CASES, SERVICES, type CaseRequest, type Expectation, type HeaderExpectation, type L7Case } from '../support/l7-cases.ts';
import { seededRandom } from '../support/l7-simulate.ts';
import { eventually } from '../support/eventually.ts';
import { startStack, SteppingClock, type Response, type SendRequest, type ServiceSpec, type Stack } from '../waypoint/router-fixtures.ts';

const SEED = 20261202;
/** Requests of a shares case in flight at once (each on its own kept-alive connection). */
const CONCURRENCY = 8;

const FIXTURE: ServiceSpec[] = Object.entries(SERVICES).map(([name, s]) => ({ name, ports: s.ports, versions: s.versions, ...(s.appProtocol === 'grpc' ? { protocol: 'grpc' as const } : {}) }));

interface Outcome {
  response: Response;
  /** `<service>:<version>` of the pod that answered; undefined for a local reply. */
  backend: string | undefined;
  echo: { path: string; port: number; headers: Record<string, string[]> } | undefined;
  requestId: string;
}

let sequence = 0;

function sendOf(c: CaseRequest, requestId: string): SendRequest {
  const headers: Record<string, string> = { ...c.headers, 'x-request-id': requestId };
  const grpc = Object.entries(headers).some(([k, v]) => k.toLowerCase() === 'content-type' && v.startsWith('application/grpc'));
  return {
    to: c.to,
    ...(c.port !== undefined ? { port: c.port } : {}),
    ...(c.method ? { method: c.method } : {}),
    path: c.path ?? '/',
    headers,
    ...(c.from ? { from: c.from } : {}),
    ...(c.sourceIp ? { sourceIp: c.sourceIp } : {}),
    ...(grpc ? { http2: true } : {}),
  };
}

async function run(stack: Stack, c: CaseRequest): Promise<Outcome> {
  const requestId = `case-${++sequence}`;
  const response = await stack.send(sendOf(c, requestId));
  let echo: Outcome['echo'];
  let backend: string | undefined;
  try {
    const parsed = JSON.parse(response.body) as { pod?: string; path: string; port: number; headers: Record<string, string[]> };
    if (parsed.pod) {
      echo = parsed;
      backend = parsed.pod.replace(/-(v\d+)$/, ':$1');
    }
  } catch {
    // Not an echo: a local reply, or the gRPC backend (named in its header).
  }
  if (!backend && typeof response.headers[BACKEND_HEADER] === 'string') backend = response.headers[BACKEND_HEADER];
  return { response, backend, echo, requestId };
}

/** A case's `<service>` names any version of it; `<service>:<subset>` that version. */
const sameBackend = (actual: string | undefined, expected: string): boolean => actual !== undefined && (actual === expected || (!expected.includes(':') && actual.startsWith(`${expected}:`)));

function checkHeaders(actual: Record<string, string | string[] | undefined>, expected: HeaderExpectation | undefined, what: string): void {
  for (const [name, value] of Object.entries(expected ?? {})) {
    const got = actual[name];
    if (value === null) assert.equal(got, undefined, `${what} ${name} should be absent`);
    else if (name === BACKEND_HEADER && typeof value === 'string') assert.ok(sameBackend(typeof got === 'string' ? got : undefined, value), `${what} ${name}: ${String(got)}, expected ${value}`);
    else assert.deepEqual(Array.isArray(got) && !Array.isArray(value) && got.length === 1 ? got[0] : got, value, `${what} ${name}`);
  }
}

/** The request's record: the flags it ended with. */
async function flagsOf(stack: Stack, requestId: string): Promise<string> {
  const summary = await eventually(`the record of ${requestId}`, () => stack.waypoint.recent.list().find((s) => s.requestId === requestId));
  return summary.flags;
}

/** Whether a pod of `service` got a mirrored copy of the request (Host with -shadow), once the mirrors in flight are done. */
async function mirroredTo(stack: Stack, service: string, requestId: string): Promise<boolean> {
  await eventually('the mirrors done', () => stack.waypoint.mirrors.inFlight === 0);
  return [...stack.backends.values()].some((b) => b.service === service && b.received.some((r) => r.headers['x-request-id']?.[0] === requestId && /-shadow(:\d+)?$/.test(r.headers.host?.[0] ?? '')));
}

async function shareLabel(stack: Stack, o: Outcome, of: 'backend' | 'status' | 'delayed' | 'mirrored', keys: string[]): Promise<string> {
  switch (of) {
    case 'backend': {
      if (!o.backend) return `status ${o.response.status}`;
      return keys.includes(o.backend) ? o.backend : o.backend.split(':')[0]!;
    }
    case 'status':
      return o.backend ? 'forward' : String(o.response.status);
    case 'delayed':
      return (await flagsOf(stack, o.requestId)).split(',').includes('DI') ? 'delayed' : 'on time';
    case 'mirrored':
      return (await mirroredTo(stack, 'mirror', o.requestId)) ? 'mirrored' : 'not mirrored';
  }
}

async function check(stack: Stack, c: L7Case, expect: Expectation): Promise<void> {
  if (expect.kind === 'rejected') {
    const rejected = stack.waypoint.source.status().rejected;
    const r = rejected.find((x) => x.object === expect.object);
    assert.ok(r, `${expect.object} should be rejected; rejected: ${JSON.stringify(rejected)}`);
    assert.ok(r.reason.includes(expect.reason), `reason ${JSON.stringify(r.reason)} should contain ${JSON.stringify(expect.reason)}`);
    assert.equal(r.failClosed !== undefined, expect.failClosed === true, `failClosed: ${r.failClosed}`);
    return check(stack, c, expect.then);
  }
  if (expect.kind === 'shares') {
    const keys = Object.keys(expect.shares);
    const labels: string[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < expect.requests) {
        next++;
        labels.push(await shareLabel(stack, await run(stack, c.request), expect.of, keys));
      }
    }));
    const counts = new Map<string, number>();
    for (const label of labels) counts.set(label, (counts.get(label) ?? 0) + 1);
    for (const label of counts.keys()) assert.ok(label in expect.shares, `unexpected outcome ${label} (${counts.get(label)} of ${expect.requests})`);
    for (const [label, share] of Object.entries(expect.shares)) {
      const got = (counts.get(label) ?? 0) / expect.requests;
      assert.ok(Math.abs(got - share) <= expect.tolerance, `${label}: ${got.toFixed(3)} of requests, expected ${share} ± ${expect.tolerance}`);
    }
    return;
  }
  const o = await run(stack, c.request);
  const { response } = o;
  if (expect.kind === 'status') {
    assert.equal(o.backend, undefined, `expected status ${expect.status}, got a response from ${o.backend}`);
    assert.equal(response.status, expect.status, response.body);
    if (expect.body !== undefined) assert.equal(response.body, expect.body);
    if (expect.location !== undefined) assert.equal(response.headers.location, expect.location);
    checkHeaders(response.headers, expect.responseHeaders, 'response header');
    return;
  }
  assert.ok(sameBackend(o.backend, expect.backend), `expected a response from ${expect.backend}, got ${response.status} ${o.backend ?? response.body}`);
  if (expect.port !== undefined && o.echo) assert.equal(o.echo.port, expect.port, 'port');
  if (expect.path !== undefined) assert.equal(o.echo?.path, expect.path, 'path');
  if (expect.authority !== undefined) assert.deepEqual(o.echo?.headers.host, [expect.authority], 'authority');
  if (o.echo) checkHeaders(o.echo.headers, expect.requestHeaders, 'request header');
  checkHeaders(response.headers, expect.responseHeaders, 'response header');
  for (const mirror of expect.mirrors ?? []) assert.ok(await mirroredTo(stack, mirror, o.requestId), `${mirror} should get a copy`);
  if (expect.delayMs !== undefined) assert.equal((await flagsOf(stack, o.requestId)).split(',').includes('DI'), expect.delayMs > 0, 'delay injected (DI)');
}

test('the case table through a real waypoint', async (t) => {
  let random = seededRandom(SEED);
  const clock = new SteppingClock();
  const stack = await startStack(t, { services: FIXTURE, clock, random: () => random() });
  stack.setResources([]);
  assert.deepEqual(stack.waypoint.source.status().rejected, [], 'the fixture\'s own objects convert');
  let replayed = 0;
  for (const c of L7_CASES) {
    await t.test(c.name, async () => {
      stack.setResources(c.resources);
      random = seededRandom(SEED);
      // A fault's delay passes at once; elsewhere no timer fires (a route timeout must not).
      clock.auto = JSON.stringify(c.resources).includes('"delay"');
      if (c.expect.kind !== 'rejected') assert.deepEqual(stack.waypoint.source.status().rejected, [], 'every resource converts');
      await check(stack, c, c.expect);
      replayed++;
    });
  }
  assert.equal(replayed, L7_CASES.length, 'every case replayed');
});

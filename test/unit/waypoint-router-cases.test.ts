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
import { L7_CASES, SERVICES, type CaseRequest } from '../support/l7-cases.ts';
import { checkCase, outcomeOf, type CaseDriver, type CaseOutcome } from '../support/l7-check.ts';
import { seededRandom } from '../support/l7-simulate.ts';
import { eventually } from '../support/eventually.ts';
import { startStack, SteppingClock, type SendRequest, type ServiceSpec, type Stack } from '../waypoint/router-fixtures.ts';

const SEED = 20261202;
/** Requests of a shares case in flight at once (each on its own kept-alive connection). */
const CONCURRENCY = 8;

const FIXTURE: ServiceSpec[] = Object.entries(SERVICES).map(([name, s]) => ({ name, ports: s.ports, versions: s.versions, ...(s.appProtocol === 'grpc' ? { protocol: 'grpc' as const } : {}) }));

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

async function run(stack: Stack, c: CaseRequest): Promise<CaseOutcome> {
  const requestId = `case-${++sequence}`;
  const response = await stack.send(sendOf(c, requestId));
  return outcomeOf(response.status, response.headers, response.body, requestId);
}

/** The case table's driver for a waypoint on loopback: requests over the stack's hop 1, records read from the waypoint and the backends in process. */
function driverOf(stack: Stack): CaseDriver {
  return {
    send: (request) => run(stack, request),
    async sendMany(request, count) {
      const outcomes: CaseOutcome[] = [];
      let next = 0;
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next < count) {
          next++;
          outcomes.push(await run(stack, request));
        }
      }));
      return outcomes;
    },
    async flags(requestIds) {
      const wanted = new Set(requestIds);
      const records = await eventually(`the records of ${requestIds.length} requests`, () => {
        const found = stack.waypoint.recent.list().filter((s) => wanted.has(s.requestId));
        return found.length === wanted.size && found;
      });
      return new Map(records.map((s) => [s.requestId, s.flags]));
    },
    async mirrored(service, requestIds) {
      await eventually('the mirrors done', () => stack.waypoint.mirrors.inFlight === 0);
      const wanted = new Set(requestIds);
      const copies = new Set<string>();
      for (const b of stack.backends.values()) {
        if (b.service !== service) continue;
        for (const r of b.received) {
          const id = r.headers['x-request-id']?.[0];
          if (id !== undefined && wanted.has(id) && /-shadow(:\d+)?$/.test(r.headers.host?.[0] ?? '')) copies.add(id);
        }
      }
      return copies;
    },
    rejection: async (object) => stack.waypoint.source.status().rejected.find((x) => x.object === object),
  };
}

test('the case table through a real waypoint', async (t) => {
  let random = seededRandom(SEED);
  const clock = new SteppingClock();
  const stack = await startStack(t, { services: FIXTURE, clock, random: () => random() });
  const driver = driverOf(stack);
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
      await checkCase(driver, c.request, c.expect);
      replayed++;
    });
  }
  assert.equal(replayed, L7_CASES.length, 'every case replayed');
});

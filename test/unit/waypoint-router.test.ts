// The router between a real WaypointDownstream and real upstreams: hop 1
// from a client workload over mutual TLS, hop 2 to each pod's node under the
// waypoint's own identity, and what Envoy's router does in between: retries
// (on another endpoint when it can), timeouts, outlier ejection, circuit
// breakers, mirrors, L4 passthrough with L4 policy, and the tunnels it
// refuses. Time moves on the waypoint's clock where it matters.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { eventually } from '../support/eventually.ts';
import { NS, startStack, SteppingClock, WAYPOINT_NAME, type Backend, type ServiceSpec, type Stack } from '../waypoint/router-fixtures.ts';

const vs = (name: string, http: unknown[]): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: NS }, spec: { hosts: [name], http } });
const dr = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace: NS }, spec: { host: name, ...spec } });
const waypointPolicy = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: NS },
  spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: WAYPOINT_NAME }], ...spec },
});

const answer = (res: ServerResponse, pod: Backend, status: number, body = pod.name) => {
  res.writeHead(status, { 'x-backend': `${pod.service}:${pod.version}` });
  res.end(body);
};

function pod(stack: Stack, name: string): Backend {
  const b = stack.backends.get(name);
  if (!b) throw new Error(`no pod ${name}`);
  return b;
}

async function flagsOf(stack: Stack, requestId: string): Promise<string> {
  return (await eventually(`the record of ${requestId}`, () => stack.waypoint.recent.list().find((s) => s.requestId === requestId))).flags;
}

test('a request goes to the Service its tunnel named, with trace headers upstream and the upstream service time back', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1', 'v2'] }] });
  const res = await stack.send({ to: 'reviews', path: '/hello?x=1', headers: { 'x-request-id': 'r-1' } });
  assert.equal(res.status, 200, res.body);
  assert.match(String(res.headers['x-backend']), /^reviews:v[12]$/);
  assert.match(String(res.headers['x-envoy-upstream-service-time']), /^\d+$/);
  assert.equal(res.headers.server, 'istio-envoy');
  const echoed = JSON.parse(res.body);
  assert.equal(echoed.path, '/hello?x=1');
  assert.deepEqual(echoed.headers['x-request-id'], ['r-1']);
  assert.match(echoed.headers.traceparent[0], /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  // Hop 2 ran under the waypoint's own identity, to the pod's address and port.
  const hop2 = stack.hbone.tunnels.at(-1)!;
  assert.equal(hop2.client, 'spiffe://cluster.local/ns/demo/sa/waypoint');
  assert.match(hop2.request.authority ?? '', /^10\.244\.2\.\d+:9080$/);
  const summary = (await eventually('the record', () => stack.waypoint.recent.list().find((s) => s.requestId === 'r-1')))!;
  assert.deepEqual([summary.status, summary.route, summary.flags, summary.source.workload, summary.source.principal], [200, 'default', '-', 'sleep-0', 'spiffe://cluster.local/ns/demo/sa/sleep']);
  assert.match(summary.upstreamHost ?? '', /^10\.244\.2\.\d+:9080$/);
});

test('retries turn a backend that fails every other request into one that never fails', async (t) => {
  const clock = new SteppingClock();
  // The backoff between tries passes at once.
  clock.auto = true;
  const stack = await startStack(t, { services: [{ name: 'flaky', ports: [80], versions: ['v1'] }], clock });
  let n = 0;
  pod(stack, 'flaky-v1').handler = (_req, res, p) => answer(res, p, n++ % 2 === 0 ? 503 : 200);
  stack.setResources([vs('flaky', [{ retries: { attempts: 3, retryOn: '5xx' }, route: [{ destination: { host: 'flaky' } }] }])]);
  const statuses: number[] = [];
  for (let i = 0; i < 100; i++) statuses.push((await stack.send({ to: 'flaky' })).status);
  assert.deepEqual(statuses.filter((s) => s !== 200), [], 'every request succeeded');
  assert.equal(pod(stack, 'flaky-v1').received.length, 200, 'each failed try was tried once more');

  // Without retries, half of them fail.
  stack.setResources([vs('flaky', [{ retries: { attempts: 0 }, route: [{ destination: { host: 'flaky' } }] }])]);
  const without: number[] = [];
  for (let i = 0; i < 100; i++) without.push((await stack.send({ to: 'flaky' })).status);
  assert.equal(without.filter((s) => s === 503).length, 50);
});

test('a retry goes to another endpoint when there is one (previous hosts)', async (t) => {
  const clock = new SteppingClock();
  clock.auto = true;
  const stack = await startStack(t, { services: [{ name: 'half', ports: [80], versions: ['v1', 'v2'] }], clock });
  pod(stack, 'half-v1').handler = (_req, res, p) => answer(res, p, 503);
  stack.setResources([vs('half', [{ retries: { attempts: 1, retryOn: 'gateway-error' }, route: [{ destination: { host: 'half' } }] }])]);
  for (let i = 0; i < 60; i++) {
    const res = await stack.send({ to: 'half', headers: { 'x-request-id': `prev-${i}` } });
    assert.equal(res.status, 200, `request ${i}: ${res.body}`);
    assert.equal(res.headers['x-backend'], 'half:v2');
  }
  const tries = (id: string) => pod(stack, 'half-v1').received.filter((r) => r.headers['x-request-id']?.[0] === id).length;
  for (let i = 0; i < 60; i++) assert.ok(tries(`prev-${i}`) <= 1, 'never the failed endpoint twice');
  assert.ok(pod(stack, 'half-v1').received.length > 0, 'the failing endpoint was picked first at times');
});

test('a body within the buffer is sent again on a retry; a larger one is streamed once and not retried', async (t) => {
  const clock = new SteppingClock();
  clock.auto = true;
  const stack = await startStack(t, { services: [{ name: 'upload', ports: [80], versions: ['v1'] }], clock });
  let n = 0;
  pod(stack, 'upload-v1').handler = (req, res, p) => answer(res, p, n++ % 2 === 0 ? 503 : 200, String(req.body.length));
  stack.setResources([vs('upload', [{ retries: { attempts: 2, retryOn: '5xx' }, route: [{ destination: { host: 'upload' } }] }])]);
  const small = 'x'.repeat(10_000);
  const res = await stack.send({ to: 'upload', method: 'POST', body: small });
  assert.deepEqual([res.status, res.body], [200, '10000']);
  assert.deepEqual(pod(stack, 'upload-v1').received.map((r) => r.body.length), [10_000, 10_000]);
  const large = 'y'.repeat(200_000);
  const failed = await stack.send({ to: 'upload', method: 'POST', body: large, headers: { 'x-request-id': 'large' } });
  assert.deepEqual([failed.status, failed.body], [503, '200000'], 'the upstream\'s own answer, not retried');
  assert.equal(pod(stack, 'upload-v1').received.at(-1)!.body.length, 200_000, 'the whole body reached the upstream');
  assert.equal(pod(stack, 'upload-v1').received.length, 3);
});

test('the route timeout answers 504 upstream request timeout (UT); a per-try timeout is retried', async (t) => {
  const clock = new SteppingClock();
  const stack = await startStack(t, { services: [{ name: 'slow', ports: [80], versions: ['v1'] }], clock });
  const held: ServerResponse[] = [];
  pod(stack, 'slow-v1').handler = (_req, res) => void held.push(res);
  stack.setResources([vs('slow', [{ timeout: '500ms', retries: { attempts: 0 }, route: [{ destination: { host: 'slow' } }] }])]);
  const pending = stack.send({ to: 'slow', headers: { 'x-request-id': 'slow-1' } });
  await eventually('the request at the backend', () => held.length === 1);
  clock.advance(499);
  clock.advance(1);
  const res = await pending;
  assert.deepEqual([res.status, res.body], [504, 'upstream request timeout']);
  assert.equal(await flagsOf(stack, 'slow-1'), 'UT');

  let tries = 0;
  pod(stack, 'slow-v1').handler = (_req, res, p) => (tries++ === 0 ? held.push(res) : answer(res, p, 200, 'second try'));
  stack.setResources([vs('slow', [{ timeout: '10s', retries: { attempts: 1, perTryTimeout: '100ms', retryOn: 'reset' }, route: [{ destination: { host: 'slow' } }] }])]);
  const retried = stack.send({ to: 'slow' });
  await eventually('the first try at the backend', () => tries === 1);
  clock.advance(100);
  // The backoff before the retry.
  await eventually('the second try at the backend', () => {
    clock.advance(25);
    return tries === 2;
  });
  assert.deepEqual([(await retried).status, (await retried).body], [200, 'second try']);
});

test('outlier detection ejects a failing endpoint within its interval and lets it back after the ejection time', async (t) => {
  const clock = new SteppingClock();
  const stack = await startStack(t, { services: [{ name: 'eject', ports: [80], versions: ['v1', 'v2'] }], clock });
  pod(stack, 'eject-v1').handler = (_req, res, p) => answer(res, p, 503);
  stack.setResources([
    vs('eject', [{ retries: { attempts: 0 }, route: [{ destination: { host: 'eject' } }] }]),
    dr('eject', { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 1, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 100 } } }),
  ]);
  const first = [(await stack.send({ to: 'eject' })).status, (await stack.send({ to: 'eject' })).status];
  assert.deepEqual(first.sort(), [200, 503], 'round robin reached both, and the failing one failed');
  const ejected: number[] = [];
  for (let i = 0; i < 20; i++) ejected.push((await stack.send({ to: 'eject' })).status);
  assert.deepEqual(new Set(ejected), new Set([200]), 'v1 is ejected: every request goes to v2');
  clock.advance(40_000);
  const back: number[] = [];
  for (let i = 0; i < 4; i++) back.push((await stack.send({ to: 'eject' })).status);
  assert.ok(back.includes(503), `v1 is back after the ejection time: ${back}`);
});

test('a circuit breaker\'s overflow answers 503 UO with x-envoy-overloaded, as Istio\'s circuit-breaking task shows', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'busy', ports: [80], versions: ['v1'] }] });
  const held: ServerResponse[] = [];
  pod(stack, 'busy-v1').handler = (_req, res) => void held.push(res);
  stack.setResources([
    vs('busy', [{ retries: { attempts: 0 }, route: [{ destination: { host: 'busy' } }] }]),
    dr('busy', { trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } } } }),
  ]);
  const first = stack.send({ to: 'busy' });
  await eventually('the first request at the backend', () => held.length === 1);
  const second = stack.send({ to: 'busy' });
  await eventually('the second request pending', () => stack.waypoint.clusters.stats().some((c) => c.active.pending === 1));
  const third = await stack.send({ to: 'busy', headers: { 'x-request-id': 'overflow' } });
  assert.equal(third.status, 503);
  assert.equal(third.headers['x-envoy-overloaded'], 'true');
  assert.equal(third.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
  assert.equal(await flagsOf(stack, 'overflow'), 'UO');
  for (const res of held.splice(0)) res.end('ok');
  assert.equal((await first).status, 200);
  await eventually('the second request at the backend', () => held.length === 1);
  for (const res of held.splice(0)) res.end('ok');
  assert.equal((await second).status, 200);
});

test('a mirror gets a copy (Host -shadow, the body too) while the client sees only the primary\'s answer', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }, { name: 'mirror', ports: [80], versions: ['v1'] }] });
  const held: ServerResponse[] = [];
  // The mirror never answers, and would fail if it did: the client must not notice.
  pod(stack, 'mirror-v1').handler = (_req, res) => void held.push(res);
  stack.setResources([vs('reviews', [{ route: [{ destination: { host: 'reviews' } }], mirror: { host: 'mirror' } }])]);
  const res = await stack.send({ to: 'reviews', method: 'POST', body: 'the order', headers: { 'x-request-id': 'm-1' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-backend'], 'reviews:v1');
  assert.equal(JSON.parse(res.body).body, 'the order');
  await eventually('the copy at the mirror', () => held.length === 1);
  const copy = pod(stack, 'mirror-v1').received[0]!;
  assert.deepEqual([copy.method, copy.body, copy.headers.host, copy.headers['x-request-id']], ['POST', 'the order', ['reviews.demo-shadow:9080'], ['m-1']]);
  assert.equal(pod(stack, 'reviews-v1').received.length, 1, 'the primary got it once');
  for (const r of held.splice(0)) answer(r, pod(stack, 'mirror-v1'), 500);
  await eventually('the mirror done', () => stack.waypoint.mirrors.inFlight === 0);
});

const TCP: ServiceSpec[] = [{ name: 'db', ports: [5432], versions: ['v1'], protocol: 'tcp' }];

/** What the client reads back after sending ping; '' when the waypoint resets the connection (it may before or after its 200). */
async function tcpExchange(stack: Stack, from = 'demo/sleep'): Promise<string> {
  const { status, stream } = await stack.tunnel(`${stack.vip('db')}:5432`, { from });
  if (status !== 200) {
    assert.equal(status, 0, 'reset, not answered');
    return '';
  }
  const closed = stream.closed || stream.destroyed ? Promise.resolve() : once(stream, 'close');
  let got = '';
  stream.on('data', (c: Buffer) => (got += c));
  if (!stream.closed) stream.end('ping\n');
  await closed;
  return got;
}

test('a TCP port is carried at L4 through a hop-2 tunnel, and counted in Istio\'s TCP metrics', async (t) => {
  const stack = await startStack(t, { services: TCP });
  assert.equal(await tcpExchange(stack), 'hello from db-v1\nping\n');
  await eventually('the closed connection counted', async () => /istio_tcp_connections_closed_total\{[^}]*destination_service_name="db"[^}]*\} 1/.test(await stack.waypoint.metrics.text()));
  assert.match(await stack.waypoint.metrics.text(), /istio_tcp_sent_bytes_total\{[^}]*\} 22/);
});

test('L4 policy on passthrough: the client identity counts, HTTP-only rules fail closed', async (t) => {
  const stack = await startStack(t, { services: TCP });
  stack.setResources([waypointPolicy('from-sleep', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }] }] })]);
  assert.equal(await tcpExchange(stack), 'hello from db-v1\nping\n');
  assert.equal(await tcpExchange(stack, 'other/curl'), '', 'another client is refused (the stream is reset)');
  stack.setResources([waypointPolicy('get-only', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })]);
  assert.equal(await tcpExchange(stack), '', 'an ALLOW that needs an HTTP method never matches a TCP connection');
  assert.ok(stack.waypoint.source.status().warnings.some((w) => w.object === `AuthorizationPolicy ${NS}/get-only` && w.message.includes('methods')));
});

test('tunnels the waypoint does not serve are refused: an unknown address, a Service bound to no waypoint', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }, { name: 'direct', ports: [80], versions: ['v1'], unbound: true }] });
  assert.equal((await stack.tunnel('10.96.9.9:80')).status, 503);
  assert.equal((await stack.tunnel(`${stack.vip('direct')}:80`)).status, 503);
  assert.equal((await stack.tunnel(`${stack.vip('reviews')}:9999`)).status, 503, 'a port the Service does not have');
  assert.equal((await stack.tunnel(`${stack.vip('reviews')}:9080`)).status, 200);
});

test('no endpoint: 503 no healthy upstream (UH)', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'empty', ports: [80], versions: [] }] });
  const res = await stack.send({ to: 'empty', headers: { 'x-request-id': 'uh' } });
  assert.deepEqual([res.status, res.body], [503, 'no healthy upstream']);
  assert.equal(await flagsOf(stack, 'uh'), 'UH');
});

test('a forged Forwarded claim is not believed: the source is the client\'s identity alone', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }] });
  stack.setResources([waypointPolicy('no-backends', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.244.2.0/24'] } }] }] })]);
  // demo/sleep claims a backend pod's address (on another node): ignored, so the DENY on that range does not apply to it...
  const forged = await stack.send({ to: 'reviews', sourceIp: '10.244.2.10', headers: { 'x-request-id': 'forged' } });
  assert.equal(forged.status, 200);
  const summary = stack.waypoint.recent.list().find((s) => s.requestId === 'forged')!;
  assert.deepEqual(summary.source, { namespace: 'demo', principal: 'spiffe://cluster.local/ns/demo/sa/sleep' });
  // ...while its own second address, on its own node, is believed.
  const own = await stack.send({ to: 'reviews', sourceIp: '10.244.9.7', headers: { 'x-request-id': 'own' } });
  assert.equal(own.status, 200);
  assert.equal(stack.waypoint.recent.list().find((s) => s.requestId === 'own')!.source.workload, 'sleep-1');
});

test('a WebSocket upgrade is routed, answered with the upstream\'s 101 and spliced', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'chat', ports: [80], versions: ['v1'] }] });
  const { status, stream } = await stack.tunnel(`${stack.vip('chat')}:80`);
  assert.equal(status, 200);
  stream.write('GET /ws HTTP/1.1\r\nHost: chat.demo\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nhello');
  let received = '';
  stream.on('data', (c: Buffer) => (received += c));
  await eventually('the 101 and the echo', () => received.includes('\r\n\r\nhello'));
  assert.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(received, /\r\nx-backend: chat:v1\r\n/);
  stream.write(' again');
  await eventually('spliced both ways', () => received.endsWith('hello again'));
  stream.close();
  assert.equal(pod(stack, 'chat-v1').received.length, 0, 'the upgrade is not an ordinary request');
});

// A cluster over real loopback sockets: two pods behind a node's HBONE
// listener, requests balanced per request over keep-alive connections,
// circuit breakers refusing what overflows (UO), failing endpoints ejected and
// returned on the outlier clock, no healthy upstream (UH) and panic.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Server, Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../lib/core/log.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import type { ClusterPolicy } from '../../lib/l7/cluster-policy.ts';
import { Cluster, type UpstreamRequest } from '../../waypoint/upstream/cluster.ts';
import { endpointKey, type UpstreamEndpoint } from '../../waypoint/upstream/endpoint.ts';
import { UpstreamTimeoutError } from '../../waypoint/upstream/errors.ts';
import { buildLocalReply } from '../../waypoint/downstream/local-reply.ts';
import { localReplyOf, responseFlag } from '../../waypoint/upstream/failures.ts';
import type { OutlierEvent } from '../../waypoint/upstream/outlier-detector.ts';
import { TunnelConnector } from '../../waypoint/upstream/tunnel-connector.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { hboneServer, NODE_IP, OTHER_POD_IP, POD_IP, type HboneServerOptions } from '../waypoint/hbone-server.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function pod(t: TestContext, ip: string, handler: Handler | ((stream: ServerHttp2Stream) => void), http2 = false): Promise<UpstreamEndpoint> {
  const server: Server = http2 ? createH2Server().on('stream', handler as (s: ServerHttp2Stream) => void) : createHttpServer(handler as Handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, ip);
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  const { port } = server.address() as AddressInfo;
  return { ip, port, node: { name: 'n2', address: NODE_IP }, identity: spiffeId('default', 'reviews'), labels: { version: ip === POD_IP ? 'v1' : 'v2' } };
}

const named = (name: string): Handler => (_req, res) => res.end(name);

interface Setup {
  cluster: Cluster;
  clock: ManualClock;
  hbone: Awaited<ReturnType<typeof hboneServer>>;
  events: OutlierEvent[];
}

async function setup(t: TestContext, policy: Partial<ClusterPolicy>, endpoints: UpstreamEndpoint[], options: { http2?: boolean; subsetLabels?: Record<string, string>; hbone?: HboneServerOptions } = {}): Promise<Setup> {
  const hbone = await hboneServer(t, options.hbone);
  const pool = new TunnelPool({ port: hbone.port, log: silentLogger });
  t.after(() => pool.close());
  const clock = new ManualClock(1_000_000);
  const events: OutlierEvent[] = [];
  const cluster = new Cluster({
    name: { service: 'reviews.default.svc.cluster.local', port: 9080 },
    policy: { loadBalancer: { kind: 'round_robin' }, connectionPool: {}, ...policy },
    connector: new TunnelConnector({ pool }),
    clock,
    onOutlierEvent: (e) => events.push(e),
    ...(options.http2 ? { http2: true } : {}),
    ...(options.subsetLabels ? { subsetLabels: options.subsetLabels } : {}),
  });
  t.after(() => cluster.close());
  cluster.setEndpoints(endpoints);
  return { cluster, clock, hbone, events };
}

const get = (over: Partial<UpstreamRequest> = {}): UpstreamRequest => ({ method: 'GET', path: '/', headers: { host: 'reviews:9080' }, ...over });
const view = { headers: {}, path: '/', sourceIp: '10.0.0.1' };

/** Picks and sends one request; the body text, or the failure's flag. */
async function send(cluster: Cluster, request = get()): Promise<string> {
  const picked = cluster.pick(view);
  if (!picked.ok) return responseFlag(picked.failure);
  const result = await cluster.request(picked.endpoint, request);
  if (!result.ok) return responseFlag(result.failure);
  return `${result.status} ${await result.body.text()}`;
}

test('per request, not per connection: round robin alternates over keep-alive connections', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const v2 = await pod(t, OTHER_POD_IP, named('v2'));
  const { cluster, hbone } = await setup(t, {}, [v1, v2]);
  const bodies: string[] = [];
  for (let i = 0; i < 40; i++) bodies.push(await send(cluster));
  assert.deepEqual(bodies, Array.from({ length: 40 }, (_, i) => `200 ${i % 2 === 0 ? 'v1' : 'v2'}`));
  assert.equal(hbone.tunnels.length, 2, 'one keep-alive connection per endpoint carried all of it');
  assert.equal(cluster.stats().connections, 2);
});

test('a subset keeps the endpoints with its labels', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const v2 = await pod(t, OTHER_POD_IP, named('v2'));
  const { cluster } = await setup(t, {}, [v1, v2], { subsetLabels: { version: 'v2' } });
  assert.deepEqual([await send(cluster), await send(cluster)], ['200 v2', '200 v2']);
});

test('HTTP/2 upstream for a port declared HTTP/2, or a request that came in as HTTP/2; HTTP/1.1 otherwise', async (t) => {
  const h2pod = await pod(t, POD_IP, (stream: ServerHttp2Stream) => {
    stream.respond({ ':status': 200 });
    stream.end('h2');
  }, true);
  const declared = await setup(t, {}, [h2pod], { http2: true });
  assert.equal(await send(declared.cluster), '200 h2');
  const undeclared = await setup(t, {}, [h2pod]);
  assert.equal(await send(undeclared.cluster, get({ downstreamHttp2: true })), '200 h2');
  const versions: string[] = [];
  const h1pod = await pod(t, OTHER_POD_IP, (req, res) => {
    versions.push(req.httpVersion);
    res.end('ok');
  });
  const { cluster } = await setup(t, {}, [h1pod]);
  assert.equal(await send(cluster), '200 ok');
  assert.deepEqual(versions, ['1.1']);
});

/** A pod whose responses wait until the test lets them go. */
async function heldPod(t: TestContext, ip = POD_IP) {
  const held: ServerResponse[] = [];
  let arrived = () => {};
  const endpoint = await pod(t, ip, (_req, res) => {
    held.push(res);
    arrived();
  });
  const waitFor = (n: number) => new Promise<void>((resolve) => {
    arrived = () => held.length >= n && resolve();
    arrived();
  });
  return { endpoint, held, waitFor, release: () => held.splice(0).forEach((r) => r.end('done')) };
}

test('UO, as Istio\'s circuit-breaking example: one connection, one pending request, the next refused at once', async (t) => {
  const slow = await heldPod(t);
  const { cluster } = await setup(t, { connectionPool: { maxConnections: 1, http1MaxPendingRequests: 1 } }, [slow.endpoint]);
  const first = send(cluster);
  await slow.waitFor(1);
  const second = send(cluster);
  // The third finds the one connection busy and the one pending place taken.
  const third = await cluster.request(slow.endpoint, get());
  assert.deepEqual(!third.ok && third.failure, { kind: 'overflow', limit: 'pending' });
  const overflow = !third.ok ? buildLocalReply(localReplyOf(third.failure)!, { grpc: false, method: 'GET' }) : undefined;
  assert.deepEqual([overflow?.status, overflow?.body, overflow?.headers['x-envoy-overloaded']], [503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', 'true']);
  assert.deepEqual(cluster.stats().active, { connections: 1, pending: 1, requests: 1, retries: 0 });
  slow.release();
  assert.equal(await first, '200 done');
  await slow.waitFor(1);
  slow.release();
  assert.equal(await second, '200 done', 'the pending one went on the same connection');
  assert.equal(cluster.stats().overflows.pending, 1);
});

test('UO: http2MaxRequests bounds requests in flight, HTTP/1.1 included', async (t) => {
  const slow = await heldPod(t);
  const { cluster } = await setup(t, { connectionPool: { http2MaxRequests: 2 } }, [slow.endpoint]);
  const inFlight = [send(cluster), send(cluster)];
  await slow.waitFor(2);
  assert.equal(await send(cluster), 'UO');
  assert.equal(cluster.stats().overflows.requests, 1);
  slow.release();
  assert.deepEqual(await Promise.all(inFlight), ['200 done', '200 done']);
  // A body's connection is released on its 'close', just after its end.
  await new Promise((r) => setImmediate(r));
  // The refused request had waited for a third connection, as it would in Envoy's pool, and found the limit when it came up.
  assert.deepEqual(cluster.stats().active, { connections: 3, pending: 0, requests: 0, retries: 0 });
});

test('maxRequestsPerConnection: a connection that has carried its share is closed and the next request opens another', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const { cluster, hbone } = await setup(t, { connectionPool: { maxRequestsPerConnection: 2 } }, [v1]);
  for (let i = 0; i < 5; i++) assert.equal(await send(cluster), '200 v1');
  assert.equal(hbone.tunnels.length, 3);
});

test('maxRetries: a retry past the limit is not admitted', async (t) => {
  const { cluster } = await setup(t, { connectionPool: { maxRetries: 1 } }, []);
  const done = cluster.admitRetry();
  assert.ok(done);
  assert.equal(cluster.admitRetry(), undefined);
  done();
  done();
  assert.ok(cluster.admitRetry());
  assert.equal(cluster.stats().overflows.retries, 1);
});

test('a failing endpoint is ejected after its consecutive errors, the other takes everything, and it returns after the ejection time', async (t) => {
  let v1Fails = true;
  const v1 = await pod(t, POD_IP, (_req, res) => {
    res.statusCode = v1Fails ? 503 : 200;
    res.end('v1');
  });
  const v2 = await pod(t, OTHER_POD_IP, named('v2'));
  const outlierDetection = { consecutive5xxErrors: 3, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 50, minHealthPercent: 0 };
  const { cluster, clock, events } = await setup(t, { outlierDetection }, [v1, v2]);
  const first = [];
  for (let i = 0; i < 6; i++) first.push(await send(cluster));
  assert.deepEqual(first, ['503 v1', '200 v2', '503 v1', '200 v2', '503 v1', '200 v2']);
  assert.deepEqual(events, [{ kind: 'ejected', endpoint: endpointKey(v1), type: 'consecutive_5xx', durationMs: 30_000 }]);
  const during = [];
  for (let i = 0; i < 4; i++) during.push(await send(cluster));
  assert.deepEqual(during, Array(4).fill('200 v2'));
  v1Fails = false;
  clock.advance(30_000);
  assert.deepEqual(events.at(-1), { kind: 'returned', endpoint: endpointKey(v1) });
  const after = new Set<string>();
  for (let i = 0; i < 4; i++) after.add(await send(cluster));
  assert.deepEqual([...after].sort(), ['200 v1', '200 v2']);
});

test('UH when every endpoint is ejected; below minHealthPercent, panic balances over all of them', async (t) => {
  const broken = await pod(t, POD_IP, (_req, res) => {
    res.statusCode = 502;
    res.end();
  });
  const strict = await setup(t, { outlierDetection: { consecutiveGatewayErrors: 1, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0 } }, [broken]);
  assert.equal(await send(strict.cluster), '502 ');
  assert.equal(await send(strict.cluster), 'UH');
  const uh = buildLocalReply(localReplyOf({ kind: 'no_healthy_upstream' })!, { grpc: false, method: 'GET' });
  assert.deepEqual([uh.status, uh.body, uh.headers['x-envoy-overloaded'], uh.flag], [503, 'no healthy upstream', undefined, 'UH']);
  const panicky = await setup(t, { outlierDetection: { consecutiveGatewayErrors: 1, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 50 } }, [broken]);
  assert.equal(await send(panicky.cluster), '502 ');
  assert.equal(await send(panicky.cluster), '502 ', 'sent anyway: panic');
  assert.equal(panicky.cluster.stats().panic, true);
  const empty = await setup(t, {}, []);
  assert.equal(await send(empty.cluster), 'UH');
});

test('UF: a refused tunnel fails the request and every request waiting on it, and counts as a gateway error', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const outlierDetection = { consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0 };
  const { cluster, events, hbone } = await setup(t, { outlierDetection, connectionPool: { maxConnections: 1 } }, [v1], { hbone: { refuse: () => 503 } });
  const endpoint = v1;
  const results = await Promise.all([1, 2, 3].map(() => cluster.request(endpoint, get())));
  assert.deepEqual(results.map((r) => !r.ok && r.failure.kind), ['connect_failure', 'connect_failure', 'connect_failure']);
  assert.equal(hbone.tunnels.length, 1, 'the waiting requests did not each try again');
  assert.deepEqual(events.map((e) => e.kind), ['ejected']);
  assert.deepEqual(cluster.stats().active, { connections: 0, pending: 0, requests: 0, retries: 0 });
});

test('a caller\'s abort: its timeout reads as UT, anything else as DC; a waiting request leaves the queue', async (t) => {
  const slow = await heldPod(t);
  const { cluster } = await setup(t, { connectionPool: { maxConnections: 1 } }, [slow.endpoint]);
  const first = cluster.request(slow.endpoint, get());
  await slow.waitFor(1);
  const timeout = new AbortController();
  const waiting = cluster.request(slow.endpoint, get({ signal: timeout.signal }));
  const gone = new AbortController();
  const alsoWaiting = cluster.request(slow.endpoint, get({ signal: gone.signal }));
  assert.equal(cluster.stats().active.pending, 2);
  timeout.abort(new UpstreamTimeoutError(1000));
  gone.abort();
  const [t1, t2] = await Promise.all([waiting, alsoWaiting]);
  assert.deepEqual([!t1.ok && responseFlag(t1.failure), !t2.ok && responseFlag(t2.failure)], ['UT', 'DC']);
  assert.equal(cluster.stats().active.pending, 0);
  // In flight: aborting with the timeout ends the request as UT too.
  const inFlight = new AbortController();
  slow.release();
  const r1 = await first;
  assert.ok(r1.ok);
  await r1.body.text();
  const second = cluster.request(slow.endpoint, get({ signal: inFlight.signal }));
  await slow.waitFor(1);
  inFlight.abort(new UpstreamTimeoutError(1000));
  const r2 = await second;
  assert.deepEqual(!r2.ok && r2.failure, { kind: 'timeout' });
  slow.release();
});

test('a retry can avoid the endpoints it tried', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const v2 = await pod(t, OTHER_POD_IP, named('v2'));
  const { cluster } = await setup(t, {}, [v1, v2]);
  for (let i = 0; i < 4; i++) {
    const picked = cluster.pick(view, { avoid: new Set([endpointKey(v1)]) });
    assert.ok(picked.ok);
    assert.equal(picked.endpoint.ip, OTHER_POD_IP);
  }
});

test('gRPC: UNAVAILABLE in the trailers of a 200 counts as a gateway error', async (t) => {
  const grpc = await pod(t, POD_IP, (stream: ServerHttp2Stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '14', 'grpc-message': 'unavailable' }));
    stream.end();
  }, true);
  const outlierDetection = { consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0 };
  const { cluster, events } = await setup(t, { outlierDetection }, [grpc], { http2: true });
  for (let i = 0; i < 2; i++) {
    const r = await cluster.request(grpc, get({ method: 'POST', path: '/pkg.Svc/Call', headers: { 'content-type': 'application/grpc', te: 'trailers' } }));
    assert.ok(r.ok);
    await r.body.text();
    assert.equal(r.trailers['grpc-status'], '14');
  }
  assert.deepEqual(events.map((e) => e.kind), ['ejected']);
});

test('endpoints that leave have their connections closed; requests to them are UH', async (t) => {
  const v1 = await pod(t, POD_IP, named('v1'));
  const v2 = await pod(t, OTHER_POD_IP, named('v2'));
  const { cluster } = await setup(t, {}, [v1, v2]);
  await send(cluster);
  await send(cluster);
  assert.equal(cluster.stats().connections, 2);
  cluster.setEndpoints([v2]);
  assert.equal(cluster.stats().connections, 1);
  const r = await cluster.request(v1, get());
  assert.deepEqual(!r.ok && r.failure, { kind: 'no_healthy_upstream' });
  assert.equal(await send(cluster), '200 v2');
});

// Hop 2 on loopback with real sockets: the waypoint's connector opens HBONE
// over mutual TLS (its own certificate from a real meshlet CA) to a listener
// built as the ztunnel's inbound is, and an undici Client speaks HTTP/1.1 or
// HTTP/2 to a real server behind it; each failure comes out as the typed
// failure Envoy's response flags name.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { constants as h2, createServer as createH2Server, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../lib/core/log.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import { sniFor } from '../../lib/identity/sni.ts';
import { formatSpiffeId, spiffeId } from '../../lib/identity/spiffe.ts';
import type { UpstreamEndpoint } from '../../waypoint/upstream/endpoint.ts';
import { UpstreamConnectError } from '../../waypoint/upstream/errors.ts';
import { buildLocalReply } from '../../waypoint/downstream/local-reply.ts';
import { failureOf, localReplyOf, responseFlag } from '../../waypoint/upstream/failures.ts';
import { clientOnTunnel } from '../../waypoint/upstream/tunnel-client.ts';
import { TunnelConnector } from '../../waypoint/upstream/tunnel-connector.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';
import { hboneServer, NODE_IP, POD_IP, type HboneServerOptions } from '../waypoint/hbone-server.ts';

const DESTINATION = spiffeId('default', 'default');
const WAYPOINT = spiffeId('default', 'waypoint');

async function listen<S extends Server | HttpServer | Http2Server>(t: TestContext, server: S, host = POD_IP): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, host);
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return (server.address() as AddressInfo).port;
}

const endpointAt = (port: number, identity = DESTINATION): UpstreamEndpoint => ({ ip: POD_IP, port, node: { name: 'n2', address: NODE_IP }, identity, labels: {} });

interface Hop2 {
  connector: TunnelConnector;
  hbone: Awaited<ReturnType<typeof hboneServer>>;
  pool: TunnelPool;
}

/** A destination ztunnel (holding the destination's certificate) and the waypoint's connector (holding its own). */
async function hop2(t: TestContext, ids: { n1: MeshIdentity; n2: MeshIdentity } | undefined, options: HboneServerOptions & { clock?: ManualClock; connectTimeoutMs?: number } = {}): Promise<Hop2> {
  if (ids) await ids.n1.certs.ensure(DESTINATION);
  const hbone = await hboneServer(t, { ...options, ...(ids ? { identity: ids.n1 } : {}) });
  const pool = new TunnelPool({ port: hbone.port, log: silentLogger });
  t.after(() => pool.close());
  const connector = new TunnelConnector({
    pool,
    ...(ids ? { identity: { self: WAYPOINT, certs: ids.n2.certs } } : {}),
    headers: { baggage: 'k8s.namespace.name=default' },
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
  });
  return { connector, hbone, pool };
}

const waypointCa = (t: TestContext) => meshCa(t, { others: ['waypoint'] });

test('HTTP/1.1 through the tunnel: the waypoint\'s own identity, SNI for the pod, :authority podIP:targetPort, keep-alive', async (t) => {
  const seen: { version: string; host: string | undefined; peer: string | undefined }[] = [];
  const port = await listen(t, createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ version: req.httpVersion, host: req.headers.host, peer: req.socket.remoteAddress });
    res.end(`hello ${req.url}`);
  }));
  const { connector, hbone } = await hop2(t, await waypointCa(t));
  const endpoint = endpointAt(port);
  const stream = await connector.open(endpoint).ready;
  const client = clientOnTunnel(stream, `${POD_IP}:${port}`, false);
  t.after(() => client.destroy());
  for (const path of ['/a', '/b']) {
    const res = await client.request({ method: 'GET', path, headers: { host: 'reviews.default.svc.cluster.local' } });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), `hello ${path}`);
  }
  assert.deepEqual(seen.map((s) => [s.version, s.host]), [['1.1', 'reviews.default.svc.cluster.local'], ['1.1', 'reviews.default.svc.cluster.local']]);
  assert.equal(hbone.tunnels.length, 1, 'both requests on one tunnel');
  const [tunnel] = hbone.tunnels;
  assert.equal(tunnel!.request.method, 'CONNECT');
  assert.equal(tunnel!.request.authority, `${POD_IP}:${port}`);
  assert.equal(tunnel!.client, formatSpiffeId(WAYPOINT));
  assert.equal(tunnel!.servername, sniFor(DESTINATION));
  assert.equal(tunnel!.request.forwarded, undefined, 'a hop-2 connection names no one client');
  assert.match(tunnel!.request.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.equal(tunnel!.headers.baggage, 'k8s.namespace.name=default');
});

test('HTTP/2 with prior knowledge inside the tunnel when asked; several streams share the connection', async (t) => {
  const versions: string[] = [];
  const port = await listen(t, createH2Server((req: Http2ServerRequest, res: Http2ServerResponse) => {
    versions.push(req.httpVersion);
    res.end(`h2 ${req.url} ${req.headers[':authority']}`);
  }));
  const { connector, hbone } = await hop2(t, await waypointCa(t));
  const stream = await connector.open(endpointAt(port)).ready;
  const client = clientOnTunnel(stream, `${POD_IP}:${port}`, true);
  t.after(() => client.destroy());
  const bodies = await Promise.all(['/x', '/y', '/z'].map(async (path) => {
    const res = await client.request({ method: 'GET', path, headers: { host: 'ratings:9080' } });
    return res.body.text();
  }));
  assert.deepEqual(bodies, ['h2 /x ratings:9080', 'h2 /y ratings:9080', 'h2 /z ratings:9080']);
  assert.deepEqual(versions, ['2.0', '2.0', '2.0']);
  assert.equal(hbone.tunnels.length, 1);
});

test('cleartext tunnels when the waypoint has no identity (no CA configured)', async (t) => {
  const port = await listen(t, createHttpServer((_req, res) => res.end('plain')));
  const { connector, hbone } = await hop2(t, undefined);
  const client = clientOnTunnel(await connector.open(endpointAt(port)).ready, `${POD_IP}:${port}`, false);
  t.after(() => client.destroy());
  assert.equal(await (await client.request({ method: 'GET', path: '/' })).body.text(), 'plain');
  assert.equal(hbone.tunnels[0]!.client, undefined);
});

test('UF: the destination ztunnel answers 503 or 401, or nothing listens on the node', async (t) => {
  const ids = await waypointCa(t);
  let next = 503;
  const { connector } = await hop2(t, ids, { refuse: () => next });
  for (const [status, reason] of [[503, 'upstream_connect_failed'], [401, 'denied']] as const) {
    next = status;
    const err = await connector.open(endpointAt(8080)).ready.catch((e: unknown) => e);
    assert.ok(err instanceof UpstreamConnectError, String(err));
    assert.equal(err.reason, reason);
    const failure = failureOf(err);
    assert.equal(responseFlag(failure), 'UF');
    const reply = buildLocalReply(localReplyOf(failure)!, { grpc: false, method: 'GET' });
    assert.deepEqual([reply.status, reply.body, reply.flag], [503, `upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: ${reason}`, 'UF']);
  }
  const closed = createTcpServer();
  const closedPort = await listen(t, closed, NODE_IP);
  await new Promise((r) => closed.close(r));
  const nowherePool = new TunnelPool({ port: closedPort, log: silentLogger });
  t.after(() => nowherePool.close());
  const nowhere = new TunnelConnector({ pool: nowherePool, identity: { self: WAYPOINT, certs: ids.n2.certs } });
  const err = await nowhere.open(endpointAt(8080)).ready.catch((e: unknown) => e);
  assert.ok(err instanceof UpstreamConnectError);
  assert.equal(err.reason, 'tunnel_failed');
});

test('UF: a ztunnel presenting another identity than the pod\'s is refused, and nothing is sent to it', async (t) => {
  const ids = await meshCa(t, { others: ['waypoint', 'imposter'] });
  const imposter = await ids.n2.certs.ensure(spiffeId('default', 'imposter'));
  const { connector, hbone } = await hop2(t, ids, { presentAs: imposter });
  const err = await connector.open(endpointAt(8080)).ready.catch((e: unknown) => e);
  assert.ok(err instanceof UpstreamConnectError);
  assert.equal(err.reason, 'peer_identity_mismatch');
  assert.equal(hbone.tunnels.length, 0);
});

test('UF: a tunnel not up within the connect timeout (a peer that never answers the handshake)', async (t) => {
  const clock = new ManualClock(Date.now());
  const silent = createTcpServer((s) => s.on('error', () => {}));
  const port = await listen(t, silent, NODE_IP);
  const pool = new TunnelPool({ port, log: silentLogger });
  t.after(() => pool.close());
  const connector = new TunnelConnector({ pool, clock, connectTimeoutMs: 2000 });
  const pending = connector.open(endpointAt(8080));
  // The CONNECT has left (the session is up), and nothing will answer it.
  const [socket] = (await once(silent, 'connection')) as [Socket];
  await once(socket, 'data');
  clock.advance(1999);
  assert.equal(await Promise.race([pending.ready.then(() => 'up', () => 'failed'), new Promise((r) => setImmediate(r, 'waiting'))]), 'waiting');
  clock.advance(1);
  const err = await pending.ready.catch((e: unknown) => e);
  assert.ok(err instanceof UpstreamConnectError);
  assert.equal(err.reason, 'connect_timeout');
});

/** One request through a fresh tunnel to `server`, as its failure (or 'ok'). */
async function failureThrough(t: TestContext, server: Server | HttpServer | Http2Server, http2: boolean) {
  const port = await listen(t, server);
  const { connector } = await hop2(t, undefined);
  const client = clientOnTunnel(await connector.open(endpointAt(port)).ready, `${POD_IP}:${port}`, http2);
  t.after(() => client.destroy());
  try {
    const res = await client.request({ method: 'GET', path: '/' });
    await res.body.text();
    return 'ok';
  } catch (err) {
    return failureOf(err);
  }
}

test('UC: the upstream closes the connection before answering', async (t) => {
  const failure = await failureThrough(t, createTcpServer((s) => s.once('data', () => s.end())), false);
  assert.ok(failure !== 'ok');
  assert.equal(failure.kind, 'connection_termination');
  assert.equal(responseFlag(failure), 'UC');
});

test('UR: an HTTP/2 upstream resets the stream; REFUSED_STREAM is told apart', async (t) => {
  for (const [code, refused] of [[h2.NGHTTP2_INTERNAL_ERROR, false], [h2.NGHTTP2_REFUSED_STREAM, true]] as const) {
    const server = createH2Server();
    server.on('stream', (stream: ServerHttp2Stream) => {
      stream.on('error', () => {});
      stream.close(code);
    });
    const failure = await failureThrough(t, server, true);
    assert.ok(failure !== 'ok');
    assert.deepEqual([failure.kind, failure.kind === 'remote_reset' && failure.refused], ['remote_reset', refused]);
    assert.equal(responseFlag(failure), 'UR');
  }
});

test('UPE: an answer that is not HTTP', async (t) => {
  const failure = await failureThrough(t, createTcpServer((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH\r\n\r\n'))), false);
  assert.ok(failure !== 'ok');
  assert.equal(failure.kind, 'protocol_error');
  assert.equal(buildLocalReply(localReplyOf(failure)!, { grpc: false, method: 'GET' }).status, 502);
});

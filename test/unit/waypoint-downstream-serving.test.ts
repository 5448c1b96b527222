// The waypoint's downstream side over real loopback HBONE (cleartext here;
// waypoint-downstream-mtls covers TLS): the tunnel's :authority picks the
// destination, the port's declaration (or the client's first bytes) picks
// HTTP/1.1, HTTP/2 or L4 passthrough, and every request reaches the handler
// as one exchange and leaves one record.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import type { TunnelDestination } from '../../waypoint/downstream/tunnel.ts';
import type { HttpExchange } from '../../waypoint/downstream/exchange.ts';
import { sendLocalReply } from '../../waypoint/downstream/local-reply.ts';
import { bufferStringWrites } from '../../waypoint/downstream/string-writes.ts';
import { eventually } from '../support/eventually.ts';
import { AUTHORITIES, h2OverTunnel, h2Request, hboneSession, http1, startDownstream, tunnel } from '../waypoint/downstream-fixtures.ts';

const { Agent, request: httpRequest } = process.getBuiltinModule('node:http');

test('HTTP/1.1: the tunnel authority picks the destination, not the Host header; the request reaches the handler whole', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream, status } = await tunnel(session, AUTHORITIES.http);
  assert.equal(status, 200);
  const res = await http1(stream, { method: 'POST', path: '/cart/items?id=7', headers: { host: 'evil.example', 'content-type': 'text/plain', 'x-request-id': 'req-1' }, body: 'two apples' });
  assert.equal(res.status, 200);
  const seen = JSON.parse(res.body);
  assert.equal(seen.destination.name, 'web');
  assert.equal(seen.host, 'evil.example');
  assert.equal(seen.method, 'POST');
  assert.equal(seen.path, '/cart/items?id=7');
  assert.equal(seen.protocol, 'HTTP/1.1');
  assert.equal(seen.body, 'two apples');
  assert.equal(seen.headers.host, undefined, 'the host is the view\'s own field');
  assert.equal(seen.headers['content-type'], 'text/plain');
  assert.equal(seen.trace.requestId, 'req-1');
  assert.match(seen.trace.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.equal(res.headers.server, 'istio-envoy', 'the upstream\'s server header is overwritten');
  assert.equal(res.headers['x-envoy-upstream-service-time'], '3');
  assert.deepEqual(w.lookups[0]!.claimedSource, { ip: '10.244.0.5', port: 40000 });

  await eventually('the record', () => w.records.length === 1);
  const r = w.records[0]!;
  assert.equal(r.method, 'POST');
  assert.equal(r.path, '/cart/items?id=7');
  assert.equal(r.host, 'evil.example');
  assert.equal(r.responseCode, 200);
  assert.deepEqual(r.responseFlags, []);
  assert.equal(r.responseCodeDetails, 'via_upstream');
  assert.equal(r.bytesReceived, 10);
  assert.equal(r.bytesSent, Buffer.byteLength(res.body));
  assert.equal(r.upstreamServiceTimeMs, 3);
  assert.deepEqual(r.service, { namespace: 'shop', name: 'web' });
  assert.deepEqual(r.downstreamLocalAddress, { ip: '10.96.0.10', port: 80 });
  assert.deepEqual(r.downstreamRemoteAddress, { ip: '10.244.0.5', port: 40000 });
  assert.equal(r.requestId, 'req-1');
  assert.equal(r.connectionSecurity, 'plaintext');
});

test('HTTP/1.1 keep-alive: many requests on one tunnel, one exchange and one record each', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.http);
  bufferStringWrites(stream);
  // The agent keeps a TCP socket alive with these; the tunnel stream has no such options.
  const socket = Object.assign(stream, { setKeepAlive: () => socket, setNoDelay: () => socket, ref: () => socket, unref: () => socket });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => socket as never;
  t.after(() => agent.destroy());
  for (let i = 0; i < 3; i++) {
    const req = httpRequest({ agent, host: 'web', path: `/r${i}` });
    req.end();
    const [res] = await once(req, 'response');
    res.resume();
    await once(res, 'end');
    assert.equal(res.statusCode, 200);
  }
  await eventually('three records', () => w.records.length === 3);
  assert.deepEqual(w.records.map((r) => r.path), ['/r0', '/r1', '/r2']);
  assert.equal(w.lookups.length, 1, 'one tunnel');
});

test('HTTP/2 with prior knowledge on an h2c port (appProtocol beats the tcp- name): gRPC with trailers', async (t) => {
  const w = await startDownstream(t, {
    handlers: {
      http: async ({ request, response }) => {
        for await (const _ of request.body);
        response.respond(200, { 'content-type': 'application/grpc' });
        response.write(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
        response.end({ 'grpc-status': '0', 'grpc-message': 'ok' });
      },
    },
  });
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.h2c);
  const inner = h2OverTunnel(t, stream);
  const res = await h2Request(inner, { ':method': 'POST', ':path': '/shop.Cart/Add', 'content-type': 'application/grpc', te: 'trailers' }, '\0\0\0\0\0');
  assert.equal(res.headers[':status'], 200);
  assert.equal(res.headers.server, 'istio-envoy');
  assert.equal(res.trailers?.['grpc-status'], '0');
  await eventually('the record', () => w.records.length === 1);
  const r = w.records[0]!;
  assert.equal(r.protocol, 'HTTP/2');
  assert.equal(r.grpc, true);
  assert.equal(r.grpcStatus, '0');
  assert.equal(r.path, '/shop.Cart/Add');
  assert.equal(r.bytesReceived, 5);
  assert.equal(r.bytesSent, 7);
});

test('a port declared HTTP also takes HTTP/2 with prior knowledge, as Envoy\'s AUTO codec does', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.http);
  const res = await h2Request(h2OverTunnel(t, stream), { ':method': 'GET', ':path': '/h2', ':authority': 'web.shop' });
  assert.equal(res.headers[':status'], 200);
  const seen = JSON.parse(res.body);
  assert.equal(seen.protocol, 'HTTP/2');
  assert.equal(seen.host, 'web.shop');
  assert.equal(seen.headers[':path'], undefined, 'no pseudo-headers in the view');
});

test('an undeclared port: an HTTP/1 request line is served as HTTP', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.undeclared);
  const res = await http1(stream, { path: '/sniffed' });
  assert.equal(JSON.parse(res.body).path, '/sniffed');
  assert.equal(w.tcp.length, 0);
});

test('an undeclared port: the HTTP/2 preface is served as HTTP/2', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.pod);
  const res = await h2Request(h2OverTunnel(t, stream), { ':method': 'GET', ':path': '/pod', ':authority': '10.244.1.7:8080' });
  assert.equal(JSON.parse(res.body).destination.name, 'web-0');
  await eventually('the record', () => w.records.length === 1);
  assert.equal(w.records[0]!.service, undefined, 'pod-IP traffic names no Service');
});

test('an undeclared port: bytes that are not HTTP go to L4 passthrough at once, none lost', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.undeclared);
  stream.write('*1\r\n$4\r\nPING\r\n');
  await eventually('passthrough', () => w.tcp.length === 1);
  assert.equal(w.tcp[0]!.why, 'not_http');
  assert.equal(w.tcp[0]!.head.toString(), '*1\r\n$4\r\nPING\r\n');
  stream.end('more');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), '*1\r\n$4\r\nPING\r\nmore');
});

test('an undeclared port: a client that waits for the server (server-first) gets TCP after the sniff timeout', async (t) => {
  const w = await startDownstream(t, {
    limits: { sniffTimeout: 0.05 },
    handlers: { tcp: ({ stream }) => void stream.end('220 mail.shop ESMTP ready\r\n') },
  });
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.undeclared);
  const [greeting] = await once(stream, 'data');
  assert.equal(String(greeting), '220 mail.shop ESMTP ready\r\n');
  assert.equal(w.tcp[0]!.why, 'sniff_timeout');
  assert.equal(w.tcp[0]!.head.length, 0);
});

test('a port declared TCP goes to L4 passthrough without waiting for a byte', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.tcp);
  await eventually('passthrough', () => w.tcp.length === 1);
  assert.equal(w.tcp[0]!.why, 'declared');
  stream.end('GET / HTTP/1.1\r\n\r\n');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'GET / HTTP/1.1\r\n\r\n', 'carried as bytes, not parsed');
});

test('refused streams: not CONNECT (400), an authority that is no ip:port (400), unknown (503), served elsewhere (503)', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const get = session.request({ ':method': 'GET', ':path': '/', ':authority': AUTHORITIES.http });
  get.on('error', () => {});
  get.end();
  const [getResponse] = await once(get, 'response');
  assert.equal(getResponse[':status'], 400);
  assert.equal((await tunnel(session, 'web.shop.svc:80')).status, 400);
  assert.equal((await tunnel(session, '10.96.0.77:80')).status, 503);
  assert.equal((await tunnel(session, AUTHORITIES.elsewhere)).status, 503);
  assert.deepEqual(w.events, ['tunnel_refused:not_connect', 'tunnel_refused:bad_authority', 'tunnel_refused:unknown_authority', 'tunnel_refused:not_served']);
  assert.equal(w.records.length, 0);
});

test('local replies: a 404 for HTTP/1.1 (empty, flagged NR), a trailers-only grpc-status 12 for gRPC', async (t) => {
  const w = await startDownstream(t, { handlers: { http: async (exchange) => sendLocalReply(exchange, { kind: 'no_route' }) } });
  const session = await hboneSession(t, w.port);
  const res = await http1((await tunnel(session, AUTHORITIES.http)).stream, { path: '/nowhere' });
  assert.equal(res.status, 404);
  assert.equal(res.body, '');
  assert.equal(res.headers.server, 'istio-envoy');
  const grpc = await h2Request(h2OverTunnel(t, (await tunnel(session, AUTHORITIES.grpc)).stream), { ':method': 'POST', ':path': '/shop.Cart/Nope', 'content-type': 'application/grpc' }, '');
  assert.equal(grpc.headers[':status'], 200);
  assert.equal(grpc.headers['grpc-status'], '12');
  assert.equal(grpc.trailers, undefined, 'trailers-only: the status is in the head');
  await eventually('two records', () => w.records.length === 2);
  assert.deepEqual(w.records.map((r) => [r.responseCode, r.responseFlags.join(','), r.responseCodeDetails, r.grpcStatus]), [
    [404, 'NR', 'route_not_found', undefined],
    [200, 'NR', 'route_not_found', '12'],
  ]);
});

test('a handler that throws, or settles without finishing, gets its request answered 500', async (t) => {
  let calls = 0;
  const w = await startDownstream(t, {
    handlers: {
      http: async () => {
        if (calls++ === 0) throw new Error('router bug');
      },
    },
  });
  const session = await hboneSession(t, w.port);
  assert.equal((await http1((await tunnel(session, AUTHORITIES.http)).stream)).status, 500);
  assert.equal((await http1((await tunnel(session, AUTHORITIES.http)).stream)).status, 500);
  await eventually('two records', () => w.records.length === 2);
  assert.deepEqual(w.records.map((r) => r.responseCodeDetails), ['waypoint_internal_error', 'waypoint_internal_error']);
});

test('the client going away mid-response aborts the exchange\'s signal and logs DC', async (t) => {
  let seen: HttpExchange<TunnelDestination> | undefined;
  const w = await startDownstream(t, {
    handlers: {
      http: async (exchange) => {
        seen = exchange;
        exchange.response.respond(200, { 'content-type': 'text/plain' });
        exchange.response.write('partial');
        await once(exchange.signal, 'abort');
      },
    },
  });
  const session = await hboneSession(t, w.port);
  const inner = h2OverTunnel(t, (await tunnel(session, AUTHORITIES.http)).stream);
  const req = inner.request({ ':method': 'GET', ':path': '/slow' });
  req.on('error', () => {});
  await once(req, 'data');
  req.close();
  await eventually('the record', () => w.records.length === 1);
  assert.equal(seen?.signal.aborted, true);
  assert.deepEqual(w.records[0]!.responseFlags, ['DC']);
  assert.equal(w.records[0]!.responseCode, 200);
  assert.equal(w.records[0]!.bytesSent, 7);
});

test('HTTP/2: a response sent before the client finished its body asks the client to stop (RST_STREAM NO_ERROR)', async (t) => {
  const w = await startDownstream(t, { handlers: { http: async (exchange) => sendLocalReply(exchange, { kind: 'rbac_denied' }) } });
  const session = await hboneSession(t, w.port);
  const inner = h2OverTunnel(t, (await tunnel(session, AUTHORITIES.http)).stream);
  const req = inner.request({ ':method': 'POST', ':path': '/upload' });
  req.on('error', () => {});
  req.write('first part of a long upload');
  const [head] = await once(req, 'response');
  assert.equal(head[':status'], 403);
  let body = '';
  req.on('data', (c) => (body += c));
  await once(req, 'close');
  assert.equal(body, 'RBAC: access denied');
  assert.equal(req.rstCode, 0, 'closed with NO_ERROR');
  await eventually('the record', () => w.records.length === 1);
  assert.deepEqual(w.records[0]!.responseFlags, []);
  assert.equal(w.records[0]!.responseCodeDetails, 'rbac_access_denied_matched_policy[none]');
});

test('HTTP/2: expect 100-continue is answered before the handler reads the body', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const inner = h2OverTunnel(t, (await tunnel(session, AUTHORITIES.http)).stream);
  const req = inner.request({ ':method': 'PUT', ':path': '/blob', expect: '100-continue' });
  await once(req, 'continue');
  req.end('payload');
  const [head] = await once(req, 'response');
  assert.equal(head[':status'], 200);
  let body = '';
  for await (const c of req) body += c;
  const seen = JSON.parse(body);
  assert.equal(seen.body, 'payload');
  assert.equal(seen.headers.expect, undefined);
});

test('a WebSocket upgrade is handed over with its stream: the handler answers 101 and splices', async (t) => {
  const w = await startDownstream(t, {
    handlers: {
      upgrade: async ({ request, response, upgrade }) => {
        assert.equal(request.headers.upgrade, 'websocket');
        response.respond(101, { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-accept': 'x' }, { endStream: true });
        if (upgrade.head.length > 0) upgrade.socket.write(upgrade.head);
        upgrade.socket.pipe(upgrade.socket);
      },
    },
  });
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.http);
  stream.write('GET /chat HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nhello');
  let received = '';
  stream.on('data', (c) => (received += c));
  await eventually('the 101 and the echo', () => received.includes('\r\n\r\nhello'));
  assert.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(received, /\r\nupgrade: websocket\r\n/i);
  assert.match(received, /\r\nserver: istio-envoy\r\n/);
  stream.write(' again');
  await eventually('spliced', () => received.endsWith('hello again'));
  stream.close();
  await eventually('the record', () => w.records.length === 1);
  assert.equal(w.records[0]!.responseCode, 101);
});

test('a refused upgrade gets a local reply on the raw stream, and the connection closes', async (t) => {
  const w = await startDownstream(t);
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.http);
  stream.end('GET /chat HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  let received = '';
  for await (const c of stream as AsyncIterable<Buffer>) received += c;
  assert.match(received, /^HTTP\/1\.1 404 Not Found\r\n/);
  assert.match(received, /\r\nconnection: close\r\n/);
  await eventually('the record', () => w.records.length === 1);
  assert.deepEqual(w.records[0]!.responseFlags, ['NR']);
});

test('an HTTP/1 connection that moves no byte for the stream idle timeout is closed, and its request logs SI', async (t) => {
  const w = await startDownstream(t, { limits: { streamIdleTimeout: 0.1 }, handlers: { http: () => new Promise(() => {}) } });
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.http);
  stream.write('GET /stuck HTTP/1.1\r\nHost: web\r\n\r\n');
  stream.resume();
  await once(stream, 'close');
  await eventually('the record', () => w.records.length === 1);
  assert.deepEqual(w.records[0]!.responseFlags, ['SI']);
  assert.equal(w.records[0]!.responseCode, 0);
});

// Both tunnel ends on loopback with real sockets: the capture handler and
// client pool of node n1, the inbound server of node n2, and a real TCP
// server as the destination pod.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { silentLogger } from '../../lib/core/log.ts';
import { awaitTunnel } from '../../lib/hbone/client.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import { CLIENT_IP, SERVER_IP, readAll, twoNodes, upstream } from '../ztunnel/fixtures.ts';
import { eventually } from '../support/eventually.ts';

const closedFlows = (flows: { list(): { state: string; closeReason?: string }[] }) => flows.list().filter((f) => f.state === 'closed');

test('bytes flow both ways and both ends record the flow', async (t) => {
  const up = await upstream(t, (s) => s.pipe(s));
  const { n1, n2, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.end('ping');
  assert.equal((await readAll(client)).toString(), 'ping');
  await eventually('both flows closed', () => closedFlows(n1.flows).length === 1 && closedFlows(n2.flows).length === 1);
  const [out] = n1.flows.list();
  const [inb] = n2.flows.list();
  assert.equal(out.direction, 'outbound');
  assert.equal(out.path, 'tunnel');
  assert.deepEqual(out.source.workload, { namespace: 'default', name: 'client' });
  assert.deepEqual(out.destination, { ip: SERVER_IP, port: up.port, workload: { namespace: 'default', name: 'server' }, node: 'n2' });
  assert.equal(out.bytesSent, 4);
  assert.equal(out.bytesReceived, 4);
  assert.equal(out.closeReason, 'client_closed');
  // The inbound end learns the client from the Forwarded header, and shares the trace id.
  assert.equal(inb.direction, 'inbound');
  assert.equal(inb.source.ip, CLIENT_IP);
  assert.deepEqual(inb.source.workload, { namespace: 'default', name: 'client' });
  assert.equal(inb.traceId, out.traceId);
  assert.match(inb.traceId ?? '', /^[0-9a-f]{32}$/);
  assert.equal(inb.bytesSent, 4);
  assert.equal(inb.bytesReceived, 4);
});

test('a Service VIP resolves to the pod through the tunnel, named targetPort included', async (t) => {
  const up = await upstream(t, (s) => s.end('hello from server'));
  const { n1, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: '10.96.0.10', port: 80 });
  client.end();
  assert.equal((await readAll(client)).toString(), 'hello from server');
  await eventually('flow closed', () => closedFlows(n1.flows).length === 1);
  const [f] = n1.flows.list();
  assert.deepEqual(f.service, { namespace: 'default', name: 'server' });
  assert.deepEqual(f.originalDestination, { ip: '10.96.0.10', port: 80 });
  assert.equal(f.destination?.port, up.port);
});

test('client half-close: the server sees EOF and can still answer', async (t) => {
  const up = await upstream(t, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => s.end(`got ${Buffer.concat(chunks).toString()}`));
  });
  const { n1, n2, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.end('question');
  assert.equal((await readAll(client)).toString(), 'got question');
  await eventually('flows closed', () => closedFlows(n1.flows).length === 1 && closedFlows(n2.flows).length === 1);
  assert.equal(n1.flows.list()[0].closeReason, 'client_closed');
  assert.equal(n2.flows.list()[0].closeReason, 'client_closed');
});

test('server half-close: the client sees EOF and can still send', async (t) => {
  let received!: Promise<Buffer>;
  const up = await upstream(t, (s) => {
    received = readAll(s);
    s.end('bye');
  });
  const { n1, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  assert.equal((await readAll(client)).toString(), 'bye');
  client.end('after your FIN');
  assert.equal((await received).toString(), 'after your FIN');
  await eventually('flow closed', () => closedFlows(n1.flows).length === 1);
  assert.equal(n1.flows.list()[0].closeReason, 'server_closed');
});

test('a server-first protocol works: nothing waits for client bytes', async (t) => {
  const up = await upstream(t, (s) => s.write('220 ready\r\n'));
  const { dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  const [banner] = (await once(client, 'data')) as [Buffer];
  assert.equal(banner.toString(), '220 ready\r\n');
});

test('a client reset reaches the upstream as a reset', async (t) => {
  let upstreamSocket!: Socket;
  const up = await upstream(t, (s) => {
    upstreamSocket = s;
    s.write('x');
  });
  const { n1, n2, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  await once(client, 'data');
  const upstreamError = once(upstreamSocket, 'error');
  client.resetAndDestroy();
  const [err] = (await upstreamError) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('flows closed', () => closedFlows(n1.flows).length === 1 && closedFlows(n2.flows).length === 1);
  assert.equal(n1.flows.list()[0].closeReason, 'client_reset');
  assert.equal(n2.flows.list()[0].closeReason, 'client_reset');
});

test('an upstream reset reaches the client as a reset', async (t) => {
  const up = await upstream(t, (s) => s.once('data', () => s.resetAndDestroy()));
  const { n1, n2, dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.write('trigger');
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('flows closed', () => closedFlows(n1.flows).length === 1 && closedFlows(n2.flows).length === 1);
  assert.equal(n1.flows.list()[0].closeReason, 'upstream_reset');
  assert.equal(n2.flows.list()[0].closeReason, 'upstream_reset');
});

test('the inbound server answers 400 to anything but CONNECT to an IP:port', async (t) => {
  const { n2 } = await twoNodes(t, 1);
  const session = h2connect(`http://127.0.0.2:${n2.address.port}`);
  t.after(() => session.close());
  const get = session.request({ ':method': 'GET', ':path': '/' });
  get.end();
  assert.equal(await status(get), 400);
  assert.equal(await status(session.request({ ':method': 'CONNECT', ':authority': 'server.default:80' })), 400);
});

async function status(stream: ClientHttp2Stream): Promise<number> {
  stream.on('error', () => {});
  const [headers] = await once(stream, 'response');
  return Number(headers[':status']);
}

test('503 when the upstream refuses, or the target is not a pod of that node', async (t) => {
  const up = await upstream(t, () => {});
  const refusedPort = up.port;
  up.server.close();
  const { n1, n2, dial } = await twoNodes(t, refusedPort);
  const pool = new TunnelPool({ port: n2.address.port, log: silentLogger });
  t.after(() => pool.close());
  const node = { name: 'n2', address: '127.0.0.2' };
  assert.equal(await status(pool.open({ node }, { ip: SERVER_IP, port: refusedPort }, {})), 503);
  assert.equal(await status(pool.open({ node }, { ip: CLIENT_IP, port: 80 }, {})), 503);
  // Through the capture path the application sees its connection reset.
  const client = dial({ ip: SERVER_IP, port: refusedPort });
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('flow closed', () => closedFlows(n1.flows).length === 1);
  assert.equal(n1.flows.list()[0].closeReason, 'upstream_connect_failed');
  assert.equal(n2.flows.list().at(-1)?.closeReason, 'upstream_connect_failed');
});

test('a peer ztunnel that is down fails the tunnel, not the pool', async (t) => {
  const up = await upstream(t, () => {});
  const closedPort = up.port;
  up.server.close();
  const pool = new TunnelPool({ port: closedPort, log: silentLogger });
  t.after(() => pool.close());
  const node = { name: 'n2', address: SERVER_IP };
  await assert.rejects(awaitTunnel(pool.open({ node }, { ip: SERVER_IP, port: 80 }, {}), 'n2').ready, { reason: 'tunnel_failed' });
  await assert.rejects(awaitTunnel(pool.open({ node }, { ip: SERVER_IP, port: 80 }, {}), 'n2').ready, { reason: 'tunnel_failed' });
});

test('more than 100 concurrent streams open a second session', async (t) => {
  const up = await upstream(t, () => {});
  const { n2 } = await twoNodes(t, up.port);
  const pool = new TunnelPool({ port: n2.address.port, log: silentLogger });
  t.after(() => pool.close());
  const node = { name: 'n2', address: '127.0.0.2' };
  const streams = Array.from({ length: 101 }, () => pool.open({ node }, { ip: SERVER_IP, port: up.port }, {}));
  assert.deepEqual(new Set(await Promise.all(streams.map(status))), new Set([200]));
  assert.equal(n2.inbound.sessionCount, 2);
  for (const s of streams) s.close();
});

test('64 MiB arrive intact, both ways', async (t) => {
  const up = await upstream(t, (s) => s.pipe(s));
  const { dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  const block = randomBytes(1024 * 1024);
  const sent = createHash('sha256');
  const received = createHash('sha256');
  let receivedBytes = 0;
  client.on('data', (c: Buffer) => {
    received.update(c);
    receivedBytes += c.length;
  });
  const ended = once(client, 'end');
  for (let i = 0; i < 64; i++) {
    // Vary each block so a reordered or repeated block would change the hash.
    const b = Buffer.from(block);
    b.writeUInt32BE(i, 0);
    sent.update(b);
    if (!client.write(b)) await once(client, 'drain');
  }
  client.end();
  await ended;
  assert.equal(receivedBytes, 64 * 1024 * 1024);
  assert.equal(received.digest('hex'), sent.digest('hex'));
});

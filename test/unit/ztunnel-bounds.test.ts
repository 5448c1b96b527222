// The ztunnel's listeners are bounded: a TLS handshake that never completes
// is closed (and one this node starts fails), a peer over its session cap and a pod over its connection cap
// are refused and counted, a session without streams is drained, a session
// takes no more streams than --hbone-max-streams (the one past it refused and
// counted), a connect to a pod that never completes and a tunnel that never
// answers are given up (connect_timeout), an idle relay is reset, and a
// peer that stops reading holds its source back instead of growing a queue.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { Duplex } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../lib/core/log.ts';
import { awaitTunnel } from '../../lib/hbone/client.ts';
import { relay, type Leg } from '../../lib/hbone/relay.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import { CertificateStore } from '../../lib/identity/store.ts';
import type { ZtunnelMetrics } from '../../ztunnel/metrics.ts';
import { eventually } from '../support/eventually.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { SERVER_IP, defer, twoNodes, upstream } from '../ztunnel/fixtures.ts';

/** The value of one sample of `metrics`, 0 if it was never counted. */
async function sample(metrics: ZtunnelMetrics, name: string, labels: string): Promise<number> {
  const line = (await metrics.text()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A TCP connection to `port` on 127.0.0.2 from 127.0.0.1, open once it resolves. */
async function rawConnection(t: TestContext, port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.2', port });
  socket.on('error', () => {});
  // Before the servers' own teardown, which waits for their connections.
  defer(t, () => socket.destroy());
  await once(socket, 'connect');
  return socket;
}

/** A workload identity whose certificates never come: enough for a TLS listener nobody completes a handshake with. */
function identityWithoutCa(t: TestContext): MeshIdentity {
  const certs = new CertificateStore({ issuer: { issue: () => Promise.reject(new Error('this test has no CA')) } });
  t.after(() => certs.close());
  return { trustDomain: 'cluster.local', certs };
}

test('a TLS handshake that never completes is closed after --hbone-handshake-timeout and counted', async (t) => {
  const { n2 } = await twoNodes(t, 1, { n2: identityWithoutCa(t) }, { limits: { hboneHandshakeTimeout: 0.2 } });
  const silent = await rawConnection(t, n2.address.port);
  await once(silent, 'close');
  assert.equal(await sample(n2.metrics, 'meshlet_hbone_handshake_failures_total', 'direction="inbound",reason="handshake_timeout"'), 1);
});

test('a peer that accepts and never completes the handshake fails the tunnel with handshake_timeout', async (t) => {
  const silent = await upstream(t, () => {});
  const failures: string[] = [];
  const pool = new TunnelPool({ port: silent.port, log: silentLogger, handshakeTimeoutMs: 200, onSessionFailure: (reason) => failures.push(reason) });
  defer(t, () => pool.close());
  const stream = pool.open({ node: { name: 'n2', address: SERVER_IP }, tls: { servername: 'peer.invalid', rejectUnauthorized: true } }, { ip: SERVER_IP, port: 80 }, {});
  await assert.rejects(awaitTunnel(stream, 'n2', (s) => pool.failureOf(s)).ready, { reason: 'handshake_timeout' });
  assert.deepEqual(failures, ['handshake_timeout']);
});

test('a peer over --hbone-max-sessions-per-peer is refused at accept and counted; a freed slot admits again', async (t) => {
  const up = await upstream(t, () => {});
  const { n2 } = await twoNodes(t, up.port, {}, { limits: { hboneMaxSessionsPerPeer: 2 } });
  const first = await rawConnection(t, n2.address.port);
  await rawConnection(t, n2.address.port);
  await eventually('two sessions', () => n2.inbound.sessionCount === 2);
  const third = await rawConnection(t, n2.address.port);
  await once(third, 'close');
  assert.equal(n2.inbound.sessionCount, 2);
  assert.equal(await sample(n2.metrics, 'meshlet_connections_refused_total', 'listener="hbone",reason="peer_session_limit"'), 1);

  first.destroy();
  await eventually('the slot freed', () => n2.inbound.sessionCount === 1);
  const session = h2connect(`http://127.0.0.2:${n2.address.port}`);
  defer(t, () => session.destroy());
  const stream = session.request({ ':method': 'CONNECT', ':authority': `${SERVER_IP}:${up.port}` });
  const [headers] = await once(stream, 'response');
  assert.equal(headers[':status'], 200);
});

// HTTP/2 frames by hand, for a client that ignores the server's SETTINGS (Node's own client waits for a free stream).
const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
};
/** HPACK literal header field without indexing, new name (RFC 7541 §6.2.2), short names and values only. */
const literal = (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const END_HEADERS = 0x4;
const REFUSED_STREAM = 0x7;

test('a session takes no more concurrent streams than --hbone-max-streams: the one past it is refused', async (t) => {
  const up = await upstream(t, () => {});
  const { n2 } = await twoNodes(t, up.port, {}, { limits: { hboneMaxStreams: 2 } });
  const socket = await rawConnection(t, n2.address.port);
  const received: { type: number; stream: number; code?: number }[] = [];
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
      const length = buffered.readUIntBE(0, 3);
      const type = buffered[3]!;
      const stream = buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = buffered.subarray(9, 9 + length);
      received.push({ type, stream, ...(type === RST_STREAM ? { code: payload.readUInt32BE(0) } : type === GOAWAY ? { code: payload.readUInt32BE(4) } : {}) });
      buffered = buffered.subarray(9 + length);
    }
  });
  const connectTo = Buffer.concat([literal(':method', 'CONNECT'), literal(':authority', `${SERVER_IP}:${up.port}`)]);
  socket.write(Buffer.concat([
    Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
    frame(SETTINGS, 0, 0, Buffer.alloc(0)),
    ...[1, 3, 5].map((id) => frame(HEADERS, END_HEADERS, id, connectTo)),
  ]));
  const refused = await eventually('the third stream refused', () => received.find((f) => (f.type === RST_STREAM && f.stream === 5) || f.type === GOAWAY));
  if (refused.type === RST_STREAM) assert.equal(refused.code, REFUSED_STREAM);
  await eventually('the first two answered', () => [1, 3].every((id) => received.some((f) => f.type === HEADERS && f.stream === id)));
  assert.ok(!received.some((f) => f.type === HEADERS && f.stream === 5), 'the third stream was never answered');
  assert.equal(await sample(n2.metrics, 'meshlet_hbone_streams_refused_total', 'reason="stream_limit"'), 1);
});

/** A raw HTTP/2 client on `port` of 127.0.0.2 that has sent its preface and acknowledged the server's SETTINGS. */
async function rawH2(t: TestContext, port: number) {
  const socket = await rawConnection(t, port);
  const received: { type: number; flags: number; stream: number; code?: number }[] = [];
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
      const length = buffered.readUIntBE(0, 3);
      const type = buffered[3]!;
      const payload = buffered.subarray(9, 9 + length);
      received.push({ type, flags: buffered[4]!, stream: buffered.readUInt32BE(5) & 0x7fffffff, ...(type === RST_STREAM ? { code: payload.readUInt32BE(0) } : type === GOAWAY ? { code: payload.readUInt32BE(4) } : {}) });
      buffered = buffered.subarray(9 + length);
    }
  });
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
  await eventually('the server\'s SETTINGS', () => received.some((f) => f.type === SETTINGS && (f.flags & ACK) === 0));
  socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
  return { socket, received };
}
const ACK = 0x1;

test('a peer that acknowledged the settings and still opens a stream past --hbone-max-streams gets REFUSED_STREAM, counted; its session lives on', async (t) => {
  // The reset stream's upstream connection is reset too.
  const up = await upstream(t, (s) => s.on('error', () => {}));
  const { n2 } = await twoNodes(t, up.port, {}, { limits: { hboneMaxStreams: 2 } });
  const { socket, received } = await rawH2(t, n2.address.port);
  const connectTo = Buffer.concat([literal(':method', 'CONNECT'), literal(':authority', `${SERVER_IP}:${up.port}`)]);
  socket.write(Buffer.concat([1, 3, 5].map((id) => frame(HEADERS, END_HEADERS, id, connectTo))));
  const refused = await eventually('the third stream refused', () => received.find((f) => f.type === RST_STREAM && f.stream === 5));
  assert.equal(refused.code, REFUSED_STREAM);
  await eventually('the first two answered', () => [1, 3].every((id) => received.some((f) => f.type === HEADERS && f.stream === id)));
  assert.equal(await sample(n2.metrics, 'meshlet_hbone_streams_refused_total', 'reason="stream_limit"'), 1);

  // The client resets one stream and opens another in the same write: the freed slot takes it.
  const CANCEL = Buffer.from([0, 0, 0, 0x8]);
  socket.write(Buffer.concat([frame(RST_STREAM, 0, 1, CANCEL), frame(HEADERS, END_HEADERS, 7, connectTo)]));
  await eventually('the new stream answered', () => received.some((f) => f.type === HEADERS && f.stream === 7));
  assert.ok(!received.some((f) => f.type === GOAWAY), 'the session was never ended');
  assert.equal(await sample(n2.metrics, 'meshlet_hbone_streams_refused_total', 'reason="stream_limit"'), 1);
});

/**
 * A listener on `host` whose process never accepts (its loop is blocked) and
 * whose backlog is full: a connect to it gets no SYN-ACK, as from a pod that
 * drops SYNs. The kernel completes backlog + 1 handshakes on its own, so two
 * connections fill it.
 */
async function blackholed(t: TestContext, host: string): Promise<number> {
  const script = `const server = require('node:net').createServer().listen({ host: ${JSON.stringify(host)}, port: 0, backlog: 1 }, () =>
    process.stdout.write(server.address().port + '\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)));`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  defer(t, () => child.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const port = Number(line);
  for (let i = 0; i < 2; i++) {
    const filler = connect({ host, port });
    filler.on('error', () => {});
    defer(t, () => filler.destroy());
    await once(filler, 'connect');
  }
  return port;
}

test('a connect to the destination pod that does not complete in --connect-timeout closes the inbound flow with connect_timeout; the source is answered 503', async (t) => {
  const port = await blackholed(t, SERVER_IP);
  // The source's own wait for the tunnel's answer is the default, far longer.
  const { n1, n2, dial } = await twoNodes(t, port, {}, { inboundLimits: { connectTimeout: 0.2 } });
  const client = dial({ ip: SERVER_IP, port });
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('both flows closed', () => n1.flows.list().some((f) => f.state === 'closed') && n2.flows.list().some((f) => f.state === 'closed'));
  assert.deepEqual(n2.flows.list().map((f) => f.closeReason), ['connect_timeout']);
  assert.deepEqual(n1.flows.list().map((f) => f.closeReason), ['upstream_connect_failed'], 'the destination ztunnel answered 503');
  assert.equal(await sample(n2.metrics, 'istio_tcp_connections_closed_total', 'reporter="destination",source_workload="client",source_workload_namespace="default",source_principal="unknown",destination_workload="server",destination_workload_namespace="default",destination_principal="unknown",destination_service="unknown",destination_service_name="unknown",destination_service_namespace="unknown",connection_security_policy="unknown",response_flags="UF"'), 1);
});

test('a tunnel whose peer never answers its CONNECT in --connect-timeout closes the outbound flow with connect_timeout and resets the stream', async (t) => {
  const streams: ServerHttp2Stream[] = [];
  const silent = createH2Server();
  silent.on('stream', (stream) => {
    stream.on('error', () => {});
    streams.push(stream);
  });
  silent.listen(0, '127.0.0.2');
  await once(silent, 'listening');
  defer(t, () => new Promise((resolve) => silent.close(resolve)));
  const { n1, dial } = await twoNodes(t, 1, {}, { limits: { connectTimeout: 0.2 }, tunnelPort: (silent.address() as { port: number }).port });
  const client = dial({ ip: SERVER_IP, port: 1 });
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('the flow closed', () => n1.flows.list().some((f) => f.state === 'closed'));
  assert.deepEqual(n1.flows.list().map((f) => f.closeReason), ['connect_timeout']);
  await eventually('the peer saw its stream reset', () => streams.length === 1 && streams[0]!.closed);
  assert.equal(streams[0]!.rstCode, 0x8, 'CANCEL');
});

test('a session with no stream for --hbone-idle-timeout is drained and counted; one carrying a stream is not', async (t) => {
  const clock = new ManualClock(Date.now());
  const up = await upstream(t, () => {});
  const { n2 } = await twoNodes(t, up.port, {}, { clock, limits: { hboneIdleTimeout: 30 } });
  const idle = h2connect(`http://127.0.0.2:${n2.address.port}`);
  idle.on('error', () => {});
  defer(t, () => idle.destroy());
  const busy = h2connect(`http://127.0.0.2:${n2.address.port}`);
  defer(t, () => busy.destroy());
  const stream = busy.request({ ':method': 'CONNECT', ':authority': `${SERVER_IP}:${up.port}` });
  await once(stream, 'response');
  await eventually('both sessions on the server', () => n2.inbound.sessionCount === 2);
  const goaway = once(idle, 'goaway');
  clock.advance(30_000);
  await goaway;
  await once(idle, 'close');
  assert.equal(n2.inbound.sessionCount, 1, 'the session with a stream stays');
  assert.equal(await sample(n2.metrics, 'meshlet_hbone_sessions_drained_total', 'direction="inbound",reason="idle_timeout"'), 1);
});

test('a pod over --max-connections-per-pod is refused, its flow closed with connection_limit and counted', async (t) => {
  const up = await upstream(t, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const { n1, dial } = await twoNodes(t, up.port, {}, { limits: { maxConnectionsPerPod: 2 } });
  const echoed = async (s: Socket) => {
    s.write('x');
    await once(s, 'data');
  };
  const first = dial({ ip: SERVER_IP, port: up.port });
  await echoed(first);
  await echoed(dial({ ip: SERVER_IP, port: up.port }));
  const third = dial({ ip: SERVER_IP, port: up.port });
  const [err] = (await once(third, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  const refused = n1.flows.list().filter((f) => f.closeReason === 'connection_limit');
  assert.equal(refused.length, 1);
  assert.deepEqual(refused[0]!.source.workload, { namespace: 'default', name: 'client' });
  assert.equal(await sample(n1.metrics, 'meshlet_connections_refused_total', 'listener="outbound",reason="connection_limit"'), 1);

  first.destroy();
  await eventually('a connection of the pod closed', () => n1.flows.list().filter((f) => f.state === 'closed').length === 2);
  await echoed(dial({ ip: SERVER_IP, port: up.port }));
});

test('a relay that moves no byte for --idle-timeout is reset both ways, closed with idle_timeout and counted', async (t) => {
  const upstreamErrors: string[] = [];
  const up = await upstream(t, (s) => {
    s.on('error', (err: NodeJS.ErrnoException) => upstreamErrors.push(err.code ?? ''));
    s.pipe(s);
  });
  const { n1, dial } = await twoNodes(t, up.port, {}, { limits: { idleTimeout: 0.2 } });
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.write('x');
  await once(client, 'data');
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('the flow closed', () => n1.flows.list().some((f) => f.state === 'closed'));
  assert.equal(n1.flows.list()[0]!.closeReason, 'idle_timeout');
  assert.equal(await sample(n1.metrics, 'meshlet_tcp_idle_timeouts_total', 'direction="outbound"'), 1);
  await eventually('the pod reset too', () => upstreamErrors.includes('ECONNRESET'));
});

test('traffic keeps a relay under --idle-timeout open', async (t) => {
  const up = await upstream(t, (s) => s.pipe(s));
  const { n1, dial } = await twoNodes(t, up.port, {}, { limits: { idleTimeout: 1 } });
  const client = dial({ ip: SERVER_IP, port: up.port });
  // Fifteen round trips a tenth of the timeout apart span longer than the timeout.
  for (let i = 0; i < 15; i++) {
    client.write('x');
    await once(client, 'data');
    await sleep(100);
  }
  assert.equal(n1.flows.list()[0]!.state, 'open');
});

/** A leg over a bare duplex, for driving the relay without sockets. */
const leg = (stream: Duplex): Leg => ({ stream, reset: () => stream.destroy(), onReset: () => {}, wasReset: () => false });
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise(setImmediate);
};

test('a relay whose destination never reads stops reading its source: the queue stays bounded, and resumes once drained', async () => {
  const CHUNK = 64 * 1024;
  let produced = 0;
  const source = new Duplex({
    read() {
      produced += CHUNK;
      this.push(Buffer.alloc(CHUNK));
    },
    write: (_chunk, _encoding, done) => done(),
  });
  const held: (() => void)[] = [];
  const sink = new Duplex({ read() {}, write: (_chunk, _encoding, done) => void held.push(done) });
  relay(leg(source), leg(sink), () => {});
  await turns(200);
  const stalledAt = produced;
  await turns(200);
  assert.equal(produced, stalledAt, 'the source is no longer read');
  assert.ok(stalledAt <= 1024 * 1024, `at most the relay's queue was read ahead (${stalledAt} bytes)`);
  while (held.length > 0) held.shift()!();
  await turns(20);
  assert.ok(produced > stalledAt, 'reading resumed once the destination drained');
  source.destroy();
  sink.destroy();
});

test('an HBONE stream to a pod that never reads holds the client back: what the path buffers is bounded', async (t) => {
  const up = await upstream(t, (s) => s.pause());
  const { dial } = await twoNodes(t, up.port);
  const client = dial({ ip: SERVER_IP, port: up.port });
  await once(client, 'connect');
  const block = Buffer.alloc(1024 * 1024);
  const LIMIT = 256 * 1024 * 1024;
  let accepted = 0;
  // Write until the path stops draining; an unbounded queue anywhere would take all 256 MiB.
  while (accepted < LIMIT) {
    accepted += block.length;
    if (client.write(block)) continue;
    const drained = await Promise.race([once(client, 'drain').then(() => true), sleep(1000).then(() => false)]);
    if (!drained) break;
  }
  // Socket buffers of three TCP connections, two relay queues and one HTTP/2 stream window.
  assert.ok(accepted < 64 * 1024 * 1024, `the path took ${accepted / 1024 / 1024} MiB from a client whose server never reads`);
});

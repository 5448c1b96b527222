// The real `meshlet ztunnel` process: control socket, admin API, readiness,
// the inbound tunnel, the outbound loop guard, access logs and SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { get, type RequestOptions } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import type { ControlReply } from '../../lib/mesh/control-protocol.ts';
import { emptyMeshState, type MeshState } from '../../lib/mesh/kinds.ts';
import type { FlowEvent, FlowRecord } from '../../lib/telemetry/flow.ts';
import { eventually } from '../support/eventually.ts';
import { CLI } from '../support/harness.ts';
import { workload } from '../ztunnel/fixtures.ts';

const CAPTURE = '127.0.0.51';
const NODE = '127.0.0.52';
const POD = '127.0.0.53';

async function freePort(host: string): Promise<number> {
  const s = createServer().listen(0, host);
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  return port;
}

function request(options: RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

interface ZtunnelPaths {
  control: string;
  admin: string;
  outboundPort: number;
  hbonePort: number;
  readinessPort: number;
  metricsPort?: number;
}

/** A `meshlet ztunnel` process on the test's addresses, started once its readiness port listens; killed after the test. */
async function startZtunnel(t: TestContext, p: ZtunnelPaths) {
  const child = spawn(process.execPath, [
    CLI, 'ztunnel', '--node', 'n1', '--capture-ip4', CAPTURE, '--node-ip4', NODE,
    '--control-socket', p.control, '--admin-socket', p.admin,
    '--outbound-port', String(p.outboundPort), '--hbone-port', String(p.hbonePort),
    '--admin-port', '0', '--readiness-port', String(p.readinessPort), '--drain-seconds', '1', '--plaintext-tunnels', '--metrics-port', String(p.metricsPort ?? 0),
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const logs: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => logs.push(JSON.parse(l) as Record<string, unknown>));
  await eventually('the readiness listener', () => logs.some((l) => l.event === 'listening' && l.what === 'readiness'));
  return { child, logs };
}

/** Sends the ztunnel a snapshot as its agent does and waits for the ack; the connection stays open until the test ends. */
async function sendSnapshot(t: TestContext, control: string, version: number, state: MeshState): Promise<void> {
  const agent = connect(control);
  t.after(() => agent.destroy());
  const replies = createInterface({ input: agent })[Symbol.asyncIterator]();
  agent.write(`${JSON.stringify({ type: 'snapshot', version, state })}\n`);
  assert.deepEqual(JSON.parse((await replies.next()).value as string) as ControlReply, { type: 'ack', version });
}

test('meshlet ztunnel serves control, admin, readiness and the tunnel, and drains on SIGTERM', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ztp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const control = join(dir, 'control.sock');
  const admin = join(dir, 'admin.sock');
  const [outboundPort, hbonePort, readinessPort] = [await freePort(CAPTURE), await freePort(NODE), await freePort(NODE)];

  // The local pod: records who it sees as its peer.
  const peers: string[] = [];
  const podSockets = new Set<Socket>();
  const pod = createServer({ allowHalfOpen: true }, (s) => {
    peers.push(s.remoteAddress ?? '');
    podSockets.add(s);
    s.on('error', () => {});
    s.pipe(s);
  }).listen(0, POD);
  await once(pod, 'listening');
  t.after(() => {
    for (const s of podSockets) s.destroy();
    pod.close();
  });
  const podPort = (pod.address() as AddressInfo).port;

  const { child, logs } = await startZtunnel(t, { control, admin, outboundPort, hbonePort, readinessPort });

  const adminGet = (path: string) => request({ socketPath: admin, path });
  assert.equal((await adminGet('/healthz')).status, 503);
  // No traffic listener before the agent's state: a rolling update's other ztunnel, on the same ports, takes it.
  const early = connect({ host: CAPTURE, port: outboundPort });
  assert.equal(((await once(early, 'error')) as [NodeJS.ErrnoException])[0].code, 'ECONNREFUSED');

  const state: MeshState = {
    ...emptyMeshState(),
    // n0 is where the tunnel below comes from (loopback's source address): its client pod may be named in Forwarded.
    nodes: [{ name: 'n1', address: NODE }, { name: 'n0', address: '127.0.0.1' }],
    workloads: [workload({ name: 'pod', ips: [POD], node: 'n1' }), workload({ name: 'client', ips: ['10.9.9.9'], node: 'n0' })],
  };
  await sendSnapshot(t, control, 7, state);
  await eventually('the outbound listener', () => logs.some((l) => l.event === 'listening' && l.what === 'outbound'));

  assert.equal((await adminGet('/healthz')).status, 200);
  assert.equal((await request({ host: NODE, port: readinessPort, path: '/healthz/ready' })).status, 200);
  const snapshot = JSON.parse((await adminGet('/state')).body) as { version: number; state: typeof state };
  assert.equal(snapshot.version, 7);
  assert.equal(snapshot.state.workloads[0].name, 'pod');

  const events: FlowEvent[] = [];
  const follow = get({ socketPath: admin, path: '/flows?follow=1' });
  const [followRes] = (await once(follow, 'response')) as [NodeJS.ReadableStream];
  createInterface({ input: followRes }).on('line', (l) => events.push(JSON.parse(l) as FlowEvent));
  t.after(() => follow.destroy());

  // Without the BPF hooks a connection to the capture port names the listener itself: refused, not looped.
  const direct = connect({ host: CAPTURE, port: outboundPort });
  const [err] = (await once(direct, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('the loop flow to close', () => events.some((e) => e.event === 'close' && e.flow.closeReason === 'loop'));

  // A tunnel into the local pod, which sees the node's address as its peer.
  const session = h2connect(`http://${NODE}:${hbonePort}`);
  session.on('error', () => {});
  t.after(() => session.destroy());
  const stream = session.request({ ':method': 'CONNECT', ':authority': `${POD}:${podPort}`, forwarded: 'for="10.9.9.9:4242"' });
  stream.on('error', () => {});
  const [headers] = await once(stream, 'response');
  assert.equal(headers[':status'], 200);
  stream.write('echo');
  const [echo] = (await once(stream, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'echo');
  assert.deepEqual(peers, [NODE]);
  const { flows } = JSON.parse((await adminGet('/flows')).body) as { flows: FlowRecord[] };
  const inbound = flows.find((f) => f.direction === 'inbound');
  assert.equal(inbound?.state, 'open');
  assert.deepEqual(inbound?.source, { ip: '10.9.9.9', port: 4242, workload: { namespace: 'default', name: 'client' } });
  assert.equal(inbound?.bytesSent, 4);

  // SIGTERM: the open tunnel keeps carrying data through the drain, is cut
  // when the drain time is over, and only then does the process exit cleanly.
  const closed = once(child, 'close');
  child.kill('SIGTERM');
  await eventually('the ztunnel to start draining', () => logs.some((l) => l.event === 'shutting_down'));
  stream.write('draining');
  const [during] = (await once(stream, 'data')) as [Buffer];
  assert.equal(during.toString(), 'draining', 'the open tunnel still carries data after SIGTERM');
  const [code] = (await closed) as [number | null];
  assert.equal(code, 0);
  // The ztunnel's own log is one ordered stream: drain began with the flow
  // open, ran out with it still open, then the flow was cut, then it stopped.
  const at = (what: string, match: (l: Record<string, unknown>) => boolean) => {
    const i = logs.findIndex(match);
    assert.notEqual(i, -1, `no ${what} in the ztunnel's log`);
    return i;
  };
  const order = [
    at('shutting_down with the flow open', (l) => l.event === 'shutting_down' && l.openFlows === 1),
    at('drain_timeout with the flow open', (l) => l.event === 'drain_timeout' && l.openFlows === 1),
    at('the flow cut at shutdown', (l) => l.event === 'access' && l.closeReason === 'shutdown' && l.direction === 'inbound'),
    at('stopped', (l) => l.event === 'stopped'),
  ];
  assert.deepEqual(order, [...order].sort((a, b) => a - b), 'shutting_down, drain_timeout, the flow cut, stopped: in that order');
  assert.ok(logs.some((l) => l.event === 'access' && l.closeReason === 'loop'));
  assert.ok(logs.some((l) => l.event === 'snapshot_applied' && l.version === 7));
  assert.ok(logs.some((l) => l.event === 'stopped'));
});

test('a rolling update\'s new ztunnel on the same ports takes the node over: the old one stops answering on the readiness and metrics ports, so every probe there reaches the new one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ztp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const admin = join(dir, 'admin.sock');
  const ports = { outboundPort: await freePort(CAPTURE), hbonePort: await freePort(NODE), readinessPort: await freePort(NODE), metricsPort: await freePort(NODE) };
  const state: MeshState = { ...emptyMeshState(), nodes: [{ name: 'n1', address: NODE }], workloads: [workload({ name: 'pod', ips: [POD], node: 'n1' })] };
  const probe = () => request({ host: NODE, port: ports.readinessPort, path: '/healthz/ready' });
  const scrape = () => request({ host: NODE, port: ports.metricsPort, path: '/metrics' });

  const old = await startZtunnel(t, { control: join(dir, 'old-control.sock'), admin, ...ports });
  await sendSnapshot(t, join(dir, 'old-control.sock'), 1, state);
  await eventually('the old ztunnel to listen for traffic', () => old.logs.some((l) => l.event === 'listening' && l.what === 'outbound'));
  assert.equal((await probe()).status, 200);

  const next = await startZtunnel(t, { control: join(dir, 'new-control.sock'), admin, ...ports });
  await eventually('the old ztunnel to see it is superseded', () => old.logs.some((l) => l.event === 'superseded'));
  // Not listening for traffic yet, the new one is not ready; the old one, superseded, no longer answers.
  for (let i = 0; i < 8; i++) assert.deepEqual(await probe(), { status: 503, body: `${JSON.stringify({ status: 'not listening for traffic yet' })}\n` });
  await sendSnapshot(t, join(dir, 'new-control.sock'), 1, state);
  await eventually('the new ztunnel to listen for traffic', () => next.logs.some((l) => l.event === 'listening' && l.what === 'outbound'));
  // SO_REUSEPORT spreads new connections over every listener on the port: 40 in a row all reach the new ztunnel.
  const statuses = await Promise.all(Array.from({ length: 40 }, probe));
  assert.deepEqual(statuses.map((r) => r.status), Array(40).fill(200), statuses.find((r) => r.status !== 200)?.body);
  for (let i = 0; i < 10; i++) assert.equal((await scrape()).status, 200);
  // The old ztunnel still carries what it holds until its own pod is deleted.
  assert.equal(old.child.exitCode, null);
});

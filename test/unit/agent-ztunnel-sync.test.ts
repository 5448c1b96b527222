// The agent sends the ztunnel nothing before its first state. A message the
// ztunnel refuses is never a silent loss: the agent counts it,
// resyncs with a full snapshot, reports not ready (in status and /readyz)
// until the ztunnel holds its state, and after a restart of either process
// the two converge on the agent's state.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { NodeAgent } from '../../agent/node-agent.ts';
import { ZtunnelControlClient } from '../../agent/ztunnel-client.ts';
import { closeServer, listenUnix } from '../../lib/core/listen.ts';
import { silentLogger } from '../../lib/core/log.ts';
import type { ControlMessage, ControlReply } from '../../lib/mesh/control-protocol.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { startControlServer } from '../../ztunnel/control-server.ts';
import { twoNodeState, workload } from '../ztunnel/fixtures.ts';
import { ManualSource, namespace, NODE, pod, RecordingDatapath } from '../support/agent-doubles.ts';
import { eventually } from '../support/eventually.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-sync-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A ztunnel's control socket that answers as `judge` says and records every message. */
async function fakeZtunnel(t: TestContext, path: string, judge: (m: ControlMessage) => ControlReply): Promise<{ messages: ControlMessage[] }> {
  const messages: ControlMessage[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    createInterface({ input: socket }).on('line', (line) => {
      const m = JSON.parse(line) as ControlMessage;
      messages.push(m);
      socket.write(`${JSON.stringify(judge(m))}\n`);
    });
  });
  await listenUnix(server, path);
  t.after(() => {
    for (const s of sockets) s.destroy();
    return closeServer(server);
  });
  return { messages };
}

const stateA = (): MeshState => twoNodeState(8080);
const stateB = (): MeshState => ({ ...twoNodeState(8080), workloads: [...twoNodeState(8080).workloads, workload({ name: 'extra', ips: ['127.0.0.13'], node: 'n1' })] });

test('a refused delta is followed at once by a full snapshot, and counted', async (t) => {
  const path = join(await tempDir(t), 'control.sock');
  let refuseNextDelta = true;
  const ztunnel = await fakeZtunnel(t, path, (m) => {
    if (m.type === 'delta' && refuseNextDelta) {
      refuseNextDelta = false;
      return { type: 'nack', version: m.version, error: 'workloads a and b both have IP 10.0.0.1' };
    }
    return { type: 'ack', version: m.version };
  });
  const client = new ZtunnelControlClient(path, silentLogger);
  t.after(() => client.stop());
  client.start();
  await eventually('connected', () => client.status().connected);
  // An empty snapshot would open the ztunnel's traffic listeners knowing no workload.
  assert.equal(ztunnel.messages.length, 0, 'nothing is sent before the agent\'s first state');
  assert.equal(client.status().inSync, false);
  assert.equal(await client.push(stateB()), true);

  assert.equal(await client.push(stateA()), true);
  assert.deepEqual(ztunnel.messages.map((m) => m.type), ['snapshot', 'delta', 'snapshot']);
  const last = ztunnel.messages.at(-1)!;
  assert.deepEqual(last.type === 'snapshot' && last.state, stateA());
  assert.deepEqual(client.status(), { connected: true, inSync: true, ackedVersion: last.version, refused: 1 });

  // Deltas resume from what the ztunnel acknowledged.
  assert.equal(await client.push(stateB()), true);
  const delta = ztunnel.messages.at(-1)!;
  assert.deepEqual(delta.type === 'delta' && delta.upsert.workloads.map((w) => w.name), ['extra']);
});

test('a refused snapshot leaves the agent not ready, with the reason in status and /readyz, until the ztunnel takes one', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'control.sock');
  let accept = false;
  await fakeZtunnel(t, path, (m) => (accept || m.type !== 'snapshot' ? { type: 'ack', version: m.version } : { type: 'nack', version: m.version, error: 'duplicate workload uid-web' }));
  const control = new ZtunnelControlClient(path, silentLogger, { resyncMs: 20 });
  const source = new ManualSource();
  const adminSocket = join(dir, 'admin.sock');
  const agent = new NodeAgent(
    { node: NODE, kubeletCgroupRoot: dir, cgroupDriver: 'cgroupfs', ztunnelCgroup: join(dir, 'zt'), bpfDir: join(dir, 'bpf'), rootNamespace: 'istio-system', serviceCidrs: '10.96.0.0/16', adminSocket },
    { source, control, log: silentLogger, openDatapath: async () => new RecordingDatapath(), schedule: () => undefined },
  );
  await agent.start();
  t.after(() => agent.stop());
  source.deliver([namespace('demo', 'ambient'), pod('web')]);
  await agent.idle();

  const status = await eventually('the ztunnel to refuse the snapshot', async () => {
    const s = await agent.status();
    return s.ztunnel.refused > 0 && s;
  });
  assert.equal(status.ready, false);
  assert.equal(status.ztunnel.inSync, false);
  assert.match(status.notReady.join('\n'), /the ztunnel does not hold the agent's state \(the ztunnel refused snapshot version \d+: duplicate workload uid-web\)/);
  const readyz = await getJson(adminSocket, '/readyz');
  assert.equal(readyz.status, 503);
  assert.equal(readyz.body.ready, false);

  accept = true;
  await eventually('the retried snapshot taken', async () => (await agent.status()).ready);
  assert.equal((await getJson(adminSocket, '/readyz')).status, 200);
});

test('after a restart of the ztunnel or of the agent, the ztunnel holds the agent\'s state again', async (t) => {
  const path = join(await tempDir(t), 'control.sock');
  let store = new StateStore();
  let server = await startControlServer({ path, store, log: silentLogger });
  t.after(() => server.close());
  const client = new ZtunnelControlClient(path, silentLogger);
  client.start();
  await eventually('connected', () => client.status().connected);
  assert.equal(await client.push(stateA()), true);
  assert.equal(store.view?.workloads.size, 3);

  // The ztunnel restarts with nothing: the agent's reconnect snapshot brings it back.
  await server.close();
  store = new StateStore();
  server = await startControlServer({ path, store, log: silentLogger });
  await eventually('the ztunnel to hold the agent\'s state again', () => store.view?.workloads.size === 3 && client.status().inSync);

  // The agent restarts, its versions from zero: its snapshot replaces what the ztunnel held.
  client.stop();
  const restarted = new ZtunnelControlClient(path, silentLogger);
  t.after(() => restarted.stop());
  restarted.start();
  assert.equal(await eventually('the new agent connected', async () => (await restarted.push(stateB())) || undefined), true);
  assert.equal(store.view?.workloads.size, 4);
  assert.equal(store.view?.workloadByIp('127.0.0.13')?.name, 'extra');
});

function getJson(socketPath: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path }, async (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      await once(res, 'end');
      resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
    });
    req.on('error', reject);
    req.end();
  });
}

// The agent's answer to the CNI plugin (POST /cni/add on its admin socket):
// a pod's sandbox waits until the agent enrolled the pod, with the addresses
// the plugin passed while the pod's object has none; a pod that is not meshed
// starts at once; a pod meshlet refuses, or an agent that has not applied the
// cluster state yet, holds the sandbox with the reason.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { NodeAgent } from '../../agent/node-agent.ts';
import { silentLogger } from '../../lib/core/log.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { makePodCgroup, ManualSource, namespace, NODE, pod, RecordingControl, RecordingDatapath } from '../support/agent-doubles.ts';

async function fixture(t: TestContext, pods: string[]) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cni-gate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const name of pods) await makePodCgroup(dir, name);
  const order: string[] = [];
  const datapath = new RecordingDatapath(order);
  const source = new ManualSource(order);
  const adminSocket = join(dir, 'admin.sock');
  const agent = new NodeAgent(
    { node: NODE, kubeletCgroupRoot: dir, cgroupDriver: 'cgroupfs', ztunnelCgroup: join(dir, 'ztunnel'), bpfDir: join(dir, 'bpf'), rootNamespace: 'istio-system', serviceCidrs: '10.96.0.0/16', adminSocket },
    { source, control: new RecordingControl(order), log: silentLogger, openDatapath: async () => datapath, schedule: () => {} },
  );
  await agent.start();
  t.after(() => agent.stop());
  return { agent, datapath, source, adminSocket };
}

/** The plugin's call, as cni/plugin.ts makes it. */
function cniAdd(socketPath: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/cni/add', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += String(d)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** The pod as the API has it while its sandbox is made: Pending, no address yet. */
function creating(name: string, labels: Record<string, string> = {}): KubeObject {
  const p = pod(name, { labels });
  return { ...p, status: { phase: 'Pending' } };
}

test('a pod of an ambient namespace: the answer waits until the pod is enrolled, with the plugin\'s addresses', async (t) => {
  const f = await fixture(t, ['web']);
  f.source.deliver([namespace('demo', 'ambient')]);
  await f.agent.idle();
  const answer = cniAdd(f.adminSocket, { uid: 'uid-web', namespace: 'demo', name: 'web', ips: ['10.244.1.77', 'fd00:244:1::77'] });
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(f.datapath.of('enroll'), [], 'nothing enrolled before the agent sees the pod');
  f.source.deliver([namespace('demo', 'ambient'), creating('web')]);
  assert.deepEqual(await answer, { status: 200, body: { enrolled: true } });
  assert.deepEqual(f.datapath.of('enroll').flatMap((c) => c.pods.map((p) => p.ips)), [['10.244.1.77', 'fd00:244:1::77']], 'enrolled with the addresses the plugin passed');
  assert.deepEqual((await f.agent.status()).enrolledPods.map((p) => p.name), ['web']);
});

test('a pod that is not meshed starts at once; a refused one waits, saying why; an agent that has not reconciled holds every pod', async (t) => {
  const f = await fixture(t, ['plain', 'odd']);
  const early = await cniAdd(f.adminSocket, { uid: 'uid-plain', namespace: 'demo', name: 'plain', ips: ['10.244.1.80'] });
  assert.equal(early.status, 503);
  assert.match(String(early.body.error), /agent is starting/);

  f.source.deliver([namespace('demo'), creating('plain')]);
  await f.agent.idle();
  assert.deepEqual(await cniAdd(f.adminSocket, { uid: 'uid-plain', namespace: 'demo', name: 'plain', ips: ['10.244.1.80'] }), { status: 200, body: { enrolled: false } });

  f.source.deliver([namespace('demo', 'ambient'), creating('plain', { 'istio.io/dataplane-mode': 'none' }), creating('odd', { 'istio.io/dataplane-mode': 'ambeint' })]);
  await f.agent.idle();
  assert.deepEqual(await cniAdd(f.adminSocket, { uid: 'uid-plain', namespace: 'demo', name: 'plain', ips: ['10.244.1.80'] }), { status: 200, body: { enrolled: false } }, 'a pod opted out of its ambient namespace');
  const refused = await cniAdd(f.adminSocket, { uid: 'uid-odd', namespace: 'demo', name: 'odd', ips: ['10.244.1.81'] });
  assert.equal(refused.status, 403);
  assert.match(String(refused.body.error), /meshlet refuses Pod demo\/odd: .*use "ambient" or "none"/);
  assert.deepEqual(f.datapath.of('enroll'), []);
});

test('a request that is not a pod is refused with what the body must hold', async (t) => {
  const f = await fixture(t, []);
  f.source.deliver([namespace('demo', 'ambient')]);
  await f.agent.idle();
  for (const body of [[], { uid: '../../x', namespace: 'demo', name: 'p', ips: [] }, { uid: 'uid-p', namespace: 'demo', name: 'p', ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] }, { uid: 'uid-p', namespace: '', name: 'p', ips: [] }]) {
    const answer = await cniAdd(f.adminSocket, body);
    assert.equal(answer.status, 400, JSON.stringify(body));
    assert.equal(typeof answer.body.error, 'string');
  }
});

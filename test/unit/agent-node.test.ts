// The node agent's own sequencing, with its dependencies as in-memory
// doubles: the order of start-up, the ztunnel told before capture changes,
// changes folded while a reconcile runs, rejections in status, retries. Pod
// cgroups are directories of a temp tree.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeAgent } from '../../agent/node-agent.ts';
import { BpfError } from '../../lib/core/errors.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { makePodCgroup, ManualSource, namespace, NODE, pod, podCgroupDir, RecordingControl, RecordingDatapath } from '../support/agent-doubles.ts';

async function fixture(t: TestContext, pods: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-agent-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // The node's cgroup root as the kubelet (cgroupfs driver) lays it out, with the ztunnel's cgroup beside kubepods.
  const kubeletCgroupRoot = dir;
  for (const name of pods) await makePodCgroup(kubeletCgroupRoot, name);
  const order: string[] = [];
  const datapath = new RecordingDatapath(order);
  const control = new RecordingControl(order);
  const source = new ManualSource(order);
  const retries: { run: () => void; delayMs: number }[] = [];
  const agent = new NodeAgent(
    { node: NODE, kubeletCgroupRoot, cgroupDriver: 'cgroupfs', ztunnelCgroup: join(dir, 'ztunnel'), bpfDir: join(dir, 'bpf'), rootNamespace: 'istio-system', serviceCidrs: '10.96.0.0/16', adminSocket: join(dir, 'admin.sock') },
    {
      source, control, log: silentLogger,
      openDatapath: async () => {
        order.push('openDatapath');
        return datapath;
      },
      schedule: (run, delayMs) => retries.push({ run, delayMs }),
    },
  );
  await agent.start();
  t.after(() => agent.stop());
  const pushedNames = () => control.pushes.map((s) => s.workloads.map((w) => w.name).sort());
  const enrolledNames = async () => (await agent.status()).enrolledPods.map((p) => p.name).sort();
  const podPath = (name: string): string => podCgroupDir(kubeletCgroupRoot, name);
  return { agent, datapath, control, source, order, retries, kubeletCgroupRoot, podPath, pushedNames, enrolledNames };
}

test('start-up order, then each change reaches the ztunnel before capture changes', async (t) => {
  const f = await fixture(t, ['web']);
  assert.deepEqual(f.order, ['openDatapath', 'attachZtunnel', 'learnAttachments', 'enrolledCgroupIds', 'watchDrops', 'control.start', 'source.start']);
  assert.deepEqual(f.datapath.of('attachZtunnel'), [{ op: 'attachZtunnel', cgroupPath: join(f.kubeletCgroupRoot, 'ztunnel') }]);

  f.order.length = 0;
  f.source.deliver([namespace('demo', 'ambient'), pod('web')]);
  await f.agent.idle();
  assert.deepEqual(f.order, ['push', 'enroll']);
  assert.deepEqual(f.pushedNames(), [['web']]);
  assert.deepEqual(await f.enrolledNames(), ['web']);

  f.order.length = 0;
  f.source.deliver([namespace('demo'), pod('web')]);
  await f.agent.idle();
  assert.deepEqual(f.order, ['push', 'unenroll'], 'the ztunnel learns the pod left before capture stops');
});

test('changes that arrive during a reconcile fold into one next reconcile, with the newest state', async (t) => {
  const f = await fixture(t, ['a', 'b', 'c']);
  const held = f.control.holdNextPush();
  f.source.deliver([namespace('demo', 'ambient'), pod('a')]);
  await held.entered;
  f.source.deliver([namespace('demo', 'ambient'), pod('a'), pod('b')]);
  f.source.deliver([namespace('demo', 'ambient'), pod('a'), pod('b'), pod('c')]);
  held.release();
  await f.agent.idle();

  assert.deepEqual(f.pushedNames(), [['a'], ['a', 'b', 'c']]);
  assert.deepEqual(f.datapath.of('enroll').map((c) => c.pods.map((p) => p.cgroupPath).sort()), [
    [f.podPath('a')],
    [f.podPath('b'), f.podPath('c')],
  ]);
  assert.deepEqual(await f.enrolledNames(), ['a', 'b', 'c']);
});

test('status names rejected objects and unreadable documents, the source and its sync, and keeps the rest working', async (t) => {
  const f = await fixture(t, ['web']);
  assert.deepEqual((await f.agent.status()).source, { name: 'manual', synced: false });

  f.source.deliver(
    [namespace('demo', 'ambient'), pod('web'), pod('bad', { annotations: { 'meshlet.io/exclude-outbound-ports': 'postgres' } })],
    [{ object: 'v1 Pod demo/over-cap', reason: 'not a YAML mapping' }],
  );
  await f.agent.idle();
  const status = await f.agent.status();
  assert.deepEqual(status.rejected.map((r) => r.object), ['Pod demo/bad', 'v1 Pod demo/over-cap']);
  assert.match(status.rejected[0]!.reason, /comma-separated numbers/);
  assert.equal(status.rejected[1]!.reason, 'not a YAML mapping');
  assert.ok(status.rejected.every((r) => !Number.isNaN(Date.parse(r.since))));
  assert.deepEqual(status.source, { name: 'manual', synced: true });
  assert.deepEqual(status.enrolledPods.map((p) => p.name), ['web']);
  assert.deepEqual(status.counts, { workloads: 1, services: 0, nodes: 0 });
  assert.equal(status.lastError, undefined);
  assert.ok(status.reconciledAt);
});

test('a pod the kernel\'s tables cannot hold shows among the rejected objects; the agent stays ready', async (t) => {
  const f = await fixture(t, ['web', 'db']);
  f.datapath.fillTablesFor(f.podPath('db'), 'excluded_ports', { needed: 256, free: 10, capacity: 16384 });
  f.source.deliver([namespace('demo', 'ambient'), pod('web'), pod('db')]);
  await f.agent.idle();
  const status = await f.agent.status();
  assert.deepEqual(status.rejected.map((r) => [r.object, r.rule]), [['Pod demo/db', 'no-room']]);
  assert.match(status.rejected[0]!.reason, /excluded_ports has room for 10 more of its 16384 entries and the pod needs 256/);
  assert.deepEqual(status.enrolledPods.map((p) => p.name), ['web']);
  assert.deepEqual([status.ready, status.lastError], [true, undefined]);
});

test('a failed reconcile is retried with its input, and the retry succeeds', async (t) => {
  const f = await fixture(t, ['web']);
  f.datapath.failNext('enroll', new BpfError('bpftool batch failed'));
  f.source.deliver([namespace('demo', 'ambient'), pod('web')]);
  await f.agent.idle();
  let status = await f.agent.status();
  assert.match(status.lastError ?? '', /bpftool batch failed/);
  assert.equal(status.reconciledAt, undefined);
  assert.deepEqual(status.enrolledPods, []);
  assert.deepEqual(f.retries.map((r) => r.delayMs), [1000]);

  f.retries.shift()!.run();
  await f.agent.idle();
  status = await f.agent.status();
  assert.equal(status.lastError, undefined);
  assert.ok(status.reconciledAt);
  assert.deepEqual(status.enrolledPods.map((p) => p.name), ['web']);
  assert.equal(f.datapath.of('enroll').length, 2);
  assert.deepEqual(f.retries, [], 'a success schedules nothing');
});

test('a retry never brings back state older than what arrived since', async (t) => {
  const f = await fixture(t, ['web', 'db']);
  f.datapath.failNext('enroll', new BpfError('bpftool batch failed'));
  f.source.deliver([namespace('demo', 'ambient'), pod('web')]);
  await f.agent.idle();
  f.source.deliver([namespace('demo', 'ambient'), pod('db')]);
  await f.agent.idle();
  assert.deepEqual(await f.enrolledNames(), ['db']);

  f.retries.shift()!.run();
  await f.agent.idle();
  assert.deepEqual(await f.enrolledNames(), ['db']);
  assert.deepEqual(f.pushedNames().at(-1), ['db']);
});

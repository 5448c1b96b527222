// Enrollment's own decisions: which pods of which node it captures, when it
// lets go, what it re-enrolls, and what it takes over after a restart; and
// where it finds a pod's cgroup, in the kubelet's layout for either driver.
// The datapath is a recording double; pod cgroups are directories of a temp
// tree laid out as the kubelet lays them out (a directory's inode is its id).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Enrollment } from '../../agent/enrollment.ts';
import type { CgroupDriver, QosClass } from '../../lib/cluster/cgroup-layout.ts';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import type { CgroupDriverSetting } from '../../lib/config/agent.ts';
import { ConfigError } from '../../lib/core/errors.ts';
import { silentLogger } from '../../lib/core/log.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { makePodCgroup, namespace, NODE, peerAuthentication, pod, podCgroupDir, RecordingDatapath } from '../support/agent-doubles.ts';

const EXCLUDE = 'meshlet.io/exclude-outbound-ports';

async function fixture(t: TestContext, cgroupDriver: CgroupDriverSetting = 'cgroupfs') {
  const root = await mkdtemp(join(tmpdir(), 'meshlet-enroll-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const datapath = new RecordingDatapath();
  const enrollment = new Enrollment({ datapath, kubeletCgroupRoot: root, cgroupDriver, node: NODE, log: silentLogger });
  const cluster = new ClusterState();
  const state = (objects: KubeObject[]): MeshState => {
    const { state: s, rejected } = cluster.update(objects);
    assert.deepEqual(rejected, []);
    return s;
  };
  const layout: CgroupDriver = cgroupDriver === 'auto' ? 'cgroupfs' : cgroupDriver;
  /** Creates the pod's cgroup, as the kubelet would; returns its id. */
  const cgroup = (name: string, qos?: QosClass, driver: CgroupDriver = layout): Promise<string> => makePodCgroup(root, name, qos, driver);
  const path = (name: string, qos?: QosClass, driver: CgroupDriver = layout): string => podCgroupDir(root, name, qos, driver);
  const names = () => enrollment.enrolled().map((p) => p.name).sort();
  return { root, datapath, enrollment, state, cgroup, path, names };
}

test('enrolls the enrolled pods of this node only, each with its cgroup id', async (t) => {
  const f = await fixture(t);
  const webId = await f.cgroup('web');
  await f.cgroup('plain');
  const changed = await f.enrollment.reconcile(f.state([
    namespace('demo', 'ambient'),
    pod('web'),
    pod('elsewhere', { node: 'node-2' }),
    namespace('other'),
    { ...pod('plain'), metadata: { name: 'plain', namespace: 'other', uid: 'uid-plain' } },
  ]));
  assert.deepEqual(changed, { enrolled: 1, unenrolled: 0 });
  assert.deepEqual(f.datapath.of('enroll').map((c) => c.pods.map((p) => p.cgroupPath)), [[f.path('web')]]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.namespace, p.name, p.uid, p.cgroupPath, p.cgroupId]), [['demo', 'web', 'uid-web', f.path('web'), webId]]);
  assert.equal(f.enrollment.byCgroupId(BigInt(webId))?.name, 'web');
});

test('a pod labelled istio.io/dataplane-mode=none stays out, and leaves when it gets the label', async (t) => {
  const f = await fixture(t);
  await f.cgroup('web');
  await f.cgroup('db');
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web'), pod('db', { labels: { 'istio.io/dataplane-mode': 'none' } })]));
  assert.deepEqual(f.names(), ['web']);
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web', { labels: { 'istio.io/dataplane-mode': 'none' } }), pod('db', { labels: { 'istio.io/dataplane-mode': 'none' } })]));
  assert.deepEqual(f.names(), []);
  assert.deepEqual(f.datapath.of('unenroll').map((c) => c.cgroupPaths), [[f.path('web')]]);
});

test('removing the namespace label un-enrolls first: nothing else changes before the datapath has let go', async (t) => {
  const f = await fixture(t);
  await f.cgroup('web');
  await f.cgroup('db');
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web')]));
  const calls = f.datapath.calls.length;

  // web leaves and db arrives in one reconcile: the unenroll goes out before the enroll.
  const next = f.state([namespace('demo'), pod('web'), pod('db', { labels: { 'istio.io/dataplane-mode': 'ambient' } })]);
  f.datapath.failNext('unenroll', new Error('bpftool failed'));
  await assert.rejects(f.enrollment.reconcile(next), /bpftool failed/);
  assert.deepEqual(f.datapath.calls.slice(calls).map((c) => c.op), ['unenroll']);
  assert.deepEqual(f.names(), ['web'], 'a failed un-enroll leaves the pod enrolled, to be tried again');

  assert.deepEqual(await f.enrollment.reconcile(next), { enrolled: 1, unenrolled: 1 });
  assert.deepEqual(f.datapath.calls.slice(calls).map((c) => c.op), ['unenroll', 'unenroll', 'enroll']);
  assert.deepEqual(f.datapath.of('unenroll').at(-1)!.cgroupPaths, [f.path('web')]);
  assert.deepEqual(f.names(), ['db']);
});

test('a pod whose cgroup does not exist yet is enrolled on the next reconcile after it appears', async (t) => {
  const f = await fixture(t);
  const state = f.state([namespace('demo', 'ambient'), pod('web')]);
  assert.deepEqual(await f.enrollment.reconcile(state), { enrolled: 0, unenrolled: 0 });
  assert.deepEqual(f.datapath.of('enroll'), []);
  assert.deepEqual(f.names(), []);

  const id = await f.cgroup('web');
  assert.deepEqual(await f.enrollment.reconcile(state), { enrolled: 1, unenrolled: 0 });
  assert.deepEqual(f.enrollment.enrolled().map((p) => p.cgroupId), [id]);
});

test('changed excluded ports or inbound mode re-enroll that pod alone, keeping its since', async (t) => {
  const f = await fixture(t);
  await f.cgroup('web');
  await f.cgroup('db');
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web'), pod('db')]));
  assert.equal(f.datapath.of('enroll').length, 1);
  const since = f.enrollment.enrolled().find((p) => p.name === 'db')!.since;

  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web'), pod('db', { annotations: { [EXCLUDE]: '5432' } })]));
  const ports = f.datapath.of('enroll')[1]!.pods;
  assert.deepEqual(ports.map((p) => [p.cgroupPath, p.excludeOutboundPorts]), [[f.path('db'), [5432]]]);

  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web'), pod('db', { annotations: { [EXCLUDE]: '5432' } }), peerAuthentication('web-strict', 'STRICT', 'web')]));
  const strict = f.datapath.of('enroll')[2]!.pods;
  assert.deepEqual(strict.map((p) => [p.cgroupPath, p.inbound?.mode]), [[f.path('web'), 'STRICT']]);

  const unchanged = await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web'), pod('db', { annotations: { [EXCLUDE]: '5432' } }), peerAuthentication('web-strict', 'STRICT', 'web')]));
  assert.deepEqual(unchanged, { enrolled: 0, unenrolled: 0 }, 'nothing changed: nothing written');
  assert.equal(f.datapath.of('enroll').length, 3);
  assert.deepEqual(f.datapath.of('unenroll'), []);
  const db = f.enrollment.enrolled().find((p) => p.name === 'db')!;
  assert.equal(db.since, since);
  assert.deepEqual(db.excludeOutboundPorts, [5432]);
  assert.equal(f.enrollment.enrolled().find((p) => p.name === 'web')!.inbound?.mode, 'STRICT');
});

test('a pod the kernel\'s tables have no room for is refused, not enrolled, and shown; it enrolls once room frees', async (t) => {
  const f = await fixture(t);
  await f.cgroup('web');
  await f.cgroup('db');
  f.datapath.fillTablesFor(f.path('db'));
  const objects = [namespace('demo', 'ambient'), pod('web'), pod('db', { annotations: { [EXCLUDE]: '5432,6379,11211' } })];
  assert.deepEqual(await f.enrollment.reconcile(f.state(objects)), { enrolled: 1, unenrolled: 0 }, 'one pod without room does not stop the others');
  assert.deepEqual(f.names(), ['web']);
  const [refused] = f.enrollment.refused();
  assert.deepEqual([refused?.object, refused?.rule], ['Pod demo/db', 'no-room']);
  assert.match(refused!.reason, /BPF table excluded_ports has room for 1 more of its 16384 entries and the pod needs 3; it is not enrolled \(not captured\).*meshlet\.io\/exclude-outbound-ports/);

  // Tried again on every reconcile: the refusal stands, first seen where it was.
  await f.enrollment.reconcile(f.state(objects));
  assert.deepEqual(f.enrollment.refused().map((r) => r.since), [refused!.since]);
  assert.deepEqual(f.datapath.of('enroll').map((c) => c.pods.map((p) => p.cgroupPath).sort()), [[f.path('db'), f.path('web')], [f.path('db')]]);

  f.datapath.makeRoom(f.path('db'));
  assert.deepEqual(await f.enrollment.reconcile(f.state(objects)), { enrolled: 1, unenrolled: 0 });
  assert.deepEqual(f.names(), ['db', 'web']);
  assert.deepEqual(f.enrollment.refused(), []);
});

test('an enrolled pod whose update has no room keeps what it had; a refused pod that leaves is no longer shown', async (t) => {
  const f = await fixture(t);
  await f.cgroup('db');
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('db', { annotations: { [EXCLUDE]: '5432' } })]));
  f.datapath.fillTablesFor(f.path('db'));
  assert.deepEqual(await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('db', { annotations: { [EXCLUDE]: '5432,6379,11211' } })])), { enrolled: 0, unenrolled: 0 });
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.name, p.excludeOutboundPorts]), [['db', [5432]]], 'the kernel keeps its previous entries, and so does the record');
  assert.match(f.enrollment.refused()[0]!.reason, /its update is not applied; the kernel keeps its previous entries/);

  // Back to what it had: nothing to write, nothing refused.
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('db', { annotations: { [EXCLUDE]: '5432' } })]));
  assert.deepEqual(f.enrollment.refused(), []);

  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('db', { annotations: { [EXCLUDE]: '5432,6379,11211' } })]));
  assert.equal(f.enrollment.refused().length, 1);
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient')]));
  assert.deepEqual([f.names(), f.enrollment.refused()], [[], []]);
});

test('a pod is enrolled with its addresses, and re-enrolled when they change', async (t) => {
  const f = await fixture(t);
  await f.cgroup('web');
  const web = pod('web');
  const status = web.status as { podIP: string };
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), web]));
  assert.deepEqual(f.datapath.of('enroll').map((c) => c.pods.map((p) => p.ips)), [[[status.podIP]]]);

  const dualStack = { ...web, status: { ...status, podIP: '10.244.1.200', podIPs: [{ ip: '10.244.1.200' }, { ip: 'fd00:10:244:1::c8' }] } };
  assert.deepEqual(await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), dualStack])), { enrolled: 1, unenrolled: 0 });
  assert.deepEqual(f.datapath.of('enroll').at(-1)!.pods.map((p) => p.ips), [['10.244.1.200', 'fd00:10:244:1::c8']]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => p.ips), [['10.244.1.200', 'fd00:10:244:1::c8']]);
  assert.deepEqual(f.datapath.of('unenroll'), [], 'updated in place');
});

test('adopt() takes over the pods the pinned maps hold: attachments learnt first, nothing attached or detached', async (t) => {
  const f = await fixture(t);
  const webId = await f.cgroup('web');
  await f.cgroup('stray');
  f.datapath.pinned = [BigInt(webId), 999_999_999n];

  await f.enrollment.adopt();
  assert.deepEqual(f.datapath.calls, [{ op: 'learnAttachments', root: join(f.root, 'kubepods') }, { op: 'enrolledCgroupIds' }]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.uid, p.cgroupPath, p.cgroupId]), [['uid-web', f.path('web'), webId]]);

  // The first reconcile brings the adopted pod's maps up to date in place: no un-enroll, same since.
  const since = f.enrollment.enrolled()[0]!.since;
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web')]));
  assert.deepEqual(f.datapath.of('unenroll'), []);
  assert.deepEqual(f.datapath.of('enroll').map((c) => c.pods.map((p) => p.cgroupPath)), [[f.path('web')]]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.namespace, p.name, p.since]), [['demo', 'web', since]]);
});

test('adopt() with no pod cgroup root yet adopts nothing', async (t) => {
  const f = await fixture(t);
  await rm(f.root, { recursive: true });
  f.datapath.pinned = [1n];
  await f.enrollment.adopt();
  assert.deepEqual(f.enrollment.enrolled(), []);
});

test('pod cgroups are found in the kubelet\'s layout for both drivers, Guaranteed pods directly under kubepods', async (t) => {
  const expected: Record<CgroupDriver, Record<string, string>> = {
    systemd: {
      web: 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poduid_web.slice',
      db: 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poduid_db.slice',
      cache: 'kubepods.slice/kubepods-poduid_cache.slice',
    },
    cgroupfs: {
      web: 'kubepods/besteffort/poduid-web',
      db: 'kubepods/burstable/poduid-db',
      cache: 'kubepods/poduid-cache',
    },
  };
  for (const driver of ['systemd', 'cgroupfs'] as const) {
    await t.test(driver, async (t) => {
      const f = await fixture(t, driver);
      const classes: [string, QosClass][] = [['web', 'BestEffort'], ['db', 'Burstable'], ['cache', 'Guaranteed']];
      for (const [name, qos] of classes) await f.cgroup(name, qos);
      const changed = await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), ...classes.map(([name, qosClass]) => pod(name, { qosClass }))]));
      assert.deepEqual(changed, { enrolled: 3, unenrolled: 0 });
      const paths = Object.fromEntries(f.enrollment.enrolled().map((p) => [p.name, p.cgroupPath]));
      assert.deepEqual(paths, Object.fromEntries(Object.entries(expected[driver]).map(([name, rel]) => [name, join(f.root, rel)])));
      for (const p of f.enrollment.enrolled()) assert.equal(p.cgroupId, String((await stat(p.cgroupPath, { bigint: true })).ino));
    });
  }
});

test('auto finds the driver from what exists under the root', async (t) => {
  for (const driver of ['systemd', 'cgroupfs'] as const) {
    const f = await fixture(t, 'auto');
    await f.cgroup('web', 'Burstable', driver);
    await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web', { qosClass: 'Burstable' })]));
    assert.deepEqual(f.enrollment.enrolled().map((p) => p.cgroupPath), [f.path('web', 'Burstable', driver)], driver);
  }
});

test('auto refuses pods to enroll, naming both flags, when the root holds neither or both kubepods trees', async (t) => {
  const neither = await fixture(t, 'auto');
  assert.deepEqual(await neither.enrollment.reconcile(neither.state([namespace('demo'), pod('web')])), { enrolled: 0, unenrolled: 0 }, 'nothing to enroll: nothing to tell');
  const refused = (err: unknown): boolean => err instanceof ConfigError && /--cgroup-driver/.test(err.message) && /--kubelet-cgroup-root/.test(err.message);
  await assert.rejects(neither.enrollment.reconcile(neither.state([namespace('demo', 'ambient'), pod('web')])), (err: unknown) => refused(err) && /neither kubepods.slice/.test((err as Error).message));
  assert.deepEqual(neither.datapath.of('enroll'), []);

  const both = await fixture(t, 'auto');
  await mkdir(join(both.root, 'kubepods.slice'));
  await both.cgroup('web', 'BestEffort', 'cgroupfs');
  await assert.rejects(both.enrollment.reconcile(both.state([namespace('demo', 'ambient'), pod('web')])), (err: unknown) => refused(err) && /both/.test((err as Error).message));
  assert.deepEqual(both.datapath.of('enroll'), []);
});

test('a refused driver still lets go of pods that leave', async (t) => {
  const f = await fixture(t, 'auto');
  f.datapath.pinned = [BigInt(await f.cgroup('web', 'BestEffort', 'systemd'))];
  await f.enrollment.adopt();
  assert.deepEqual(f.enrollment.enrolled().map((p) => p.uid), ['uid-web']);
  // The kubelet's tree is gone (a reconfigured node): nothing can be found, but web must still leave.
  await rm(join(f.root, 'kubepods.slice'), { recursive: true });
  await assert.rejects(f.enrollment.reconcile(f.state([namespace('demo'), pod('web'), pod('db', { labels: { 'istio.io/dataplane-mode': 'ambient' } })])), ConfigError);
  assert.deepEqual(f.datapath.of('unenroll').map((c) => c.cgroupPaths), [[f.path('web', 'BestEffort', 'systemd')]]);
  assert.deepEqual(f.enrollment.enrolled(), []);
});

test('a pod whose QoS class changed is found under its new class, and capture follows it', async (t) => {
  const f = await fixture(t, 'systemd');
  await f.cgroup('web', 'BestEffort');
  await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web', { qosClass: 'BestEffort' })]));
  const since = f.enrollment.enrolled()[0]!.since;

  await rm(f.path('web', 'BestEffort'), { recursive: true });
  const id = await f.cgroup('web', 'Burstable');
  assert.deepEqual(await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web', { qosClass: 'Burstable' })])), { enrolled: 1, unenrolled: 0 });
  assert.deepEqual(f.datapath.calls.map((c) => c.op), ['enroll', 'unenroll', 'enroll']);
  assert.deepEqual(f.datapath.of('unenroll').map((c) => c.cgroupPaths), [[f.path('web', 'BestEffort')]]);
  assert.deepEqual(f.datapath.of('enroll').at(-1)!.pods.map((p) => p.cgroupPath), [f.path('web', 'Burstable')]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.cgroupPath, p.cgroupId, p.since]), [[f.path('web', 'Burstable'), id, since]]);

  assert.deepEqual(await f.enrollment.reconcile(f.state([namespace('demo', 'ambient'), pod('web', { qosClass: 'Burstable' })])), { enrolled: 0, unenrolled: 0 }, 'found once: not looked up again');
});

test('adopt() finds pinned pods under both layouts\' trees, and nothing outside a pod cgroup\'s place', async (t) => {
  const f = await fixture(t, 'auto');
  const a = await f.cgroup('a', 'BestEffort', 'systemd');
  const b = await f.cgroup('b', 'Guaranteed', 'cgroupfs');
  const c = await f.cgroup('c', 'Burstable', 'cgroupfs');
  const dirId = async (dir: string): Promise<bigint> => {
    await mkdir(dir, { recursive: true });
    return (await stat(dir, { bigint: true })).ino;
  };
  const strays = [
    await dirId(join(f.root, 'ztunnel')),
    await dirId(join(f.root, 'kubepods', 'burstable', 'not-a-pod')),
    await dirId(join(f.path('c', 'Burstable', 'cgroupfs'), 'container')),
  ];
  f.datapath.pinned = [BigInt(a), BigInt(b), BigInt(c), ...strays];

  await f.enrollment.adopt();
  assert.deepEqual(f.datapath.calls, [
    { op: 'learnAttachments', root: join(f.root, 'kubepods.slice') },
    { op: 'learnAttachments', root: join(f.root, 'kubepods') },
    { op: 'enrolledCgroupIds' },
  ]);
  assert.deepEqual(f.enrollment.enrolled().map((p) => [p.uid, p.cgroupPath, p.cgroupId]).sort(), [
    ['uid-a', f.path('a', 'BestEffort', 'systemd'), a],
    ['uid-b', f.path('b', 'Guaranteed', 'cgroupfs'), b],
    ['uid-c', f.path('c', 'Burstable', 'cgroupfs'), c],
  ]);
});

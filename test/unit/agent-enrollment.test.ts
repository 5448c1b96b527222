// Enrollment's own decisions: which pods of which node it captures, when it
// lets go, what it re-enrolls, and what it takes over after a restart. The
// datapath is a recording double; pod cgroups are directories of a temp tree
// (Enrollment only stats <podCgroupRoot>/<uid>; a directory's inode is its id).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Enrollment } from '../../agent/enrollment.ts';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { silentLogger } from '../../lib/core/log.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { namespace, NODE, peerAuthentication, pod, RecordingDatapath } from '../support/agent-doubles.ts';

const EXCLUDE = 'meshlet.io/exclude-outbound-ports';

async function fixture(t: TestContext) {
  const root = await mkdtemp(join(tmpdir(), 'meshlet-enroll-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const datapath = new RecordingDatapath();
  const enrollment = new Enrollment({ datapath, podCgroupRoot: root, node: NODE, log: silentLogger });
  const cluster = new ClusterState();
  const state = (objects: KubeObject[]): MeshState => {
    const { state: s, rejected } = cluster.update(objects);
    assert.deepEqual(rejected, []);
    return s;
  };
  /** Creates the pod's cgroup, as the kubelet would; returns its id. */
  const cgroup = async (name: string): Promise<string> => {
    await mkdir(join(root, `uid-${name}`));
    return String((await stat(join(root, `uid-${name}`), { bigint: true })).ino);
  };
  const path = (name: string): string => join(root, `uid-${name}`);
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

test('adopt() takes over the pods the pinned maps hold: attachments learnt first, nothing attached or detached', async (t) => {
  const f = await fixture(t);
  const webId = await f.cgroup('web');
  await f.cgroup('stray');
  f.datapath.pinned = [BigInt(webId), 999_999_999n];

  await f.enrollment.adopt();
  assert.deepEqual(f.datapath.calls, [{ op: 'learnAttachments', root: f.root }, { op: 'enrolledCgroupIds' }]);
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

// The kubelet's pod cgroup layout: QoS classes as ComputePodQOS computes
// them, paths for both drivers as kubelet names them, hostile UIDs refused,
// and the inverse (driver detection, resolution, listing) on temporary trees.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  computeQosClass, detectCgroupDriver, listPodCgroups, podCgroupPath, podCgroupPathOf, PodCgroupError, podQosClass, podUidOfCgroup, podUidProblem, resolvePodCgroupDir, QOS_CLASSES, type QosClass,
} from '../../lib/cluster/cgroup-layout.ts';
import { parseQuantity, QuantityError } from '../../lib/cluster/quantity.ts';

const UID = '6f1c9a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
const UNIT = '6f1c9a2e_3b4d_4e5f_8a9b_0c1d2e3f4a5b';

type Resources = V1Container['resources'];
const pod = (containers: Resources[], extra: { init?: Resources[]; podLevel?: Resources; qosClass?: string } = {}): V1Pod => ({
  metadata: { uid: UID, name: 'p', namespace: 'default' },
  spec: {
    containers: containers.map((resources, i) => ({ name: `c${i}`, ...(resources ? { resources } : {}) })),
    ...(extra.init ? { initContainers: extra.init.map((resources, i) => ({ name: `i${i}`, ...(resources ? { resources } : {}) })) } : {}),
    ...(extra.podLevel ? { resources: extra.podLevel } : {}),
  },
  ...(extra.qosClass ? { status: { qosClass: extra.qosClass } } : {}),
});

test('quantities parse to exact nano-units', () => {
  const table: [string | number, bigint][] = [
    ['1', 1_000_000_000n], ['1000m', 1_000_000_000n], ['0.5', 500_000_000n], ['500m', 500_000_000n], ['.5', 500_000_000n],
    ['128Mi', 128n * 1024n * 1024n * 1_000_000_000n], ['1Gi', 1024n ** 3n * 1_000_000_000n], ['1G', 1_000_000_000n * 1_000_000_000n],
    ['1e3', 1000n * 1_000_000_000n], ['1E-3', 1_000_000n], ['1k', 1000n * 1_000_000_000n], ['5n', 5n], ['1.5n', 2n], [2, 2_000_000_000n], ['+1', 1_000_000_000n],
  ];
  for (const [text, nanos] of table) assert.equal(parseQuantity(text), nanos, String(text));
  for (const bad of ['', 'abc', '1Kb', '1.2.3', 'm', '--1']) assert.throws(() => parseQuantity(bad), QuantityError, bad);
});

test('QoS classes as ComputePodQOS computes them', () => {
  const g = { limits: { cpu: '1', memory: '1Gi' } };
  const table: [string, V1Pod, QosClass][] = [
    ['no resources at all', pod([undefined, {}]), 'BestEffort'],
    ['only an unrelated resource', pod([{ requests: { 'ephemeral-storage': '1Gi' } }]), 'BestEffort'],
    ['zero requests count as none', pod([{ requests: { cpu: '0', memory: '0' } }]), 'BestEffort'],
    ['limits only: requests default to them', pod([g]), 'Guaranteed'],
    ['requests equal to limits in other units', pod([{ requests: { cpu: '1000m', memory: '1024Mi' }, limits: { cpu: '1', memory: '1Gi' } }]), 'Guaranteed'],
    ['every container limited', pod([g, { limits: { cpu: '500m', memory: '64Mi' } }]), 'Guaranteed'],
    ['one container without limits', pod([g, undefined]), 'Burstable'],
    ['request below limit', pod([{ requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '1', memory: '1Gi' } }]), 'Burstable'],
    ['cpu limit only', pod([{ limits: { cpu: '1' } }]), 'Burstable'],
    ['requests only', pod([{ requests: { memory: '64Mi' } }]), 'Burstable'],
    ['an init container without limits', pod([g], { init: [{ requests: { cpu: '100m' } }] }), 'Burstable'],
    ['init containers limited too', pod([g], { init: [g] }), 'Guaranteed'],
    ['pod-level resources decide', pod([undefined], { podLevel: { limits: { cpu: '2', memory: '2Gi' } } }), 'Guaranteed'],
    ['pod-level requests only', pod([g], { podLevel: { requests: { cpu: '1' } } }), 'Burstable'],
  ];
  for (const [what, p, qos] of table) assert.equal(computeQosClass(p), qos, what);
});

test('status.qosClass wins when the API server set it', () => {
  assert.equal(podQosClass(pod([undefined], { qosClass: 'Guaranteed' })), 'Guaranteed');
  assert.equal(podQosClass(pod([{ limits: { cpu: '1', memory: '1Gi' } }], { qosClass: 'Burstable' })), 'Burstable');
  assert.equal(podQosClass(pod([undefined], { qosClass: 'Bogus' })), 'BestEffort');
});

test('pod cgroup paths for both drivers, as kubelet names them', () => {
  const table: [QosClass, 'systemd' | 'cgroupfs', string][] = [
    ['Guaranteed', 'systemd', `kubepods.slice/kubepods-pod${UNIT}.slice`],
    ['Burstable', 'systemd', `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UNIT}.slice`],
    ['BestEffort', 'systemd', `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UNIT}.slice`],
    ['Guaranteed', 'cgroupfs', `kubepods/pod${UID}`],
    ['Burstable', 'cgroupfs', `kubepods/burstable/pod${UID}`],
    ['BestEffort', 'cgroupfs', `kubepods/besteffort/pod${UID}`],
  ];
  for (const [qos, driver, path] of table) assert.equal(podCgroupPath(UID, qos, driver), path, `${qos} ${driver}`);
  assert.equal(podCgroupPathOf(pod([{ requests: { cpu: '1' } }]), 'systemd'), `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UNIT}.slice`);
});

test('a UID that is not a plain token never becomes a path', () => {
  const hostile = ['../x', '..', '.', '', 'a/b', '/abs', 'a_b', 'a..b', 'a-', '-a', 'a--b', 'a b', 'a\nb', 'a\0b', 'x'.repeat(65), '6f1c9a2e-../../etc'];
  for (const uid of hostile) {
    assert.ok(podUidProblem(uid), `refused: ${JSON.stringify(uid)}`);
    for (const driver of ['systemd', 'cgroupfs'] as const) {
      assert.throws(() => podCgroupPath(uid, 'Burstable', driver), (err: unknown) => err instanceof PodCgroupError && err.code === 'MESHLET_POD_CGROUP' && /UID|uid/.test(err.message), `${driver} ${JSON.stringify(uid)}`);
    }
  }
  assert.match(podUidProblem(undefined)!, /no metadata.uid/);
  for (const ok of [UID, 'uid-a', 'ABC123']) assert.equal(podUidProblem(ok), undefined, ok);
});

test('the driver is detected from the kubelet root, and a pod cgroup resolved under it', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'meshlet-cgroup-layout-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const systemd = join(root, 'systemd');
  const cgroupfs = join(root, 'cgroupfs');
  const empty = join(root, 'empty');
  await mkdir(join(systemd, podCgroupPath(UID, 'Burstable', 'systemd')), { recursive: true });
  await mkdir(join(cgroupfs, podCgroupPath(UID, 'Guaranteed', 'cgroupfs')), { recursive: true });
  await mkdir(empty);

  assert.equal(await detectCgroupDriver(systemd), 'systemd');
  assert.equal(await detectCgroupDriver(cgroupfs), 'cgroupfs');
  assert.equal(await detectCgroupDriver(empty), undefined);

  assert.deepEqual(await resolvePodCgroupDir(systemd, UID, 'Burstable'), { dir: join(systemd, 'kubepods.slice/kubepods-burstable.slice', `kubepods-burstable-pod${UNIT}.slice`), driver: 'systemd', qos: 'Burstable' });
  assert.deepEqual(await resolvePodCgroupDir(cgroupfs, UID, 'Guaranteed', 'cgroupfs'), { dir: join(cgroupfs, 'kubepods', `pod${UID}`), driver: 'cgroupfs', qos: 'Guaranteed' });
  // A QoS class computed differently from the kubelet's still finds the pod.
  assert.equal((await resolvePodCgroupDir(cgroupfs, UID, 'BestEffort')).qos, 'Guaranteed');

  await assert.rejects(resolvePodCgroupDir(empty, UID, 'Burstable'), (err: unknown) => err instanceof PodCgroupError && /no kubepods.slice or kubepods/.test(err.message));
  await assert.rejects(resolvePodCgroupDir(systemd, 'aaaaaaaa-0000-0000-0000-000000000000', 'Burstable'), (err: unknown) => err instanceof PodCgroupError && /has no cgroup under/.test(err.message));
  await assert.rejects(resolvePodCgroupDir(systemd, '../x', 'Burstable'), PodCgroupError);

  await mkdir(join(systemd, 'kubepods'));
  await assert.rejects(detectCgroupDriver(systemd), (err: unknown) => err instanceof PodCgroupError && /both/.test(err.message));
});

test('a pod cgroup\'s name gives back its UID, and nothing else does', () => {
  for (const driver of ['systemd', 'cgroupfs'] as const) {
    for (const qos of QOS_CLASSES) {
      const name = podCgroupPath(UID, qos, driver).split('/').at(-1)!;
      assert.equal(podUidOfCgroup(name, qos, driver), UID, `${qos} ${driver}`);
    }
  }
  const notPods: [string, QosClass, 'systemd' | 'cgroupfs'][] = [
    ['burstable', 'Guaranteed', 'cgroupfs'], ['besteffort', 'Guaranteed', 'cgroupfs'], ['pod', 'Burstable', 'cgroupfs'], ['pod..', 'Burstable', 'cgroupfs'],
    ['kubepods-burstable.slice', 'Guaranteed', 'systemd'], [`kubepods-pod${UID}.slice`, 'Guaranteed', 'systemd'], [`kubepods-burstable-pod${UNIT}.slice`, 'BestEffort', 'systemd'],
    [`kubepods-besteffort-pod${UNIT}`, 'BestEffort', 'systemd'], ['cri-containerd-0123.scope', 'Burstable', 'systemd'],
  ];
  for (const [name, qos, driver] of notPods) assert.equal(podUidOfCgroup(name, qos, driver), undefined, `${name} (${qos}, ${driver})`);
});

test('listing finds every pod cgroup of both layouts, and reads nothing deeper or outside kubepods', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'meshlet-cgroup-list-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const other = 'aaaaaaaa-0000-4000-8000-000000000001';
  await mkdir(join(root, podCgroupPath(UID, 'BestEffort', 'systemd'), 'cri-containerd-1.scope'), { recursive: true });
  await mkdir(join(root, podCgroupPath(other, 'Guaranteed', 'cgroupfs'), `pod${UID}`), { recursive: true });
  await mkdir(join(root, 'kubepods', 'burstable', 'not-a-pod'), { recursive: true });
  await mkdir(join(root, 'system.slice', `pod${UID}`), { recursive: true });

  const found = (await listPodCgroups(root)).map((p) => [p.uid, p.qos, p.driver, p.dir]);
  assert.deepEqual(found, [
    [UID, 'BestEffort', 'systemd', join(root, 'kubepods.slice/kubepods-besteffort.slice', `kubepods-besteffort-pod${UNIT}.slice`)],
    [other, 'Guaranteed', 'cgroupfs', join(root, 'kubepods', `pod${other}`)],
  ]);
  assert.deepEqual((await listPodCgroups(root, 'cgroupfs')).map((p) => p.uid), [other]);
  assert.deepEqual(await listPodCgroups(join(root, 'missing')), []);
});

// The kubelet's volumes without a cluster: the atomic writer's layout and
// swaps, what each kind of volume holds (items, optional, defaultMode, the
// downward API's formats, projected tokens) or why it is refused, the volume
// manager's token refreshes and resyncs on a manual clock against a fake
// API, the pod worker's order (sandbox, volumes, containers with their
// mounts, teardown after the sandbox), and the mount steps a container's /run is built with (the mounts
// themselves run in test/e2e/kubelet-runtime.test.ts).
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { CoreV1Api, V1ConfigMap, V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { silentLogger } from '../../lib/core/log.ts';
import { nodeHostPath, nodeRootDir, planNode } from '../../sandbox/layout.ts';
import { planContainerRun } from '../../sandbox/proc.ts';
import { writePayload, type Payload } from '../../sandbox/kubelet/atomic-writer.ts';
import { buildPodStatus } from '../../sandbox/kubelet/pod-status.ts';
import { PodWorker } from '../../sandbox/kubelet/pod-worker.ts';
import type { ContainerMount } from '../../sandbox/kubelet/runtime.ts';
import { planVolume, VolumeError, type SourceReader } from '../../sandbox/kubelet/volume-sources.ts';
import { VolumeManager, type PodVolumes } from '../../sandbox/kubelet/volumes.ts';
import { eventually } from '../support/eventually.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { RecordingRuntime } from '../support/recording-runtime.ts';

const T0 = 1_700_000_000_000;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-volumes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const payload = (files: Record<string, string>, mode = 0o644): Payload => new Map(Object.entries(files).map(([k, v]) => [k, { data: Buffer.from(v), mode }]));

const POD: V1Pod = {
  metadata: { name: 'web', namespace: 'demo', uid: '0a0b0c0d-1111-4222-8333-444455556666', labels: { tier: 'front', app: 'web' }, annotations: { note: 'say "hi"' } },
  spec: { serviceAccountName: 'web-sa', containers: [{ name: 'app' }] },
};

/** A reader over fixed objects; tokens are named after the source and count the requests. */
function reader(configMaps: Record<string, V1ConfigMap> = {}): SourceReader & { tokenRequests: string[] } {
  const tokenRequests: string[] = [];
  return {
    tokenRequests,
    configMap: async (_ns, name) => configMaps[name],
    secret: async (_ns, name) => (name === 'creds' ? { data: { password: Buffer.from('s3cret').toString('base64') } } : undefined),
    token: async (key, request) => {
      tokenRequests.push(`${key} ${request.serviceAccount} ${request.audiences?.join(',') ?? '(api server)'} ${request.expirationSeconds ?? 'default'}`);
      return `token-for-${key}`;
    },
  };
}

const text = (p: Payload): Record<string, string> => Object.fromEntries([...p].map(([k, v]) => [k, v.data.toString()]));
const content = (volume: V1Volume, r: SourceReader) => planVolume(volume, '/unused').content!(POD, r);

test('the atomic writer puts each version in a ..<timestamp> directory behind ..data and shows top-level names as symlinks', async (t) => {
  const dir = await tempDir(t);
  assert.equal(await writePayload(dir, payload({ token: 'one', 'conf/a': 'A' }), new Date(Date.UTC(2025, 0, 2, 3, 4, 5))), true);
  const first = await readlink(join(dir, '..data'));
  assert.match(first, /^\.\.2025_01_02_03_04_05\./);
  assert.equal(await readlink(join(dir, 'token')), '..data/token');
  assert.equal(await readlink(join(dir, 'conf')), '..data/conf');
  assert.equal(await readFile(join(dir, 'conf', 'a'), 'utf8'), 'A');
  assert.equal((await stat(join(dir, 'token'))).mode & 0o777, 0o644);

  assert.equal(await writePayload(dir, payload({ token: 'one', 'conf/a': 'A' })), false, 'the same content is not written again');
  assert.equal(await readlink(join(dir, '..data')), first);

  assert.equal(await writePayload(dir, payload({ token: 'two' }, 0o600)), true);
  assert.equal(await readFile(join(dir, 'token'), 'utf8'), 'two');
  assert.equal((await stat(join(dir, 'token'))).mode & 0o777, 0o600);
  await assert.rejects(lstat(join(dir, 'conf')), /ENOENT/, 'a name no longer in the payload goes');
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('..2')).length, 1, 'the previous version is removed');

  await assert.rejects(writePayload(dir, payload({ '../escape': 'x' })), /contains "\.\."/);
  await assert.rejects(writePayload(dir, payload({ '/abs': 'x' })), /is absolute/);
  await assert.rejects(writePayload(dir, payload({ '..data': 'x' })), /starts with "\.\."/);
});

test('ConfigMap and Secret volumes: every key, or the items\' keys at their paths and modes; a missing object or key fails unless optional', async () => {
  const r = reader({ settings: { data: { greeting: 'hello', other: 'more' }, binaryData: { blob: Buffer.from([1, 2]).toString('base64') } } });
  assert.deepEqual(text(await content({ name: 'v', configMap: { name: 'settings' } }, r)), { greeting: 'hello', other: 'more', blob: '\u0001\u0002' });
  const picked = await content({ name: 'v', configMap: { name: 'settings', defaultMode: 0o400, items: [{ key: 'greeting', path: 'conf/hi' }, { key: 'other', path: 'o', mode: 0o640 }] } }, r);
  assert.deepEqual([...picked].map(([k, v]) => [k, v.data.toString(), v.mode]), [['conf/hi', 'hello', 0o400], ['o', 'more', 0o640]]);
  await assert.rejects(content({ name: 'v', configMap: { name: 'settings', items: [{ key: 'nope', path: 'x' }] } }, r), /configmap "demo\/settings" has no key "nope"/);
  assert.deepEqual(text(await content({ name: 'v', configMap: { name: 'settings', optional: true, items: [{ key: 'nope', path: 'x' }] } }, r)), {});
  await assert.rejects(content({ name: 'v', configMap: { name: 'absent' } }, r), (err: unknown) => err instanceof VolumeError && /configmap "demo\/absent" not found/.test(err.message));
  assert.deepEqual(text(await content({ name: 'v', configMap: { name: 'absent', optional: true } }, r)), {});
  assert.deepEqual(text(await content({ name: 'v', secret: { secretName: 'creds' } }, r)), { password: 's3cret' });
  await assert.rejects(content({ name: 'v', secret: { secretName: 'other' } }, r), /secret "demo\/other" not found/);
});

test('downward API files: names, labels and annotations as kubelet formats them', async () => {
  const files = await content({ name: 'v', downwardAPI: { items: [
    { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
    { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
    { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
    { path: 'tier', fieldRef: { fieldPath: "metadata.labels['tier']" } },
    { path: 'missing', fieldRef: { fieldPath: "metadata.labels['none']" } },
  ] } }, reader());
  assert.deepEqual(text(files), { name: 'web', labels: 'app="web"\ntier="front"', annotations: 'note="say \\"hi\\""', tier: 'front', missing: '' });
  assert.throws(() => planVolume({ name: 'v', downwardAPI: { items: [{ path: 'cpu', resourceFieldRef: { resource: 'limits.cpu' } }] } }, '/x'), /volume "v": downwardAPI file "cpu" takes its value from resourceFieldRef limits\.cpu, which the sandbox does not support/);
});

test('a projected volume merges its sources, with a token per serviceAccountToken source for the pod\'s ServiceAccount', async () => {
  const r = reader({ 'kube-root-ca.crt': { data: { 'ca.crt': 'PEM' } } });
  const files = await content({ name: 'kube-api-access', projected: { sources: [
    { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
    { serviceAccountToken: { path: 'ca-token', audience: 'meshlet-ca' } },
    { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
    { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
  ] } }, r);
  assert.deepEqual(text(files), { token: 'token-for-kube-api-access/0', 'ca-token': 'token-for-kube-api-access/1', 'ca.crt': 'PEM', namespace: 'demo' });
  assert.deepEqual(r.tokenRequests, ['kube-api-access/0 web-sa (api server) 3607', 'kube-api-access/1 web-sa meshlet-ca default']);
  assert.throws(() => planVolume({ name: 'v', projected: { sources: [{ clusterTrustBundle: { path: 'b', name: 'x' } }] } }, '/x'), /volume "v": projected source clusterTrustBundle is not supported by the sandbox/);
});

test('volume kinds the sandbox does not materialise are refused with what it supports', () => {
  assert.throws(() => planVolume({ name: 'data', nfs: { server: '192.0.2.1', path: '/x' } }, '/x'), (err: unknown) => err instanceof VolumeError && /^volume "data": nfs volumes are not supported by the sandbox .*use one of: emptyDir, configMap, secret, downwardAPI, projected \(.*\) and hostPath/.test(err.message));
  assert.throws(() => planVolume({ name: 'claim', persistentVolumeClaim: { claimName: 'c' } }, '/x'), /persistentVolumeClaim volumes are not supported/);
  assert.throws(() => planVolume({ name: 'h', hostPath: { path: '/var/lib/x' } }, '/x'), /volume "h": hostPath volumes need a runtime with a node filesystem/);
  assert.deepEqual({ ...planVolume({ name: 'e', emptyDir: {} }, '/x/e') }, { name: 'e', hostPath: '/x/e', kind: 'emptyDir', readOnly: false, worldWritable: true });
  assert.equal(planVolume({ name: 'c', configMap: { name: 'c' } }, '/x').readOnly, true, 'API data volumes are read-only');
});

test('a hostPath is the node\'s path: its bpffs and cgroup root are the node\'s own directories, the rest below its root, and .. stays inside', () => {
  const node = planNode('hp', 2, '/sys/fs/cgroup/unified/meshlet-hp');
  const root = nodeRootDir('hp', 'node-2');
  assert.deepEqual(nodeHostPath('hp', node, '/run/meshlet'), { path: `${root}/run/meshlet`, root });
  assert.deepEqual(nodeHostPath('hp', node, '/sys/fs/bpf'), { path: node.bpfDir, root: node.bpfDir });
  assert.deepEqual(nodeHostPath('hp', node, '/sys/fs/bpf/meshlet'), { path: `${node.bpfDir}/meshlet`, root: node.bpfDir });
  assert.deepEqual(nodeHostPath('hp', node, '/sys/fs/cgroup/'), { path: node.cgroup, root: node.cgroup });
  assert.deepEqual(nodeHostPath('hp', node, '/sys/fs/bpfx'), { path: `${root}/sys/fs/bpfx`, root }, 'a prefix is not a parent');
  assert.deepEqual(nodeHostPath('hp', node, '/../../etc/shadow'), { path: `${root}/etc/shadow`, root });
  assert.deepEqual(nodeHostPath('hp', node, '/sys/fs/bpf/../../../etc'), { path: `${root}/etc`, root });
});

test('hostPath types are checked or made as kubelet\'s checker does, and a path that leads out of the node\'s directory is refused', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'node');
  const nodePaths = (path: string) => ({ path: join(root, path), root });
  const prepare = (path: string, type?: string) => planVolume({ name: 'h', hostPath: { path, ...(type !== undefined ? { type } : {}) } }, '/unused', nodePaths).prepare!();
  const plan = planVolume({ name: 'h', hostPath: { path: '/run/meshlet', type: 'DirectoryOrCreate' } }, '/unused', nodePaths);
  assert.equal(plan.hostPath, join(root, 'run/meshlet'));
  assert.equal(plan.readOnly, false);
  assert.equal(plan.content, undefined, 'the kubelet writes nothing into a hostPath');
  await plan.prepare!();
  assert.ok((await stat(join(root, 'run/meshlet'))).isDirectory(), 'DirectoryOrCreate makes it, with its parents and the node\'s root');
  await prepare('/run/meshlet', 'Directory');
  await prepare('/run/meshlet');
  await prepare('/var/log/x.log', 'FileOrCreate').then(() => assert.fail('FileOrCreate makes no parents'), (err: unknown) => assert.match((err as Error).message, /ENOENT/));
  await prepare('/run/meshlet/x.log', 'FileOrCreate');
  assert.equal((await stat(join(root, 'run/meshlet/x.log'))).size, 0);
  await prepare('/run/meshlet/x.log', 'File');
  await assert.rejects(prepare('/run/missing'), /volume "h": hostPath \/run\/missing on the node does not exist; create it, or set type DirectoryOrCreate or FileOrCreate/);
  await assert.rejects(prepare('/run/missing', 'Directory'), /does not exist/);
  await assert.rejects(prepare('/run/meshlet', 'File'), /hostPath \/run\/meshlet on the node is not a File \(it is a Directory\); fix the path or its type/);
  await assert.rejects(prepare('/run/meshlet/x.log', 'Socket'), /is not a Socket \(it is a File\)/);
  await assert.rejects(prepare('/run/meshlet/x.log', 'DirectoryOrCreate'), /exists and is not a Directory/);
  // What a container with the directory mounted could leave there.
  await symlink('/etc', join(root, 'run/meshlet/etc'));
  await assert.rejects(prepare('/run/meshlet/etc', 'Directory'), /hostPath \/run\/meshlet\/etc on the node leads outside the node's directory \(a symlink\); the sandbox binds nothing of the host's/);
  await assert.rejects(prepare('/run/meshlet/etc'), /leads outside the node's directory/);
  await assert.rejects(prepare('/run/meshlet/etc/ssl'), /leads outside the node's directory/);
  assert.throws(() => planVolume({ name: 'h', hostPath: { path: 'relative' } }, '/x', nodePaths), /hostPath "relative" is not an absolute path/);
  assert.throws(() => planVolume({ name: 'h', hostPath: { path: '/dev/kmsg', type: 'CharDevice' } }, '/x', nodePaths), /hostPath type CharDevice is not supported by the sandbox \(its nodes have no devices of their own\); use one of: DirectoryOrCreate, Directory, FileOrCreate, File, Socket/);
});

/** The parts of CoreV1Api the volume manager calls, answering from `configMaps` and minting numbered tokens. */
function fakeCore(clock: ManualClock, configMaps: Map<string, V1ConfigMap>, tokenSeconds = 600) {
  const calls: string[] = [];
  let minted = 0;
  const core = {
    createNamespacedServiceAccountToken: async (req: { namespace: string; name: string; body: { spec: { audiences: string[]; expirationSeconds: number; boundObjectRef: { kind: string; name: string; uid: string } } } }) => {
      const { spec } = req.body;
      calls.push(`token ${req.namespace}/${req.name} aud=${spec.audiences.join(',')} exp=${spec.expirationSeconds} bound=${spec.boundObjectRef.kind}/${spec.boundObjectRef.name}/${spec.boundObjectRef.uid}`);
      return { status: { token: `t${++minted}`, expirationTimestamp: new Date(clock.now() + tokenSeconds * 1000) } };
    },
    readNamespacedConfigMap: async (req: { namespace: string; name: string }) => {
      calls.push(`configmap ${req.namespace}/${req.name}`);
      const cm = configMaps.get(req.name);
      if (!cm) throw Object.assign(new Error('not found'), { statusCode: 404 });
      return cm;
    },
    readNamespacedSecret: async () => {
      throw Object.assign(new Error('not found'), { statusCode: 404 });
    },
  };
  return { core: core as unknown as CoreV1Api, calls };
}

async function settle(clock: ManualClock, ms: number): Promise<void> {
  clock.advance(ms);
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('the volume manager writes a pod\'s volumes, refreshes its token at 80 % of its life, resyncs ConfigMaps, and stops on teardown', async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(T0);
  const configMaps = new Map<string, V1ConfigMap>([['settings', { data: { greeting: 'hello' } }]]);
  const { core, calls } = fakeCore(clock, configMaps);
  const manager = new VolumeManager({ core, clock, log: silentLogger, dirOf: () => dir, resyncIntervalMs: 100_000 });
  t.after(() => manager.stop());
  const pod: V1Pod = {
    ...POD,
    spec: {
      ...POD.spec!,
      containers: [{ name: 'app', volumeMounts: [{ name: 'bundle', mountPath: '/var/run/secrets/x' }, { name: 'scratch', mountPath: '/run/scratch', readOnly: true }] }],
      volumes: [
        { name: 'bundle', projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'meshlet-ca', expirationSeconds: 600 } }, { configMap: { name: 'settings' } }] } },
        { name: 'scratch', emptyDir: {} },
      ],
    },
  };
  await manager.setUp(pod);
  await manager.setUp(pod);
  assert.deepEqual(calls, ['token demo/web-sa aud=meshlet-ca exp=600 bound=Pod/web/0a0b0c0d-1111-4222-8333-444455556666', 'configmap demo/settings'], 'set up once');
  const file = (name: string) => readFile(join(dir, 'bundle', name), 'utf8');
  assert.equal(await file('token'), 't1');
  assert.equal(await file('greeting'), 'hello');
  assert.equal((await stat(join(dir, 'scratch'))).mode & 0o777, 0o777, 'an emptyDir is writable by every user');
  assert.deepEqual(manager.mountsFor(pod, pod.spec!.containers[0]!), [
    { containerPath: '/var/run/secrets/x', hostPath: join(dir, 'bundle'), readOnly: true },
    { containerPath: '/run/scratch', hostPath: join(dir, 'scratch'), readOnly: true },
  ]);
  assert.throws(() => manager.mountsFor(pod, { name: 'app', volumeMounts: [{ name: 'scratch', mountPath: '/x', subPath: 'a' }] }), /container "app": volumeMount "scratch" at \/x uses subPath, which the sandbox does not support/);

  // Each step waits until the last sync re-armed the pod's timer.
  const step = async (ms: number) => {
    await eventually('the next sync armed', () => clock.pending === 1 || undefined);
    clock.advance(ms);
  };
  configMaps.set('settings', { data: { greeting: 'changed' } });
  await step(100_000);
  await eventually('the resync brought the change', async () => (await file('greeting')) === 'changed' || undefined);
  assert.equal(await file('token'), 't1', 'the token is not due yet');
  for (let i = 0; i < 3; i++) await step(100_000);
  await step(79_999);
  assert.equal(await file('token'), 't1');
  await step(1);
  await eventually('refreshed at 80 % of 600 s', async () => (await file('token')) === 't2' || undefined);
  await eventually('the next sync armed', () => clock.pending === 1 || undefined);

  manager.tearDown(pod.metadata!.uid!);
  const before = calls.length;
  await settle(clock, 3_600_000);
  assert.equal(calls.length, before, 'nothing is refreshed after teardown');
});

test('a token refresh that fails keeps the last token and is retried with backoff, not at once', async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(T0);
  const { core, calls } = fakeCore(clock, new Map());
  const manager = new VolumeManager({ core, clock, log: silentLogger, dirOf: () => dir, resyncIntervalMs: 3_600_000 });
  t.after(() => manager.stop());
  const pod: V1Pod = { ...POD, spec: { ...POD.spec!, volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 600 } }] } }] } };
  await manager.setUp(pod);
  const api = core as unknown as { createNamespacedServiceAccountToken: () => Promise<never> };
  const working = api.createNamespacedServiceAccountToken;
  api.createNamespacedServiceAccountToken = async () => {
    calls.push('token refused');
    throw Object.assign(new Error('unavailable'), { statusCode: 503 });
  };
  const refused = () => calls.filter((c) => c === 'token refused').length;
  const step = async (ms: number) => {
    await eventually('the next sync armed', () => clock.pending === 1 || undefined);
    clock.advance(ms);
  };
  await step(480_000);
  await eventually('the refresh refused', () => refused() === 1 || undefined);
  await step(999);
  assert.equal(refused(), 1, 'no retry before the backoff');
  await step(1);
  await eventually('retried after 1 s', () => refused() === 2 || undefined);
  assert.equal(await readFile(join(dir, 'token', 'token'), 'utf8'), 't1', 'the last token stays');
  api.createNamespacedServiceAccountToken = working;
  await step(2000);
  await eventually('refreshed once the API answers', async () => (await readFile(join(dir, 'token', 'token'), 'utf8')) === 't2' || undefined);
});

test('a pod with a volume the sandbox cannot set up is refused at setUp with the volume named, and may be set up again', async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(T0);
  const configMaps = new Map<string, V1ConfigMap>();
  const { core } = fakeCore(clock, configMaps);
  const manager = new VolumeManager({ core, clock, log: silentLogger, dirOf: () => dir });
  t.after(() => manager.stop());
  const pod: V1Pod = { ...POD, spec: { ...POD.spec!, volumes: [{ name: 'settings', configMap: { name: 'settings' } }] } };
  await assert.rejects(manager.setUp(pod), /MountVolume\.SetUp failed for volume "settings" \(configMap\): configmap "demo\/settings" not found/);
  configMaps.set('settings', { data: { a: 'b' } });
  await manager.setUp(pod);
  assert.equal(await readFile(join(dir, 'settings', 'a'), 'utf8'), 'b');
  await assert.rejects(manager.setUp({ ...POD, metadata: { ...POD.metadata, uid: 'other' }, spec: { ...POD.spec!, volumes: [{ name: 'h', hostPath: { path: '/x' } }] } }), /hostPath volumes need a runtime with a node filesystem/);
});

test('a container\'s /run: staged, carrying the host\'s entries but the run root, its mounts made in it, read-only ones remounted, then moved', async (t) => {
  const dir = await tempDir(t);
  const source = join(dir, 'volume');
  await mkdir(source);
  const staging = join(dir, 'staging');
  const steps = planContainerRun(staging, [
    { source, target: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    { source, target: '/run/scratch', readOnly: false },
    { source, target: dir, readOnly: false },
  ]).steps.split('\n').map((line) => line.split('\t'));
  assert.deepEqual(steps[0], ['tmpfs', staging]);
  assert.deepEqual(steps.at(-1), ['move', staging, '/run']);
  assert.ok(steps.some((s) => s[0] === 'dir' && s[1] === join(staging, 'meshlet')), 'the run root is an empty directory');
  assert.ok(!steps.some((s) => s[1] === '/run/meshlet'), 'the host\'s run root is not carried');
  const hostDir = readdirSync('/run', { withFileTypes: true }).find((e) => e.isDirectory() && !e.isSymbolicLink() && e.name !== 'meshlet')!.name;
  assert.ok(steps.findIndex((s) => s[0] === 'rbind' && s[1] === join('/run', hostDir)) > 0, 'the host\'s /run entries are carried');
  const sa = join(staging, 'secrets/kubernetes.io/serviceaccount');
  assert.deepEqual(steps.filter((s) => s.includes(sa) || s.includes(join(staging, 'scratch')) || s[2] === dir), [
    ['dir', join(staging, 'scratch')],
    ['bind', source, join(staging, 'scratch')],
    ['bind', source, dir],
    ['dir', sa],
    ['bind', source, sa],
    ['ro', sa],
  ], '/var/run resolves to /run; shallower paths first (stable); read-only after every bind');
  assert.deepEqual(steps[steps.findIndex((s) => s[0] === 'bind' && s[2] === dir) + 1], ['rw', dir], 'a writable mount outside /run is made writable: its source may lie on a mount made read-only');
  assert.throws(() => planContainerRun(staging, [{ source, target: '/meshlet-nowhere/data', readOnly: false }]), /mount path \/meshlet-nowhere\/data does not exist on this host, and a sandbox container has no image filesystem to create it in/);
  assert.throws(() => planContainerRun(staging, [{ source, target: '/var/run', readOnly: false }]), /is the container's own \/run/);
  assert.throws(() => planContainerRun(staging, [{ source, target: '/run/a\tb', readOnly: false }]), /control characters/);
});

test('a pod worker sets volumes up after the sandbox, waits in ContainerCreating while they fail, and passes each container its mounts', async (t) => {
  const clock = new ManualClock(T0);
  const mountsSeen: string[] = [];
  class MountRecordingRuntime extends RecordingRuntime {
    override startContainer(pod: V1Pod, container: V1Container, mounts: readonly ContainerMount[] = []) {
      mountsSeen.push(`${container.name}: ${mounts.map((m) => `${m.hostPath}->${m.containerPath}${m.readOnly ? ' ro' : ''}`).join(', ')}`);
      return super.startContainer(pod, container);
    }
  }
  const runtime = new MountRecordingRuntime({ now: clock.now });
  let failures = 1;
  const torn: string[] = [];
  const volumes: PodVolumes = {
    setUp: async () => {
      if (failures-- > 0) throw new VolumeError('MountVolume.SetUp failed for volume "settings" (configMap): configmap "demo/settings" not found; create it, or make the source optional');
    },
    update: () => undefined,
    mountsFor: (_pod, c) => [{ containerPath: '/run/x', hostPath: `/volumes/${c.name}`, readOnly: true }],
    tearDown: (uid) => void torn.push(uid),
  };
  const pod: V1Pod = { ...POD, metadata: { ...POD.metadata, resourceVersion: '1' }, spec: { ...POD.spec!, nodeName: 'node-1', containers: [{ name: 'app' }] }, status: { phase: 'Pending' } };
  const worker = new PodWorker(pod, { runtime, volumes, clock, log: silentLogger, hostIps: ['10.200.0.11'], changed: () => undefined, stopped: () => undefined });
  const unsubscribe = runtime.onContainerExit((e) => worker.exited(e));
  t.after(() => {
    unsubscribe();
    worker.detach();
  });
  worker.start();
  await settle(clock, 0);
  const waiting = buildPodStatus(worker.view, clock.now()).containerStatuses?.[0]?.state?.waiting;
  assert.equal(waiting?.reason, 'ContainerCreating');
  assert.match(waiting?.message ?? '', /^unable to attach or mount volumes: MountVolume\.SetUp failed for volume "settings"/);
  assert.deepEqual(runtime.callsOf('startContainer'), [], 'no container starts before its volumes');
  await settle(clock, 1000);
  assert.deepEqual(mountsSeen, ['app: /volumes/app->/run/x ro']);
  worker.update({ ...pod, metadata: { ...pod.metadata, resourceVersion: '2', deletionTimestamp: new Date(clock.now()) } });
  await eventually('the volumes torn down after the sandbox', () => torn.length === 1 || undefined);
  assert.deepEqual(runtime.callsOf('stopPodSandbox').length, 1);
});

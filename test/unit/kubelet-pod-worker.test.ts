// The kubelet's pod worker and status on a manual clock with the in-memory
// runtime: start order, restartPolicy, CrashLoopBackOff (10 s doubling to
// 300 s), probes, init containers, deletion and adoption.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { V1Container, V1ContainerStatus, V1Pod, V1PodCondition } from '@kubernetes/client-node';
import { silentLogger } from '../../lib/core/log.ts';
import { buildPodStatus } from '../../sandbox/kubelet/pod-status.ts';
import { PodWorker } from '../../sandbox/kubelet/pod-worker.ts';
import type { RuntimePod } from '../../sandbox/kubelet/runtime.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { RecordingRuntime } from '../support/recording-runtime.ts';

const UID = '0a0b0c0d-1111-4222-8333-444455556666';
const T0 = 1_700_000_000_000;

function podOf(containers: V1Container[], spec: Partial<NonNullable<V1Pod['spec']>> = {}, status?: V1Pod['status']): V1Pod {
  return {
    metadata: { name: 'web', namespace: 'default', uid: UID, resourceVersion: '1' },
    spec: { nodeName: 'node-1', containers, ...spec },
    status: status ?? { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] },
  };
}

function setup(t: TestContext, pod: V1Pod, adopted?: RuntimePod) {
  const clock = new ManualClock(T0);
  const runtime = new RecordingRuntime({ now: clock.now });
  if (adopted) runtime.seed(adopted, 'default/web');
  let stopped = 0;
  const worker = new PodWorker(pod, { runtime, clock, log: silentLogger, hostIps: ['10.200.0.11'], changed: () => undefined, stopped: () => stopped++ });
  const unsubscribe = runtime.onContainerExit((e) => worker.exited(e));
  t.after(() => {
    unsubscribe();
    worker.detach();
  });
  const settle = async () => {
    for (let i = 0; i < 10; i++) {
      clock.advance(0);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  /** Moves time in 100 ms steps (below probe timeouts), settling each. */
  const advance = async (ms: number) => {
    for (let done = 0; done < ms; done += 100) {
      clock.advance(Math.min(100, ms - done));
      await settle();
    }
  };
  const status = () => buildPodStatus(worker.view, clock.now());
  const container = (name: string): V1ContainerStatus => [...(status().initContainerStatuses ?? []), ...(status().containerStatuses ?? [])].find((c) => c.name === name)!;
  const condition = (type: string): V1PodCondition | undefined => status().conditions?.find((c) => c.type === type);
  const uidOf = () => runtime.podNamed('default/web')!.uid;
  return { clock, runtime, worker, settle, advance, status, container, condition, uidOf, stops: () => stopped };
}

test('a pod gets its sandbox, then its containers in spec order, and reports Running and Ready', async (t) => {
  const w = setup(t, podOf([{ name: 'a', image: 'img-a' }, { name: 'b' }]));
  assert.equal(w.status().phase, 'Pending');
  w.worker.start();
  await w.settle();
  assert.deepEqual(w.runtime.calls, ['runPodSandbox default/web', 'startContainer default/web/a', 'startContainer default/web/b']);
  const s = w.status();
  assert.equal(s.phase, 'Running');
  assert.equal(s.podIP, '10.244.1.2');
  assert.deepEqual(s.podIPs, [{ ip: '10.244.1.2' }]);
  assert.equal(s.hostIP, '10.200.0.11');
  assert.deepEqual(s.startTime, new Date(T0));
  for (const type of ['PodScheduled', 'PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']) assert.equal(w.condition(type)?.status, 'True', type);
  const a = w.container('a');
  assert.equal(a.image, 'img-a');
  assert.equal(a.ready, true);
  assert.equal(a.started, true);
  assert.equal(a.restartCount, 0);
  assert.match(a.containerID!, /^recording:\/\/c\d+$/);
  assert.deepEqual(a.state, { running: { startedAt: new Date(T0) } });
});

test('restartPolicy Always: the first restart is immediate, then CrashLoopBackOff 10 s doubling to 300 s', async (t) => {
  const w = setup(t, podOf([{ name: 'app' }]));
  w.worker.start();
  await w.settle();
  w.runtime.exit(w.uidOf(), 'app', 1);
  await w.settle();
  assert.equal(w.container('app').restartCount, 1);
  assert.ok(w.container('app').state?.running);
  assert.equal(w.container('app').lastState?.terminated?.exitCode, 1);
  assert.equal(w.container('app').lastState?.terminated?.reason, 'Error');

  const waits: number[] = [];
  for (let i = 0; i < 7; i++) {
    w.runtime.exit(w.uidOf(), 'app', 2);
    await w.settle();
    const waiting = w.container('app').state?.waiting;
    assert.equal(waiting?.reason, 'CrashLoopBackOff');
    assert.equal(w.status().phase, 'Running', 'a crash-looping pod with restartPolicy Always stays Running');
    assert.equal(w.condition('Ready')?.status, 'False');
    const restarts = w.container('app').restartCount;
    let waited = 0;
    while (w.container('app').restartCount === restarts) {
      await w.advance(1000);
      waited += 1000;
      assert.ok(waited <= 300_000, 'never waits more than 300 s');
    }
    assert.match(waiting!.message!, new RegExp(`^back-off ${waited / 1000}s restarting failed container=app pod=web_default\\(${UID}\\)$`));
    waits.push(waited / 1000);
  }
  assert.deepEqual(waits, [10, 20, 40, 80, 160, 300, 300]);

  // A container that ran longer than twice the maximum starts over: immediate restart.
  await w.advance(601_000);
  const before = w.container('app').restartCount;
  w.runtime.exit(w.uidOf(), 'app', 1);
  await w.settle();
  assert.equal(w.container('app').restartCount, before + 1);
});

test('restartPolicy OnFailure: a failure restarts, success ends the pod Succeeded and stops its sandbox', async (t) => {
  const w = setup(t, podOf([{ name: 'job' }], { restartPolicy: 'OnFailure' }));
  w.worker.start();
  await w.settle();
  w.runtime.exit(w.uidOf(), 'job', 3);
  await w.settle();
  assert.equal(w.container('job').restartCount, 1);
  w.runtime.exit(w.uidOf(), 'job', 0);
  await w.settle();
  const s = w.status();
  assert.equal(s.phase, 'Succeeded');
  assert.equal(w.container('job').state?.terminated?.reason, 'Completed');
  assert.equal(w.condition('Ready')?.reason, 'PodCompleted');
  assert.equal(w.condition('PodReadyToStartContainers')?.status, 'False');
  assert.deepEqual(w.runtime.callsOf('stopPodSandbox'), ['stopPodSandbox default/web 30']);
});

test('restartPolicy Never: the pod runs while a container does, and fails once all exited with one failure', async (t) => {
  const w = setup(t, podOf([{ name: 'a' }, { name: 'b' }], { restartPolicy: 'Never' }));
  w.worker.start();
  await w.settle();
  w.runtime.exit(w.uidOf(), 'a', 1);
  await w.settle();
  assert.equal(w.status().phase, 'Running');
  assert.equal(w.container('a').state?.terminated?.exitCode, 1);
  assert.equal(w.container('a').restartCount, 0);
  w.runtime.exit(w.uidOf(), 'b', 0);
  await w.settle();
  assert.equal(w.status().phase, 'Failed');
  assert.equal(w.runtime.callsOf('startContainer').length, 2);
});

test('a container that cannot start ends StartError (exit 128) and is retried with backoff', async (t) => {
  const w = setup(t, podOf([{ name: 'app' }]));
  w.runtime.startFailures.set('app', 'command "nope" is not an executable');
  w.worker.start();
  await w.settle();
  const first = w.container('app');
  // Immediately retried once (the first restart), then waiting in backoff.
  assert.equal(first.state?.waiting?.reason, 'CrashLoopBackOff');
  assert.equal(first.lastState?.terminated?.reason, 'StartError');
  assert.equal(first.lastState?.terminated?.exitCode, 128);
  assert.match(first.lastState!.terminated!.message!, /not an executable/);
  assert.equal(w.status().phase, 'Running');
  w.runtime.startFailures.clear();
  await w.advance(10_000);
  assert.ok(w.container('app').state?.running);

  const never = setup(t, podOf([{ name: 'app' }], { restartPolicy: 'Never' }));
  never.runtime.startFailures.set('app', 'no such command');
  never.worker.start();
  await never.settle();
  assert.equal(never.status().phase, 'Failed');
});

test('a liveness failure stops the container with its grace period and restarts it', async (t) => {
  let healthy = true;
  const w = setup(t, podOf([{ name: 'app', livenessProbe: { exec: { command: ['check'] }, periodSeconds: 1, failureThreshold: 2 } }], { terminationGracePeriodSeconds: 7 }));
  w.runtime.execHandler = () => ({ exitCode: healthy ? 0 : 1, output: healthy ? '' : 'unhealthy' });
  w.worker.start();
  await w.advance(3000);
  assert.deepEqual(w.runtime.callsOf('stopContainer'), []);
  healthy = false;
  await w.advance(2000);
  assert.deepEqual(w.runtime.callsOf('stopContainer'), ['stopContainer default/web/app 7']);
  assert.equal(w.container('app').restartCount, 1);
  assert.equal(w.container('app').lastState?.terminated?.exitCode, 143);
  assert.ok(w.container('app').state?.running);
});

test('readiness follows the probe; a startup probe holds liveness and readiness back until it passes', async (t) => {
  const answers = new Map([['ready', 1], ['started', 1]]);
  const w = setup(t, podOf([{
    name: 'app',
    startupProbe: { exec: { command: ['started'] }, periodSeconds: 1, failureThreshold: 30 },
    readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 },
  }]));
  w.runtime.execHandler = (_uid, _c, argv) => ({ exitCode: answers.get(argv[0]!) ?? 0, output: '' });
  w.worker.start();
  await w.advance(3000);
  assert.equal(w.container('app').started, false);
  assert.equal(w.container('app').ready, false);
  assert.equal(w.condition('ContainersReady')?.message, 'containers with unready status: [app]');
  answers.set('started', 0);
  await w.advance(1000);
  assert.equal(w.container('app').started, true);
  assert.equal(w.container('app').ready, false, 'readiness has not passed yet');
  answers.set('ready', 0);
  await w.advance(1000);
  assert.equal(w.container('app').ready, true);
  assert.equal(w.condition('Ready')?.status, 'True');
  answers.set('ready', 1);
  await w.advance(1000);
  assert.equal(w.condition('Ready')?.status, 'False');
  assert.equal(w.condition('Ready')?.reason, 'ContainersNotReady');
});

test('init containers run one by one before the containers; a failed one with restartPolicy Never fails the pod', async (t) => {
  const w = setup(t, podOf([{ name: 'app' }], { initContainers: [{ name: 'i1' }, { name: 'i2' }] }));
  w.worker.start();
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('startContainer'), ['startContainer default/web/i1']);
  assert.equal(w.status().phase, 'Pending');
  assert.equal(w.container('app').state?.waiting?.reason, 'PodInitializing');
  assert.equal(w.condition('Initialized')?.message, 'containers with incomplete status: [i1 i2]');
  w.runtime.exit(w.uidOf(), 'i1', 0);
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('startContainer'), ['startContainer default/web/i1', 'startContainer default/web/i2']);
  w.runtime.exit(w.uidOf(), 'i2', 0);
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('startContainer').at(-1), 'startContainer default/web/app');
  assert.equal(w.status().phase, 'Running');
  assert.equal(w.condition('Initialized')?.status, 'True');
  assert.equal(w.container('i1').state?.terminated?.reason, 'Completed');
  assert.equal(w.container('i1').ready, true);

  const never = setup(t, podOf([{ name: 'app' }], { restartPolicy: 'Never', initContainers: [{ name: 'i1' }] }));
  never.worker.start();
  await never.settle();
  never.runtime.exit(never.uidOf(), 'i1', 2);
  await never.settle();
  assert.equal(never.status().phase, 'Failed');
  assert.deepEqual(never.runtime.callsOf('startContainer'), ['startContainer default/web/i1']);
});

test('deletion stops the pod with its deletion grace period, then reports it stopped and terminal', async (t) => {
  const w = setup(t, podOf([{ name: 'app' }]));
  w.worker.start();
  await w.settle();
  const uid = w.uidOf();
  w.worker.update({ ...w.worker.pod, metadata: { ...w.worker.pod.metadata, resourceVersion: '2', deletionTimestamp: new Date(T0), deletionGracePeriodSeconds: 5 } });
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('stopPodSandbox'), [`stopPodSandbox default/web 5`]);
  assert.equal(w.stops(), 1);
  assert.equal(w.worker.stopped, true);
  assert.equal(w.status().phase, 'Failed', 'SIGTERM exit 143 is a failure');
  assert.equal(w.container('app').state?.terminated?.exitCode, 143);
  assert.equal(w.runtime.podNamed('default/web'), undefined);
  assert.ok(uid);
});

test('a pod the runtime already runs is adopted: nothing starts twice, counts and readiness carry over', async (t) => {
  const adopted: RuntimePod = { uid: UID, ips: ['10.244.1.9'], containers: [{ name: 'app', id: 'c77', startedAt: T0 - 60_000 }] };
  const recorded: V1Pod['status'] = {
    phase: 'Running',
    startTime: new Date(T0 - 61_000),
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(T0 - 50_000) }],
    containerStatuses: [{ name: 'app', image: '', imageID: '', ready: true, started: true, restartCount: 4, containerID: 'recording://c77', state: { running: { startedAt: new Date(T0 - 60_000) } } }],
  };
  const w = setup(t, podOf([{ name: 'app', readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 10 } }], {}, recorded), adopted);
  w.worker.start(await w.runtime.listPods().then((p) => p[0]));
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('runPodSandbox'), []);
  assert.deepEqual(w.runtime.callsOf('startContainer'), []);
  assert.equal(w.status().podIP, '10.244.1.9');
  assert.equal(w.container('app').restartCount, 4);
  assert.equal(w.container('app').containerID, 'recording://c77');
  assert.equal(w.condition('Ready')?.status, 'True');
  assert.deepEqual(w.condition('Ready')?.lastTransitionTime, new Date(T0 - 50_000), 'no transition: it never stopped being ready');
  assert.deepEqual(w.status().startTime, new Date(T0 - 61_000));
});

test('a hostNetwork pod reports the node\'s addresses as its IPs', async (t) => {
  const w = setup(t, podOf([{ name: 'app' }], { hostNetwork: true }));
  w.worker.start();
  await w.settle();
  assert.equal(w.status().podIP, '10.200.0.11');
  assert.deepEqual(w.status().podIPs, [{ ip: '10.200.0.11' }]);
});

test('a sidecar (init container with restartPolicy Always) starts first, keeps running, and goes when the pod is done', async (t) => {
  const w = setup(t, podOf([{ name: 'job' }], { restartPolicy: 'Never', initContainers: [{ name: 'proxy', restartPolicy: 'Always' }] }));
  w.worker.start();
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('startContainer'), ['startContainer default/web/proxy', 'startContainer default/web/job']);
  assert.equal(w.status().phase, 'Running');
  assert.equal(w.condition('Initialized')?.status, 'True');
  w.runtime.exit(w.uidOf(), 'proxy', 1);
  await w.settle();
  assert.equal(w.container('proxy').restartCount, 1, 'a sidecar restarts whatever the pod\'s restartPolicy');
  w.runtime.exit(w.uidOf(), 'job', 0);
  await w.settle();
  assert.equal(w.status().phase, 'Succeeded');
  assert.deepEqual(w.runtime.callsOf('stopPodSandbox'), ['stopPodSandbox default/web 30']);
});

test('an adopted pod whose containers run does not run its init containers again', async (t) => {
  const adopted: RuntimePod = { uid: UID, ips: ['10.244.1.9'], containers: [{ name: 'app', id: 'c5', startedAt: T0 }] };
  const w = setup(t, podOf([{ name: 'app' }], { initContainers: [{ name: 'setup' }] }, { phase: 'Running' }), adopted);
  w.worker.start(adopted);
  await w.settle();
  assert.deepEqual(w.runtime.callsOf('startContainer'), []);
  assert.equal(w.status().phase, 'Running');
  assert.equal(w.condition('Initialized')?.status, 'True');
});

// The sandbox's kubelet against a real control plane (API server,
// controller manager, scheduler), under its own node credentials so that
// the Node authorizer applies, with the in-memory runtime: the kubelet's
// sync logic is what runs here, the real runtime is the sandbox e2e's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { jsonLogger, silentLogger, type Logger } from '../../lib/core/log.ts';
import { Kubelet } from '../../sandbox/kubelet/kubelet.ts';
import type { NodeConfig } from '../../sandbox/kubelet/node.ts';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';
import { RecordingRuntime } from '../support/recording-runtime.ts';

const NODE: NodeConfig = { name: 'node-1', addresses: ['10.200.0.11'], podCIDRs: ['10.244.1.0/24'], capacity: { cpu: '4', memory: '8Gi', pods: '110' } };
const WAIT_MS = 90_000;
/** MESHLET_TEST_LOG=1 prints the kubelet's log. */
const log: Logger = process.env.MESHLET_TEST_LOG ? jsonLogger('kubelet', process.stderr) : silentLogger;

interface PodJson {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    podIPs?: { ip: string }[];
    hostIP?: string;
    startTime?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; ready: boolean; started?: boolean; restartCount: number; state?: { running?: unknown } }[];
  };
}

async function json<T>(cp: TestControlPlane, args: string[]): Promise<T> {
  const r = await cp.kubectl([...args, '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const condition = (pod: PodJson, type: string): string | undefined => pod.status.conditions?.find((c) => c.type === type)?.status;

const DEPLOYMENT = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'default' },
  spec: {
    replicas: 2,
    selector: { matchLabels: { app: 'web' } },
    template: {
      metadata: { labels: { app: 'web' } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [{
          name: 'app',
          image: 'meshlet/idle',
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 },
          livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1, failureThreshold: 1 },
        }],
      },
    },
  },
};
const SERVICE = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } };

test('the kubelet registers a Ready node and runs its pods through the real controllers', async (t) => {
  const cp = await startTestControlPlane(t, { controllers: true });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await cp.userKubeconfig('system:node:node-1', ['system:nodes']));
  const runtime = new RecordingRuntime();
  // Probe failures to come, per pod UID and probe command; none means healthy.
  const failing = new Map<string, Map<string, number>>();
  const fail = (uid: string, command: string, times = Infinity) => failing.set(uid, new Map([[command, times]]));
  runtime.execHandler = (uid, _container, argv) => {
    const left = failing.get(uid)?.get(argv[0]!) ?? 0;
    if (left > 0) failing.get(uid)!.set(argv[0]!, left - 1);
    return { exitCode: left > 0 ? 1 : 0, output: left > 0 ? 'probe told to fail' : '' };
  };
  const newKubelet = () => new Kubelet({ kubeConfig, runtime, node: NODE, log, leaseRenewIntervalMs: 1000, statusCheckIntervalMs: 1000 });
  let kubelet = newKubelet();
  // Stopped before the control plane (t.after runs in order, and the control plane's came first).
  t.after(() => kubelet.stop());
  await kubelet.start();
  try {

    await t.test('the node registers with its CIDR, addresses and capacity, is Ready, and renews its lease', async () => {
      const get = await cp.kubectl(['get', 'node', 'node-1']);
      assert.match(get.stdout, /^node-1\s+Ready\s/m);
      const node = await json<{ metadata: { labels: Record<string, string> }; spec: { podCIDR: string; podCIDRs: string[] }; status: { addresses: { type: string; address: string }[]; allocatable: Record<string, string>; conditions: { type: string; status: string; reason: string; lastHeartbeatTime: string }[]; nodeInfo: { kubeletVersion: string } } }>(cp, ['get', 'node', 'node-1']);
      assert.equal(node.metadata.labels['kubernetes.io/hostname'], 'node-1');
      assert.equal(node.metadata.labels['kubernetes.io/os'], 'linux');
      assert.deepEqual(node.spec.podCIDRs, ['10.244.1.0/24']);
      assert.deepEqual(node.status.addresses, [{ type: 'InternalIP', address: '10.200.0.11' }, { type: 'Hostname', address: 'node-1' }]);
      assert.deepEqual(node.status.allocatable, { cpu: '4', memory: '8Gi', pods: '110' });
      const ready = node.status.conditions.find((c) => c.type === 'Ready')!;
      assert.equal(ready.status, 'True');
      assert.equal(ready.reason, 'KubeletReady');
      assert.ok(ready.lastHeartbeatTime);
      for (const type of ['MemoryPressure', 'DiskPressure', 'PIDPressure']) assert.equal(node.status.conditions.find((c) => c.type === type)?.status, 'False', type);
      const lease = async () => json<{ spec: { holderIdentity: string; renewTime: string; leaseDurationSeconds: number } }>(cp, ['-n', 'kube-node-lease', 'get', 'lease', 'node-1']);
      const first = await lease();
      assert.equal(first.spec.holderIdentity, 'node-1');
      assert.equal(first.spec.leaseDurationSeconds, 40);
      await eventually('the lease renewed', async () => (await lease()).spec.renewTime !== first.spec.renewTime, WAIT_MS);
    });

    await t.test('a Ready condition changed behind its back (as the node controller does when the lease lapses) is reported again', async () => {
      const unknown = { status: { conditions: [{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.' }] } };
      assert.equal((await cp.kubectl(['patch', 'node', 'node-1', '--subresource=status', '--type=merge', '-p', JSON.stringify(unknown)])).exitCode, 0);
      await eventually('Ready again', async () => /^node-1\s+Ready\s/m.test((await cp.kubectl(['get', 'node', 'node-1'])).stdout), WAIT_MS);
    });

    await t.test('a Node deleted behind its back registers again', async () => {
      const before = await json<{ metadata: { uid: string } }>(cp, ['get', 'node', 'node-1']);
      assert.equal((await cp.kubectl(['delete', 'node', 'node-1'])).exitCode, 0);
      await eventually('registered again and Ready', async () => {
        const node = await json<{ metadata: { uid: string }; status: { conditions?: { type: string; status: string }[] } }>(cp, ['get', 'node', 'node-1']);
        return node.metadata.uid !== before.metadata.uid && node.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      }, WAIT_MS);
      await eventually('its lease renewed again', async () => (await cp.kubectl(['-n', 'kube-node-lease', 'get', 'lease', 'node-1'])).exitCode === 0, WAIT_MS);
    });

    const podsOf = async () => (await json<{ items: PodJson[] }>(cp, ['get', 'pods', '-l', 'app=web'])).items;
    const readyEndpoints = async () => {
      const slices = await json<{ items: { endpoints?: { addresses: string[]; conditions?: { ready?: boolean }; targetRef?: { name: string } }[] }[] }>(cp, ['get', 'endpointslices', '-l', 'kubernetes.io/service-name=web']);
      return slices.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready).map((e) => e.addresses[0]!).sort();
    };
    const runningIps = (pods: PodJson[]) => pods.filter((p) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp).map((p) => p.status.podIP!).sort();

    await t.test('a Deployment\'s pods are scheduled here, reach Running with IPs, and are the Service\'s ready endpoints', async () => {
      for (const manifest of [DEPLOYMENT, SERVICE]) assert.equal((await cp.kubectl(['apply', '-f', '-'], JSON.stringify(manifest))).exitCode, 0);
      const pods = await eventually('two Running pods with IPs', async () => {
        const items = await podsOf();
        return items.length === 2 && items.every((p) => p.status.phase === 'Running' && p.status.podIP && condition(p, 'Ready') === 'True') && items;
      }, WAIT_MS);
      for (const p of pods) {
        assert.equal(p.spec.nodeName, 'node-1');
        assert.match(p.status.podIP!, /^10\.244\.1\.\d+$/);
        assert.deepEqual(p.status.podIPs, [{ ip: p.status.podIP }]);
        assert.equal(p.status.hostIP, '10.200.0.11');
        assert.ok(p.status.startTime);
        for (const type of ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']) assert.equal(condition(p, type), 'True', type);
        const c = p.status.containerStatuses![0]!;
        assert.equal(c.name, 'app');
        assert.equal(c.ready, true);
        assert.equal(c.started, true);
        assert.equal(c.restartCount, 0);
        assert.ok(c.state?.running);
      }
      const wide = await cp.kubectl(['get', 'pods', '-o', 'wide']);
      assert.match(wide.stdout, /web-\S+\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.\d+\s+node-1/);
      const ips = runningIps(pods);
      await eventually('the EndpointSlice lists both pods ready', async () => JSON.stringify(await readyEndpoints()) === JSON.stringify(ips), WAIT_MS);
      assert.equal(runtime.callsOf('runPodSandbox').length, 2);
    });

    await t.test('a failing readiness probe takes the pod out of Ready and out of the ready endpoints', async () => {
      const [a, b] = await podsOf();
      fail(a!.metadata.uid, 'ready');
      await eventually('pod a not Ready', async () => {
        const pod = (await podsOf()).find((p) => p.metadata.uid === a!.metadata.uid)!;
        return condition(pod, 'Ready') === 'False' && condition(pod, 'ContainersReady') === 'False' && pod.status.phase === 'Running';
      }, WAIT_MS);
      await eventually('only b is a ready endpoint', async () => JSON.stringify(await readyEndpoints()) === JSON.stringify([b!.status.podIP]), WAIT_MS);
      failing.delete(a!.metadata.uid);
      await eventually('a ready again', async () => (await readyEndpoints()).length === 2, WAIT_MS);
    });

    await t.test('a liveness failure restarts the container', async () => {
      const [, b] = await podsOf();
      const uid = b!.metadata.uid;
      fail(uid, 'alive', 1);
      const pod = await eventually('restartCount 1, running', async () => {
        const p = (await podsOf()).find((x) => x.metadata.uid === uid)!;
        const c = p.status.containerStatuses?.[0];
        return c?.restartCount === 1 && c.state?.running !== undefined && p;
      }, WAIT_MS);
      assert.equal(pod.status.phase, 'Running');
      assert.deepEqual(runtime.callsOf(`stopContainer default/${b!.metadata.name}/app`), [`stopContainer default/${b!.metadata.name}/app 1`]);
    });

    await t.test('a deleted pod is stopped in the runtime with its grace period and its object disappears', async () => {
      const [a] = await podsOf();
      const name = a!.metadata.name;
      assert.equal((await cp.kubectl(['delete', 'pod', name, '--wait=false'])).exitCode, 0);
      await eventually('the runtime stopped it', () => runtime.callsOf(`stopPodSandbox default/${name} `).length === 1, WAIT_MS);
      assert.deepEqual(runtime.callsOf(`stopPodSandbox default/${name} `), [`stopPodSandbox default/${name} 1`]);
      await eventually('the pod object is gone', async () => /NotFound/.test((await cp.kubectl(['get', 'pod', name])).stderr), WAIT_MS);
      await eventually('the replacement runs', async () => {
        const pods = await podsOf();
        return pods.length === 2 && pods.every((p) => p.metadata.name !== name && p.status.phase === 'Running');
      }, WAIT_MS);
      assert.equal(runtime.podCount, 2);
    });

    await t.test('after an API server restart the kubelet resumes: new pods run, the node stays Ready', async () => {
      await cp.restartApiServer();
      assert.equal((await cp.kubectl(['scale', 'deployment', 'web', '--replicas=3'])).exitCode, 0);
      await eventually('three Running pods', async () => runningIps(await podsOf()).length === 3, WAIT_MS);
      assert.match((await cp.kubectl(['get', 'node', 'node-1'])).stdout, /^node-1\s+Ready\s/m);
      assert.equal((await cp.kubectl(['scale', 'deployment', 'web', '--replicas=2'])).exitCode, 0);
      await eventually('back to two pods', async () => (await podsOf()).length === 2 && runtime.podCount === 2, WAIT_MS);
    });

    await t.test('a restarted kubelet adopts the running pods and stops one deleted while it was away', async () => {
      await kubelet.stop();
      const [kept, gone] = await podsOf();
      // Force-deleted while no kubelet watches: the object goes at once, the pod still runs.
      assert.equal((await cp.kubectl(['delete', 'pod', gone!.metadata.name, '--grace-period=0', '--force'])).exitCode, 0);
      const sandboxes = runtime.callsOf('runPodSandbox').length;
      const starts = runtime.callsOf('startContainer').length;
      kubelet = newKubelet();
      await kubelet.start();
      await eventually('the orphan stopped', () => runtime.callsOf(`stopPodSandbox default/${gone!.metadata.name} `).length === 1, WAIT_MS);
      const adopted = (await podsOf()).find((p) => p.metadata.uid === kept!.metadata.uid)!;
      assert.equal(adopted.status.phase, 'Running');
      assert.equal(condition(adopted, 'Ready'), 'True');
      assert.equal(adopted.status.podIP, kept!.status.podIP);
      // The ReplicaSet's replacement for the force-deleted pod starts; the kept pod did not start again.
      await eventually('two Running pods again', async () => runningIps(await podsOf()).length === 2, WAIT_MS);
      assert.equal(runtime.callsOf('runPodSandbox').length, sandboxes + 1);
      assert.equal(runtime.callsOf('startContainer').length, starts + 1);
      assert.equal(runtime.callsOf(`runPodSandbox default/${kept!.metadata.name}`).length, 1);
      assert.equal(kubelet.health.pods.synced, true);
      assert.equal(kubelet.health.node.registered, true);
    });
  } finally {
    await kubelet.stop();
  }
});

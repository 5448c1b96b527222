// The agent's view of a real cluster: its KubeSource (AGENT_KINDS, the pod
// field selector) under the meshlet-agent ServiceAccount of
// daemonset/rbac.yaml, against an API server with the real controllers and
// the sandbox's kubelet (in-memory runtime), so Deployments get pods, the
// kubelet's readiness probes decide Ready, and the EndpointSlice controller
// writes the slices. What the agent converts (and the ztunnel resolves) must
// be what the ready EndpointSlice endpoints say.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterState, type StateUpdate } from '../../lib/cluster/cluster-state.ts';
import { isRecord } from '../../lib/cluster/objects.ts';
import { parseCidr } from '../../lib/core/cidr.ts';
import { AGENT_KINDS, AGENT_POD_FIELD_SELECTOR } from '../../lib/cluster/sources/kube-kinds.ts';
import { KubeSource } from '../../lib/cluster/sources/kube.ts';
import type { ClusterUpdate } from '../../lib/cluster/sources/source.ts';
import { jsonLogger, silentLogger, type Logger } from '../../lib/core/log.ts';
import { parseControlMessage } from '../../lib/mesh/control-protocol.ts';
import type { Service, ServiceEndpoint } from '../../lib/mesh/model.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { Kubelet } from '../../sandbox/kubelet/kubelet.ts';
import type { NodeConfig } from '../../sandbox/kubelet/node.ts';
import { applyObjects, asServiceAccount, kubectlOk, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';
import { RecordingRuntime } from '../support/recording-runtime.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url);
/** The test control plane's --service-cluster-ip-range (test/support/control-plane.ts). */
const SERVICE_CIDR = '10.96.0.0/16';
const NODE: NodeConfig = { name: 'node-1', addresses: ['10.200.0.11'], podCIDRs: ['10.244.1.0/24'], capacity: { cpu: '8', memory: '16Gi', pods: '110' } };
const NS = 'demo';
const WAIT_MS = 90_000;
/** Fast retries: a kind whose CRD is not installed is polled at slowMs. */
const BACKOFF = { initialMs: 100, maxMs: 1000, slowMs: 1000 };
/** MESHLET_TEST_LOG=1 prints the kubelet's and the source's logs. */
const log: Logger = process.env.MESHLET_TEST_LOG ? jsonLogger('agent-source', process.stderr) : silentLogger;

/** A Deployment of pods labelled app=web whose port `http` is `httpPort`: the Service's named targetPort resolves to it. */
const deployment = (name: string, replicas: number, httpPort: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: NS },
  spec: {
    replicas,
    selector: { matchLabels: { app: 'web', track: name } },
    template: {
      metadata: { labels: { app: 'web', track: name } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [{
          name: 'app',
          image: 'meshlet/idle',
          ports: [{ name: 'http', containerPort: httpPort }],
          readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 },
        }],
      },
    },
  },
});

/** In the node's network namespace: its address is the node's, and the Service selects it all the same. */
const HOST_POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'host-web', namespace: NS, labels: { app: 'web' } },
  spec: { hostNetwork: true, terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: 'meshlet/idle', ports: [{ name: 'http', containerPort: 8080 }] }] },
};

const SERVICE = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: NS },
  spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
};

interface SliceJson {
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean | null } }[] | null;
  ports?: { name?: string; port?: number }[] | null;
}

interface PodJson {
  metadata: { name: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  status: { podIP?: string; phase?: string; conditions?: { type: string; status: string }[] };
}

async function json<T>(cp: TestControlPlane, args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk(cp, [...args, '-o', 'json'])) as T;
}

/** What the EndpointSlices say, read with the admin's credentials: each ready address (ready unset counts) with its slice's ports, by address. */
async function readySliceEndpoints(cp: TestControlPlane): Promise<ServiceEndpoint[]> {
  const slices = await json<{ items: SliceJson[] }>(cp, ['-n', NS, 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=web']);
  const endpoints: ServiceEndpoint[] = [];
  for (const slice of slices.items) {
    const ports = Object.fromEntries((slice.ports ?? []).filter((p) => p.port !== undefined).map((p) => [p.name ?? '', p.port!]));
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) endpoints.push({ ip, ports });
    }
  }
  return endpoints.sort((a, b) => a.ip.localeCompare(b.ip));
}

test('the agent, under its own ServiceAccount, sees pods and takes each Service\'s endpoints from its ready EndpointSlice endpoints', async (t) => {
  const cp = await startTestControlPlane(t, { controllers: true });
  await kubectlOk(cp, ['apply', '-f', RBAC_FILE.pathname]);
  const account = 'system:serviceaccount:meshlet-system:meshlet-agent';
  // The authorizer sees new bindings through its informers, a moment after the apply.
  await eventually('RBAC to admit the agent', async () => (await cp.kubectl(['auth', 'can-i', 'watch', 'endpointslices.discovery.k8s.io', `--as=${account}`])).stdout.trim() === 'yes', WAIT_MS);
  const agent = await asServiceAccount(cp, 'meshlet-agent', 'meshlet-system');

  const nodeKubeconfig = new KubeConfig();
  nodeKubeconfig.loadFromFile(await cp.userKubeconfig(`system:node:${NODE.name}`, ['system:nodes']));
  const runtime = new RecordingRuntime();
  /** Pods (by UID) whose readiness probe fails. */
  const unready = new Set<string>();
  runtime.execHandler = (uid, _container, argv) => (argv[0] === 'ready' && unready.has(uid) ? { exitCode: 1, output: 'told to fail' } : { exitCode: 0, output: '' });
  const kubelet = new Kubelet({ kubeConfig: nodeKubeconfig, runtime, node: NODE, log, leaseRenewIntervalMs: 1000, statusCheckIntervalMs: 1000 });
  // After hooks run in order: the kubelet and the source stop before the control plane (registered first) does.
  t.after(() => kubelet.stop());
  await kubelet.start();

  const source = new KubeSource({ kubeconfig: agent.kc, kinds: AGENT_KINDS, podFieldSelector: AGENT_POD_FIELD_SELECTOR, log, backoff: BACKOFF });
  t.after(() => source.stop());
  let latest: ClusterUpdate | undefined;
  await source.start((update) => (latest = update));

  /** What the agent makes of what it sees now. */
  const converted = (): StateUpdate => {
    assert.ok(latest, 'the source delivered an update');
    // With the API server's Service range: the rules on who owns an address hold of everything a real cluster makes.
    return new ClusterState({ serviceCidrs: [parseCidr(SERVICE_CIDR)!] }).update(latest.objects);
  };
  const web = (update: StateUpdate): Service | undefined => update.state.services.find((s) => s.namespace === NS && s.name === 'web');
  const webPods = async (track: string) => (await json<{ items: PodJson[] }>(cp, ['-n', NS, 'get', 'pods', '-l', `track=${track}`])).items.filter((p) => !p.metadata.deletionTimestamp);
  const isReady = (p: PodJson) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

  /** Waits until the agent's endpoints for web are the ready slice endpoints (less the hostNetwork pod's address) and `check` holds of them. */
  const endpointsSettle = (what: string, check: (endpoints: ServiceEndpoint[]) => boolean) => eventually(what, async () => {
    const expected = (await readySliceEndpoints(cp)).filter((e) => e.ip !== NODE.addresses[0]);
    const endpoints = web(converted())?.endpoints;
    return endpoints !== undefined && JSON.stringify(endpoints) === JSON.stringify(expected) && check(endpoints) && endpoints;
  }, WAIT_MS);
  const byPort = (endpoints: ServiceEndpoint[], port: number) => endpoints.filter((e) => e.ports.http === port).map((e) => e.ip);

  await t.test('the agent\'s calls are all allowed: every core kind lists and watches, pods with the server-side selector', () => {
    const status = source.status();
    assert.equal(status.synced, true);
    const informers = new Map(status.informers!.map((i) => [i.kind, i]));
    for (const kind of ['v1 Namespace', 'v1 Pod', 'v1 Node', 'v1 Service', 'discovery.k8s.io/v1 EndpointSlice']) {
      const informer = informers.get(kind);
      assert.ok(informer?.synced, `${kind} synced: ${JSON.stringify(informer)}`);
      assert.equal(informer.lastError, undefined, kind);
    }
    assert.equal(informers.get('v1 Pod')!.fieldSelector, AGENT_POD_FIELD_SELECTOR);
    // Istio's CRDs are not installed here: not served, which does not hold back the sync.
    assert.equal(informers.get('security.istio.io/v1 AuthorizationPolicy')!.missing, true);
  });

  await applyObjects(cp, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  // The ServiceAccount controller makes `default`; admission refuses a bare pod until it exists (ReplicaSets retry on their own).
  await eventually('the namespace\'s default ServiceAccount', async () => (await cp.kubectl(['-n', NS, 'get', 'serviceaccount', 'default'])).exitCode === 0, WAIT_MS);
  await applyObjects(cp, deployment('web', 1, 8080), deployment('web-alt', 1, 9090), HOST_POD, SERVICE);

  await t.test('a Deployment\'s pods are workloads and its ready pods the Service\'s endpoints, the named targetPort resolved per pod', async () => {
    const endpoints = await endpointsSettle('one endpoint on 8080 and one on 9090', (e) => byPort(e, 8080).length === 1 && byPort(e, 9090).length === 1);
    const [pod] = await webPods('web');
    const [alt] = await webPods('web-alt');
    assert.deepEqual(endpoints, [{ ip: pod!.status.podIP, ports: { http: 8080 } }, { ip: alt!.status.podIP, ports: { http: 9090 } }].sort((a, b) => a.ip!.localeCompare(b.ip!)));
    const { state, rejected } = converted();
    // A real API server's objects pass every rule: names, UIDs, pod IPs in the node's pod CIDR, ClusterIPs in the Service range.
    assert.deepEqual(rejected, []);
    const workload = state.workloads.find((w) => w.name === pod!.metadata.name);
    assert.ok(workload, 'the web pod is a workload');
    assert.deepEqual([workload.node, workload.serviceAccount, workload.enrolled, workload.uid], [NODE.name, 'default', true, pod!.metadata.uid]);
    assert.deepEqual(state.nodes, [{ name: NODE.name, address: NODE.addresses[0] }]);
    // The ztunnel picks among them: both are reachable on their own port through the VIP.
    const vip = web(converted())!.vips[0]!;
    const view = new StateStore().apply(parseControlMessage(JSON.parse(JSON.stringify({ type: 'snapshot', version: 1, state }))));
    assert.deepEqual(view.serviceAt(vip, 80)?.endpoints.map((e) => `${e.workload.name} ${e.ip}:${e.port}`).sort(), [
      `${pod!.metadata.name} ${pod!.status.podIP}:8080`, `${alt!.metadata.name} ${alt!.status.podIP}:9090`,
    ].sort());
  });

  await t.test('a hostNetwork pod is never a workload: the API server leaves it out, and its endpoint is left out with a warning', async () => {
    const host = await eventually('the hostNetwork pod ready in the slice', async () => {
      const p = await json<PodJson>(cp, ['-n', NS, 'get', 'pod', 'host-web']);
      return isReady(p) && (await readySliceEndpoints(cp)).some((e) => e.ip === NODE.addresses[0]) && p;
    }, WAIT_MS);
    assert.equal(host.status.podIP, NODE.addresses[0]);
    const update = await eventually('the agent to see the slice with the node address', () => {
      const u = converted();
      return u.endpointWarnings.length > 0 && u;
    }, WAIT_MS);
    assert.ok(latest!.objects.every((o) => o.kind !== 'Pod' || (isRecord(o.metadata) && o.metadata.name !== 'host-web')), 'the host pod is not among the pods the agent receives');
    assert.ok(update.state.workloads.every((w) => w.name !== 'host-web'));
    assert.ok(web(update)!.endpoints.every((e) => e.ip !== NODE.addresses[0]));
    assert.equal(update.endpointWarnings.length, 1);
    assert.match(update.endpointWarnings[0]!.object, /^EndpointSlice demo\/web-/);
    assert.match(update.endpointWarnings[0]!.warning, new RegExp(`ready endpoint ${NODE.addresses[0]!.replaceAll('.', '\\.')} is no running pod's address, so the mesh does not route Service demo/web to it`));
  });

  await t.test('scaling 1→3 adds the new pods to the endpoints as they become ready', async () => {
    await kubectlOk(cp, ['-n', NS, 'scale', 'deployment', 'web', '--replicas=3']);
    const endpoints = await endpointsSettle('three endpoints on 8080', (e) => byPort(e, 8080).length === 3);
    const ready = (await webPods('web')).filter(isReady).map((p) => p.status.podIP!).sort();
    assert.deepEqual(byPort(endpoints, 8080).sort(), ready);
  });

  await t.test('a pod that fails readiness leaves the endpoints, and stays a workload; once ready again it returns', async () => {
    const [failing] = await webPods('web');
    unready.add(failing!.metadata.uid);
    const endpoints = await endpointsSettle('the failing pod out', (e) => byPort(e, 8080).length === 2);
    assert.ok(!endpoints.some((e) => e.ip === failing!.status.podIP));
    assert.ok(converted().state.workloads.some((w) => w.uid === failing!.metadata.uid), 'a not-ready pod is still a workload');
    unready.delete(failing!.metadata.uid);
    await endpointsSettle('the pod back', (e) => byPort(e, 8080).includes(failing!.status.podIP!) && byPort(e, 8080).length === 3);
  });

  await t.test('scaling 3→1 takes the removed pods out', async () => {
    await kubectlOk(cp, ['-n', NS, 'scale', 'deployment', 'web', '--replicas=1']);
    const endpoints = await endpointsSettle('one endpoint on 8080', (e) => byPort(e, 8080).length === 1);
    await eventually('one web pod left', async () => (await webPods('web')).length === 1, WAIT_MS);
    const [left] = await webPods('web');
    assert.deepEqual(byPort(endpoints, 8080), [left!.status.podIP]);
    assert.equal(byPort(endpoints, 9090).length, 1);
  });
});

// The sandbox's container runtime under the real kubelet and a real control
// plane: a node namespace (as `sandbox up` builds it), pods as network
// namespaces on routed veths and cgroups in the kubelet's layout, containers
// as host processes (python's http.server) with the capabilities their
// securityContext leaves them, probes from the node namespace,
// EndpointSlices from the real controllers, a kubelet restart that adopts
// what runs, and pod volumes (projected tokens, ConfigMaps, the downward API,
// emptyDir) at their mount paths with in-cluster access to the API server.
// The kubelet runs in this process, in the root namespace, and talks to the
// API server on 127.0.0.1; pods reach it through a relay on the underlay, as
// the sandbox's pods reach its API server there.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { AuthenticationV1Api, CoreV1Api, DiscoveryV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { CA_TOKEN_DIR as TOKEN_DIR, CA_TOKEN_FILE as TOKEN_FILE, TRUST_BUNDLE_DIR, TRUST_BUNDLE_KEY, WAYPOINT_CONTAINER, waypointObjects } from '../../ca/waypoint-objects.ts';
import { run } from '../../lib/core/exec.ts';
import { kubeconfigMap } from '../../lib/install/ca-deployment.ts';
import {
  AGENT_ACCOUNT, AGENT_ADMIN_SOCKET, AGENT_CONTAINER, BPF_PIN_DIR, CA_TOKEN_AUDIENCE, CA_TOKEN_DIR as NODE_CA_TOKEN_DIR, CA_TOKEN_FILE as NODE_CA_TOKEN_FILE,
  KUBECONFIG_DIR, KUBECONFIG_KEY, NODE_DAEMONSET, SERVICE_ACCOUNT_DIR, ZTUNNEL_CONTAINER,
} from '../../lib/install/names.ts';
import { agentEntryScript, nodeDaemonSet } from '../../lib/install/node.ts';
import { installDefaults } from '../../lib/install/options.ts';
import { rbacManifests } from '../../lib/install/rbac.ts';
import { jsonLogger, silentLogger, type Logger } from '../../lib/core/log.ts';
import { controlPlaneBinaries } from '../../sandbox/controlplane/binaries.ts';
import { cgroup2Root, removeCgroup } from '../../sandbox/cgroup.ts';
import type { SandboxNodeInfo } from '../../sandbox/info.ts';
import { kubepodsCgroup } from '../../lib/cluster/cgroup-layout.ts';
import { BPF_ROOT, NODE_CNI_BIN_DIR, NODE_CNI_CONF_DIR, nodeDir, nodeRootDir, planNode, podCgroup, podNetns, podVeth, prefixOf, RUN_ROOT } from '../../sandbox/layout.ts';
import { deleteNetns, listNetns, netnsExists } from '../../sandbox/netns.ts';
import { createNode, createUnderlay } from '../../sandbox/topology.ts';
import { Kubelet } from '../../sandbox/kubelet/kubelet.ts';
import { NODE_NAMESPACE_READER, POD_SECURITY_ENFORCE, PrivilegedNamespaces } from '../../sandbox/kubelet/pod-security.ts';
import { SandboxRuntime } from '../../sandbox/kubelet/sandbox-runtime.ts';
import { startTestControlPlane } from '../support/control-plane.ts';
import { eventually, leftovers, runName } from '../support/harness.ts';

const NAME = runName('krt');
const PREFIX = prefixOf(NAME);
const WAIT_MS = 90_000;
/** The test's underlay address, where the API server is relayed for pods (its certificate names it). */
const UNDERLAY_IP = '10.200.0.1';
const RELAY_PORT = 6443;
/** MESHLET_TEST_LOG=1 prints the kubelet's and the runtime's log. */
const log: Logger = process.env.MESHLET_TEST_LOG ? jsonLogger('kubelet', process.stderr) : silentLogger;

/** Node 1 as `sandbox up` plans it, IPv4 only (the test control plane's cluster CIDR is single-stack). */
function planTestNode(cgroupRoot: string): SandboxNodeInfo {
  const { nodeIp6: _n, podCidr6: _c, captureIp6: _cap, probeSourceIp6: _p, inboundSourceIp6: _i, ...node } = planNode(NAME, 1, cgroupRoot);
  return node;
}

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
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'app',
            image: 'python',
            command: ['python3', '-m', 'http.server'],
            args: ['$(PORT)', '--bind', '0.0.0.0'],
            workingDir: '/tmp',
            ports: [{ name: 'http', containerPort: 8080 }],
            env: [
              { name: 'PORT', value: '8080' },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
              { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            ],
            readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
          },
          {
            // No command: it runs idle. Its readiness holds only inside the pod: its own eth0 carries the pod IP.
            name: 'idle',
            image: 'busybox',
            securityContext: { capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] } },
            env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
            readinessProbe: { exec: { command: ['sh', '-c', 'ip -4 -o addr show dev eth0 | grep -qF " $POD_IP/"'] }, periodSeconds: 1, failureThreshold: 1 },
          },
        ],
      },
    },
  },
};
const SERVICE = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } };

interface StoredState {
  pods: Record<string, { ips: string[]; cgroup: string; netns: string; containers: Record<string, { id: string; pid: number; cgroup: string; instance: number }> }>;
}

/** A ConfigMap and a pod with every kind of volume the sandbox materialises (and the ServiceAccount's, which admission adds). */
const SETTINGS = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'default' }, data: { greeting: 'hello', other: 'more' } };
const CREDS = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: 'default' }, stringData: { password: 's3cret' } };
const TEST_AUDIENCE = 'meshlet-test';
const VOLUME_POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'volumes', namespace: 'default', labels: { app: 'volumes', tier: 'test' } },
  spec: {
    terminationGracePeriodSeconds: 1,
    containers: [
      {
        name: 'reader',
        image: 'busybox',
        volumeMounts: [
          { name: 'bundle', mountPath: '/var/run/secrets/meshlet-test/bundle' },
          { name: 'settings', mountPath: '/run/meshlet-test/settings' },
          { name: 'scratch', mountPath: '/var/run/meshlet-test/scratch', readOnly: true },
          { name: 'creds', mountPath: '/run/meshlet-test/creds' },
        ],
      },
      {
        // Its own process writes into the emptyDir the other container reads.
        name: 'writer',
        image: 'busybox',
        command: ['sh', '-c', 'echo from-writer > /run/scratch/note && exec sleep infinity'],
        volumeMounts: [{ name: 'scratch', mountPath: '/run/scratch' }],
      },
    ],
    volumes: [
      {
        name: 'bundle',
        projected: {
          sources: [
            { serviceAccountToken: { audience: TEST_AUDIENCE, expirationSeconds: 600, path: 'token' } },
            { configMap: { name: 'settings', items: [{ key: 'greeting', path: 'conf/greeting' }] } },
            { downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] } },
          ],
        },
      },
      { name: 'settings', configMap: { name: 'settings' } },
      { name: 'scratch', emptyDir: {} },
      { name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } },
    ],
  },
};
/** A pod whose only container mounts `volume`; `mount` changes its volumeMount. */
const podWith = (name: string, volume: Record<string, unknown>, mount: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: 'refused' } },
  spec: {
    terminationGracePeriodSeconds: 1,
    containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/run/data', ...mount }] }],
    volumes: [{ name: 'data', ...volume }],
  },
});

/** The payload of a JWT, undecoded claims as the API server wrote them. */
const jwtClaims = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

test('the sandbox runtime runs a Deployment for the real kubelet', { timeout: 420_000 }, async (t) => {
  const cgroupRoot = join(cgroup2Root(), PREFIX);
  const runDir = nodeDir(NAME, 'node-1');
  const underlay = `${PREFIX}-underlay`;
  // What the host's /run holds before: mount paths under /run and /var/run are made in the containers' own, never here.
  // Not the run root, nor /run/netns, which iproute2 makes on a machine's first `ip netns add` and keeps.
  const hostRunEntries = (): string[] => readdirSync('/run').filter((n) => n !== 'meshlet' && n !== 'netns').sort();
  const hostRun = hostRunEntries();
  let kubelet: Kubelet | undefined;
  let runtime: SandboxRuntime | undefined;
  let relay: ReturnType<typeof spawn> | undefined;
  // The node's bpffs is a directory of the host's, as `sandbox up` mounts it; unmounted again if this test mounted it.
  const bpffsMounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');
  if (!bpffsMounted) assert.equal((await run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'])).exitCode, 0);
  // First registered, so it runs before the control plane stops; it runs on failure too.
  t.after(async () => {
    await kubelet?.stop();
    runtime?.close();
    if (relay?.pid !== undefined) process.kill(-relay.pid, 'SIGKILL');
    await removeCgroup(cgroupRoot);
    for (const ns of await listNetns()) if (ns.startsWith(`${PREFIX}-`)) await deleteNetns(ns);
    await rm(join(RUN_ROOT, NAME), { recursive: true, force: true });
    await rm(join(BPF_ROOT, NAME), { recursive: true, force: true });
    await rmdir(BPF_ROOT).catch(() => undefined);
    if (!bpffsMounted) await run('umount', ['/sys/fs/bpf']);
    assert.deepEqual(await leftovers(NAME), [], 'the test left something behind');
    assert.deepEqual(hostRunEntries(), hostRun, 'the host\'s /run is as it was');
  });

  const node = planTestNode(cgroupRoot);
  await createUnderlay(underlay, `${UNDERLAY_IP}/24`);
  await createNode(underlay, node, [node]);

  const cp = await startTestControlPlane(t, { controllers: true, serverNames: [UNDERLAY_IP] });
  // One socat per connection, in the underlay, each piping to the API server in this namespace; its own process group, killed whole.
  const apiPort = new URL(cp.server).port;
  relay = spawn('nsenter', [`--net=/run/netns/${underlay}`, '--', 'socat', `TCP-LISTEN:${RELAY_PORT},bind=${UNDERLAY_IP},fork,reuseaddr`, `EXEC:nsenter --net=/proc/${process.pid}/ns/net socat STDIO TCP\\:127.0.0.1\\:${apiPort}`], { stdio: 'ignore', detached: true });
  const admin = new KubeConfig();
  admin.loadFromFile(cp.kubeconfig);
  const core = admin.makeApiClient(CoreV1Api);
  const discovery = admin.makeApiClient(DiscoveryV1Api);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await cp.userKubeconfig('system:node:node-1', ['system:nodes']));

  // As `sandbox up` sets its cluster up: nodes read Namespaces for their Pod Security level.
  for (const object of NODE_NAMESPACE_READER) assert.equal((await cp.kubectl(['apply', '-f', '-'], JSON.stringify(object))).exitCode, 0);
  const start = async (): Promise<void> => {
    const namespaces = new PrivilegedNamespaces(kubeConfig.makeApiClient(CoreV1Api), log);
    runtime = new SandboxRuntime({ sandbox: NAME, node, runDir, log, apiServer: { host: UNDERLAY_IP, port: RELAY_PORT }, privilegedNamespace: (ns) => namespaces.privileged(ns) });
    kubelet = new Kubelet({
      kubeConfig, runtime, log,
      node: { name: node.name, addresses: [node.nodeIp4], podCIDRs: [node.podCidr], capacity: { cpu: '4', memory: '8Gi', pods: '110' } },
      probeSourceIp4: node.probeSourceIp4!,
      leaseRenewIntervalMs: 1000, statusCheckIntervalMs: 1000, volumeResyncIntervalMs: 1000,
    });
    await kubelet.start();
  };
  await start();

  const state = (): StoredState => JSON.parse(readFileSync(join(runDir, 'runtime-state.json'), 'utf8')) as StoredState;
  const pods = async (): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items.filter((p) => !p.metadata?.deletionTimestamp);
  const ready = (p: V1Pod): boolean => p.status?.phase === 'Running' && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  const status = (p: V1Pod, container: string) => p.status?.containerStatuses?.find((c) => c.name === container);
  const readyEndpoints = async (): Promise<string[]> => {
    const slices = await discovery.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=web' });
    return slices.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready).map((e) => e.addresses[0]!).sort();
  };
  const twoReady = () => eventually('two Ready pods', async () => {
    const items = await pods();
    if (items.length === 2 && items.every(ready)) return items;
    // Quoted when the wait times out.
    throw new Error(JSON.stringify(items.map((p) => [p.metadata?.name, p.status?.phase, p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.state])])));
  }, WAIT_MS);
  const exec = async (p: V1Pod, container: string, argv: string[]) => {
    const r = await runtime!.exec(p.metadata!.uid!, container, argv, AbortSignal.timeout(20_000));
    assert.equal(r.exitCode, 0, `${argv.join(' ')} in ${p.metadata?.name}/${container}: ${r.output}`);
    return r.output;
  };

  for (const manifest of [DEPLOYMENT, SERVICE]) {
    const r = await cp.kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
    assert.equal(r.exitCode, 0, r.stderr);
  }

  let running = await twoReady();

  await t.test('pods run with addresses from the node\'s CIDR, in namespaces and cgroups in the kubelet\'s layout', () => {
    const ips = running.map((p) => p.status!.podIP!);
    assert.equal(new Set(ips).size, 2);
    for (const p of running) {
      assert.match(p.status!.podIP!, /^10\.244\.1\.(\d+)$/);
      assert.deepEqual(p.status!.podIPs!.map((x) => x.ip), [p.status!.podIP]);
      assert.equal(p.status!.hostIP, node.nodeIp4);
      const uid = p.metadata!.uid!;
      const stored = state().pods[uid]!;
      assert.deepEqual(stored.ips, [p.status!.podIP]);
      assert.equal(stored.netns, podNetns(NAME, uid));
      // Node 1 lays pods out as the systemd driver does; the API server set the QoS class.
      assert.equal(p.status!.qosClass, 'BestEffort');
      assert.equal(stored.cgroup, podCgroup(node, p));
      assert.match(stored.cgroup, new RegExp(`/kubepods\\.slice/kubepods-besteffort\\.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}\\.slice$`));
      for (const c of ['app', 'idle']) {
        const sc = stored.containers[c]!;
        assert.equal(sc.cgroup, join(stored.cgroup, `meshlet-${sc.id}.scope`), 'each container in its own cgroup below the pod\'s');
        assert.ok(readFileSync(join(sc.cgroup, 'cgroup.procs'), 'utf8').split('\n').includes(String(sc.pid)));
        assert.equal(status(p, c)?.containerID, `meshlet://${sc.id}`);
      }
    }
  });

  await t.test('readiness probes (httpGet from the node namespace, exec in the pod) make the pods the Service\'s ready endpoints', async () => {
    const ips = running.map((p) => p.status!.podIP!).sort();
    await eventually('the ready endpoints are the pods', async () => JSON.stringify(await readyEndpoints()) === JSON.stringify(ips) || undefined, WAIT_MS);
    // python logs each request with its client: the probes came from the node's probe source address.
    const p = running[0]!;
    const logFile = runtime!.logFile({ namespace: 'default', name: p.metadata!.name!, uid: p.metadata!.uid! }, 'app', 0);
    assert.match(logFile, new RegExp(`/nodes/node-1/pods/default_${p.metadata!.name}_${p.metadata!.uid}/app/0\\.log$`));
    await eventually('a probe in the log', async () => (await readFile(logFile, 'utf8')).includes(`${node.probeSourceIp4} - - `) || undefined);
  });

  await t.test('each pod has its address alone on a routed veth, and containers and execs have their capabilities only', async () => {
    for (const p of running) {
      const ip = p.status!.podIP!;
      assert.match(await exec(p, 'idle', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']), new RegExp(` ${ip.replaceAll('.', '\\.')}/32 `));
      const route = await run('ip', ['-n', node.netns, '-4', 'route', 'show', `${ip}/32`]);
      assert.match(route.stdout, new RegExp(`dev ${podVeth(p.metadata!.uid!)} .*src ${node.probeSourceIp4!.replaceAll('.', '\\.')}`));
      const capEff = async (container: string) => (await exec(p, container, ['grep', '^CapEff:', '/proc/self/status'])).trim();
      assert.equal(await capEff('app'), 'CapEff:\t00000000a80425fb', 'containerd\'s default set');
      assert.equal(await capEff('idle'), 'CapEff:\t0000000000000400', 'drop ALL, add NET_BIND_SERVICE');
      const main = readFileSync(`/proc/${state().pods[p.metadata!.uid!]!.containers.app!.pid}/status`, 'utf8');
      assert.match(main, /^CapBnd:\t00000000a80425fb$/m, 'the container\'s own process too');
    }
  });

  await t.test('containers get their env from values and fieldRefs, with $(VAR) expanded', async () => {
    const p = running[0]!;
    const out = await exec(p, 'app', ['sh', '-c', 'echo "$POD_NAME $POD_NAMESPACE $POD_IP $NODE_NAME $PORT $(pwd)"']);
    assert.equal(out.trim(), `${p.metadata!.name} default ${p.status!.podIP} node-1 8080 /tmp`);
    const argv = readFileSync(`/proc/${state().pods[p.metadata!.uid!]!.containers.app!.pid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(argv.slice(1, 5), ['-m', 'http.server', '8080', '--bind']);
    const idle = readFileSync(`/proc/${state().pods[p.metadata!.uid!]!.containers.idle!.pid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(idle.slice(0, 2), ['sleep', 'infinity'], 'a container without a command runs idle');
  });

  await t.test('one pod reaches the other\'s server through the node\'s routes', async () => {
    const [a, b] = running;
    const out = await exec(a!, 'idle', ['curl', '-sf', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', `http://${b!.status!.podIP}:8080/`]);
    assert.equal(out, '200');
  });

  await t.test('a container killed from outside is reported and restarted', async () => {
    const p = running[0]!;
    const before = state().pods[p.metadata!.uid!]!.containers.app!;
    process.kill(before.pid, 'SIGKILL');
    const after = await eventually('app restarted', async () => {
      const now = (await core.readNamespacedPod({ name: p.metadata!.name!, namespace: 'default' }));
      const s = status(now, 'app');
      return s?.restartCount === 1 && s.state?.running && ready(now) && s;
    }, WAIT_MS);
    assert.equal(after.lastState?.terminated?.exitCode, 137);
    assert.equal(after.lastState?.terminated?.signal, 9);
    assert.equal(after.lastState?.terminated?.containerID, `meshlet://${before.id}`);
    const next = state().pods[p.metadata!.uid!]!.containers.app!;
    assert.notEqual(next.id, before.id);
    assert.equal(next.instance, 1);
    assert.equal(existsSync(before.cgroup), false, 'the dead instance\'s cgroup is removed');
    assert.ok(existsSync(runtime!.logFile({ namespace: 'default', name: p.metadata!.name!, uid: p.metadata!.uid! }, 'app', 1)));
    assert.equal(status(await core.readNamespacedPod({ name: p.metadata!.name!, namespace: 'default' }), 'idle')?.restartCount, 0);
  });

  await t.test('a restarted kubelet and runtime adopt the running pods without restarting them, and notice their exits', async () => {
    running = await twoReady();
    const ids = () => running.map((p) => `${p.metadata!.uid} ${status(p, 'app')?.containerID} ${status(p, 'idle')?.containerID}`).sort();
    const before = ids();
    const pids = JSON.stringify(state().pods);
    await kubelet!.stop();
    runtime!.close();
    await start();
    assert.equal(JSON.stringify(state().pods), pids, 'nothing started again');
    running = await twoReady();
    assert.deepEqual(ids(), before);
    // Ready again from the adopted instance's probes, the same containers.
    await eventually('endpoints ready', async () => (await readyEndpoints()).length === 2 || undefined, WAIT_MS);
    const p = running[1]!;
    const adopted = state().pods[p.metadata!.uid!]!.containers.idle!;
    process.kill(adopted.pid, 'SIGTERM');
    const s = await eventually('the adopted idle container restarted', async () => {
      const now = await core.readNamespacedPod({ name: p.metadata!.name!, namespace: 'default' });
      const st = status(now, 'idle');
      return st?.restartCount === 1 && st.state?.running && st;
    }, WAIT_MS);
    assert.equal(s.lastState?.terminated?.containerID, `meshlet://${adopted.id}`);
    assert.equal(s.lastState?.terminated?.reason, 'Unknown', 'an adopted container\'s exit code is not known to the new runtime');
  });

  await t.test('a deleted pod\'s namespace, veth and cgroup are removed and its address freed', async () => {
    running = await twoReady();
    const p = running[0]!;
    const uid = p.metadata!.uid!;
    const stored = state().pods[uid]!;
    const r = await cp.kubectl(['delete', 'pod', p.metadata!.name!, '--wait=true']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(state().pods[uid], undefined);
    assert.equal(await netnsExists(stored.netns), false);
    assert.equal(existsSync(stored.cgroup), false);
    const veth = await run('ip', ['-n', node.netns, 'link', 'show', podVeth(uid)], { allowFailure: true });
    assert.notEqual(veth.exitCode, 0, 'the veth is gone');
    // The ReplicaSet's replacement may take the freed address; nothing else holds it.
    running = await twoReady();
    const held = Object.values(state().pods).flatMap((s) => s.ips).sort();
    assert.deepEqual(held, running.map((x) => x.status!.podIP!).sort());
  });

  await t.test('deleting the Deployment leaves nothing of its pods on the node', async () => {
    assert.equal((await cp.kubectl(['delete', 'deployment', 'web'])).exitCode, 0);
    await eventually('no pods', async () => (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items.length === 0 || undefined, WAIT_MS);
    assert.deepEqual(state().pods, {});
    assert.deepEqual((await listNetns()).filter((ns) => ns.startsWith(`${PREFIX}-`)).sort(), [node.netns, underlay].sort());
    const kubepods = join(node.cgroup, 'kubepods.slice', 'kubepods-besteffort.slice');
    assert.deepEqual((await readdir(kubepods, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name), []);
  });

  const authentication = admin.makeApiClient(AuthenticationV1Api);
  const apply = async (...objects: object[]): Promise<void> => {
    const r = await cp.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    assert.equal(r.exitCode, 0, r.stderr);
  };
  const podNamed = (name: string): Promise<V1Pod> => core.readNamespacedPod({ name, namespace: 'default' });
  const runningPod = (name: string): Promise<V1Pod> => eventually(`pod ${name} running`, async () => {
    const p = await podNamed(name);
    if (p.status?.phase === 'Running' && p.status.containerStatuses?.every((c) => c.state?.running)) return p;
    throw new Error(JSON.stringify(p.status?.containerStatuses?.map((c) => [c.name, c.state])));
  }, WAIT_MS);
  const review = async (token: string, audiences: string[]) =>
    (await authentication.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } })).status;
  const bundle = '/var/run/secrets/meshlet-test/bundle';
  const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';
  let volumesPod: V1Pod | undefined;

  await t.test('a pod\'s projected, ConfigMap, Secret, downward API and emptyDir volumes are files at its mount paths, made in the container\'s own /run', async () => {
    await apply(SETTINGS, CREDS, VOLUME_POD);
    const p = volumesPod = await runningPod('volumes');
    assert.equal(await exec(p, 'reader', ['cat', '/run/meshlet-test/creds/password']), 's3cret');
    assert.equal(await exec(p, 'reader', ['stat', '-L', '-c', '%a', '/run/meshlet-test/creds/password']), '400\n');
    assert.equal(await exec(p, 'reader', ['cat', `${bundle}/conf/greeting`]), 'hello');
    assert.equal(await exec(p, 'reader', ['cat', `${bundle}/name`]), 'volumes');
    assert.equal(await exec(p, 'reader', ['cat', `${bundle}/labels`]), 'app="volumes"\ntier="test"');
    assert.deepEqual((await exec(p, 'reader', ['ls', '/run/meshlet-test/settings'])).split('\n').filter(Boolean), ['greeting', 'other']);
    // The writer's own process wrote it, in the pod's one emptyDir.
    assert.equal(await exec(p, 'reader', ['cat', '/var/run/meshlet-test/scratch/note']), 'from-writer\n');
    assert.equal(await exec(p, 'writer', ['sh', '-c', 'echo more >> /run/scratch/note && cat /run/scratch/note']), 'from-writer\nmore\n');
    // API data volumes are read-only whatever the mount says; the emptyDir where its mount says so.
    const writes = await runtime!.exec(p.metadata!.uid!, 'reader', ['sh', '-c', `echo x > ${bundle}/x; echo y > /run/meshlet-test/settings/y; echo z > /var/run/meshlet-test/scratch/z`], AbortSignal.timeout(20_000));
    assert.equal(writes.output.match(/Read-only file system/g)?.length, 3, writes.output);
    // The ServiceAccount admission's volume, as in-cluster clients read it.
    assert.equal(await exec(p, 'reader', ['cat', `${serviceAccountDir}/namespace`]), 'default');
    assert.equal(await exec(p, 'reader', ['cat', `${serviceAccountDir}/ca.crt`]), readFileSync(cp.pki.caCert, 'utf8'));
    // The sandbox's run root is still an empty directory in pods.
    assert.equal(await exec(p, 'reader', ['ls', '-A', RUN_ROOT]), '');
    for (const path of ['/run/meshlet-test', '/run/secrets/meshlet-test', '/run/scratch']) assert.equal(existsSync(path), false, `${path} exists on the host`);
  });

  await t.test('a projected token is a TokenRequest token for its audience, bound to the pod', async () => {
    const p = volumesPod!;
    const uid = p.metadata!.uid!;
    const token = await exec(p, 'reader', ['cat', `${bundle}/token`]);
    const claims = jwtClaims(token);
    assert.deepEqual(claims.aud, [TEST_AUDIENCE]);
    assert.equal(claims.sub, 'system:serviceaccount:default:default');
    assert.deepEqual((claims['kubernetes.io'] as { pod: unknown }).pod, { name: 'volumes', uid });
    assert.equal(Number(claims.exp) - Number(claims.iat), 600, 'the expirationSeconds asked for');
    const status = await review(token, [TEST_AUDIENCE]);
    assert.equal(status?.authenticated, true, status?.error);
    assert.equal(status?.user?.username, 'system:serviceaccount:default:default');
    assert.deepEqual(status?.user?.extra?.['authentication.kubernetes.io/pod-uid'], [uid]);
    // Admission's token has the API server's own audience.
    const apiToken = await exec(p, 'reader', ['cat', `${serviceAccountDir}/token`]);
    assert.deepEqual((await review(apiToken, []))?.user?.extra?.['authentication.kubernetes.io/pod-name'], ['volumes']);
  });

  await t.test('a ConfigMap change reaches the mounted files', async () => {
    const p = volumesPod!;
    const r = await cp.kubectl(['patch', 'configmap', 'settings', '--type=merge', '-p', JSON.stringify({ data: { greeting: 'changed' } })]);
    assert.equal(r.exitCode, 0, r.stderr);
    await eventually('both copies changed', async () => {
      const now = await exec(p, 'reader', ['cat', `${bundle}/conf/greeting`, '/run/meshlet-test/settings/greeting']);
      return now === 'changedchanged' || undefined;
    }, WAIT_MS);
  });

  await t.test('a container reaches the API server with in-cluster config (kubectl and @kubernetes/client-node)', async () => {
    const p = volumesPod!;
    const kubectl = (await controlPlaneBinaries()).path('kubectl');
    const version = JSON.parse(await exec(p, 'reader', [kubectl, 'get', '--raw', '/version'])) as { gitVersion: string };
    assert.match(version.gitVersion, /^v1\./);
    assert.equal(await exec(p, 'reader', [kubectl, 'auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']), 'system:serviceaccount:default:default');
    const script = [
      "import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';",
      'const kc = new KubeConfig();',
      'kc.loadFromCluster();',
      "const r = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });",
      'console.log(JSON.stringify({ server: kc.getCurrentCluster()?.server, user: r.status?.userInfo }));',
    ].join('\n');
    const out = JSON.parse((await exec(p, 'reader', ['node', '--input-type=module', '-e', script])).trim().split('\n').pop()!) as { server: string; user: { username: string; extra: Record<string, string[]> } };
    assert.equal(out.server, `https://${UNDERLAY_IP}:${RELAY_PORT}`);
    assert.equal(out.user.username, 'system:serviceaccount:default:default');
    assert.deepEqual(out.user.extra['authentication.kubernetes.io/pod-uid'], [p.metadata!.uid]);
  });

  await t.test('the waypoint Deployment the controller renders gets its CA token, root certificate, env and `meshlet`', async () => {
    const rootPem = readFileSync(cp.pki.caCert, 'utf8');
    const settings = { image: 'meshlet', caUrl: 'https://10.200.0.2:15012', trustDomain: 'cluster.local', tokenAudience: 'meshlet-ca' };
    const gateway = {
      namespace: 'default', name: 'wp', uid: '00000000-0000-0000-0000-000000000001', generation: 1, className: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], labels: {}, annotations: {}, requestsAddresses: false, parametersRef: false,
      deleting: false, conditions: [], listenerConditions: new Map(),
    };
    const objects = waypointObjects(gateway, settings, rootPem);
    // No Gateway owns them here: the garbage collector would delete what names a missing owner.
    const unowned = (body: Record<string, unknown>): Record<string, unknown> => ({ ...body, metadata: { ...(body.metadata as object), ownerReferences: undefined } });
    const deployment = unowned(objects.deployment.body) as { spec: { template: { spec: { containers: Record<string, unknown>[] } } } };
    // The pod as rendered, but idle: `meshlet waypoint` itself needs a CA and its Gateway (test/e2e/waypoint*.ts bring them), and its probes would restart it without.
    const container = deployment.spec.template.spec.containers[0]!;
    Object.assign(container, { command: ['sleep', 'infinity'], args: [], startupProbe: undefined, readinessProbe: undefined });
    await apply(objects.trustBundle.body, unowned(objects.serviceAccount.body), deployment);
    const pod = await eventually('the waypoint pod', async () => (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'gateway.networking.k8s.io/gateway-name=wp' })).items.find((x) => x.status?.phase === 'Running'), WAIT_MS);
    const claims = jwtClaims(await exec(pod, WAYPOINT_CONTAINER, ['cat', `${TOKEN_DIR}/${TOKEN_FILE}`]));
    assert.deepEqual(claims.aud, [settings.tokenAudience]);
    assert.equal(claims.sub, 'system:serviceaccount:default:wp');
    assert.deepEqual((claims['kubernetes.io'] as { pod: unknown }).pod, { name: pod.metadata!.name, uid: pod.metadata!.uid });
    assert.equal(await exec(pod, WAYPOINT_CONTAINER, ['cat', `${TRUST_BUNDLE_DIR}/${TRUST_BUNDLE_KEY}`]), rootPem);
    const env = await exec(pod, WAYPOINT_CONTAINER, ['sh', '-c', 'echo "$POD_NAME $POD_NAMESPACE $POD_IP $NODE_NAME $SERVICE_ACCOUNT $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"']);
    assert.equal(env.trim(), `${pod.metadata!.name} default ${pod.status!.podIP} node-1 wp ${UNDERLAY_IP}:${RELAY_PORT}`);
    assert.equal((await exec(pod, WAYPOINT_CONTAINER, ['grep', '^CapEff:', '/proc/self/status'])).trim(), 'CapEff:\t0000000000000000', 'drop ALL');
    assert.match(await exec(pod, WAYPOINT_CONTAINER, ['meshlet', 'waypoint', '--help']), /--gateway/);
    assert.equal((await cp.kubectl(['delete', 'deployment', 'wp', '--wait=true'])).exitCode, 0);
  });

  await t.test('a hostNetwork, hostPID pod in a privileged namespace gets the capabilities it asks for, and its hostPath volumes are the node\'s: its own directories, its bpffs and its cgroup tree', async () => {
    const caps = ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'];
    await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'node-system', labels: { [POD_SECURITY_ENFORCE]: 'privileged' } } });
    const mounts = [
      { name: 'run', mountPath: '/run/meshlet' },
      { name: 'bpffs', mountPath: '/sys/fs/bpf' },
      { name: 'cgroup', mountPath: '/sys/fs/cgroup', readOnly: true },
    ];
    await apply({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: 'node-agent', namespace: 'node-system' },
      spec: {
        hostNetwork: true, hostPID: true, terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'writer', image: 'busybox', command: ['sh', '-c', 'echo from-writer > /run/meshlet/note && mkdir -p /sys/fs/bpf/pins && exec sleep infinity'], volumeMounts: mounts,
            securityContext: { capabilities: { drop: ['ALL'], add: caps } },
          },
          { name: 'reader', image: 'busybox', volumeMounts: [mounts[0]!] },
        ],
        volumes: [
          { name: 'run', hostPath: { path: '/run/meshlet', type: 'DirectoryOrCreate' } },
          { name: 'bpffs', hostPath: { path: '/sys/fs/bpf', type: 'Directory' } },
          { name: 'cgroup', hostPath: { path: '/sys/fs/cgroup', type: 'Directory' } },
        ],
      },
    });
    const p = await eventually('the node-agent pod', async () => {
      const pod = await core.readNamespacedPod({ name: 'node-agent', namespace: 'node-system' });
      return pod.status?.phase === 'Running' ? pod : undefined;
    }, WAIT_MS);
    const capEff = BigInt(`0x${(await exec(p, 'writer', ['grep', '^CapEff:', '/proc/self/status'])).split('\t')[1]!.trim()}`);
    // linux/capability.h: NET_ADMIN 12, SYS_PTRACE 19, SYS_ADMIN 21, PERFMON 38, BPF 39.
    assert.equal(capEff, [12n, 19n, 21n, 38n, 39n].reduce((m, bit) => m | (1n << bit), 0n), 'exactly the capabilities added, in a privileged namespace');
    const nodeRun = join(nodeRootDir(NAME, node.name), 'run', 'meshlet');
    await eventually('the writer\'s note', async () => existsSync(join(nodeRun, 'note')) || undefined, WAIT_MS);
    assert.equal(await exec(p, 'reader', ['cat', '/run/meshlet/note']), 'from-writer\n', 'both containers bind the node\'s directory');
    assert.equal(readFileSync(join(nodeRun, 'note'), 'utf8'), 'from-writer\n', 'below the node\'s own root, not the host\'s /run/meshlet');
    assert.ok(statSync(join(node.bpfDir, 'pins')).isDirectory(), 'the node\'s bpffs is writable where the volume is');
    assert.equal((await exec(p, 'writer', ['stat', '-f', '-c', '%T', '/sys/fs/bpf'])).trim(), 'bpf_fs');
    assert.ok((await exec(p, 'writer', ['ls', '/sys/fs/cgroup'])).split('\n').includes(kubepodsCgroup(node.cgroupDriver)), 'the node\'s cgroup tree at the cgroup v2 root, in the kubelet\'s layout');
    const readOnly = await runtime!.exec(p.metadata!.uid!, 'writer', ['mkdir', '/sys/fs/cgroup/meshlet-test'], AbortSignal.timeout(20_000));
    assert.notEqual(readOnly.exitCode, 0, 'a readOnly hostPath is read-only');
    assert.equal((await exec(p, 'writer', ['cat', '/proc/1/comm'])).trim(), readFileSync('/proc/1/comm', 'utf8').trim(), 'hostPID: PID 1 is the host\'s init, not tini');
    assert.ok((await exec(p, 'reader', ['ls', '/proc'])).split('\n').includes(String(process.pid)), 'hostPID: the node\'s processes are visible');
    assert.equal((await cp.kubectl(['delete', 'pod', '-n', 'node-system', 'node-agent', '--wait=true'])).exitCode, 0);
    assert.equal(readFileSync(join(nodeRun, 'note'), 'utf8'), 'from-writer\n', 'a hostPath outlives its pod');
  });

  await t.test('the node DaemonSet `meshlet install` renders runs here as rendered: its capabilities, host paths and credentials, and its agent\'s entry finds the pod\'s cgroup', async (st) => {
    // The CNI dirs as the sandbox installs meshlet (its runtime's, under /run): this host need not have /etc/cni or /opt/cni.
    const o = { ...installDefaults(), cniConfDir: NODE_CNI_CONF_DIR, cniBinDir: NODE_CNI_BIN_DIR };
    const rendered = nodeDaemonSet(o).object as unknown as { spec: { template: { spec: { containers: Record<string, unknown>[] } } } };
    // Idle: the agent and the ztunnel themselves need the mesh's API server, CA and Services (the sandbox's own e2e tests run them).
    for (const c of rendered.spec.template.spec.containers) Object.assign(c, { command: ['sleep', 'infinity'], args: [], readinessProbe: undefined });
    await apply(...rbacManifests(o.namespace).map((m) => m.object), kubeconfigMap(o).object, rendered);
    // Deleted whatever fails here: the later tests count the node's pods.
    st.after(async () => {
      assert.equal((await cp.kubectl(['delete', 'daemonset', '-n', o.namespace, NODE_DAEMONSET, '--ignore-not-found', '--wait=true'])).exitCode, 0);
      await eventually('the DaemonSet\'s pod gone', async () => (await core.listNamespacedPod({ namespace: o.namespace })).items.length === 0 || undefined, WAIT_MS);
    });
    const p = await eventually('the DaemonSet\'s pod on node-1', async () => {
      const pods = await core.listNamespacedPod({ namespace: o.namespace, labelSelector: `app.kubernetes.io/name=${NODE_DAEMONSET}` });
      return pods.items.find((x) => x.spec?.nodeName === node.name && x.status?.containerStatuses?.every((c) => c.state?.running));
    }, WAIT_MS);
    const capEff = async (container: string): Promise<bigint> => BigInt(`0x${(await exec(p, container, ['grep', '^CapEff:', '/proc/self/status'])).split('\t')[1]!.trim()}`);
    // linux/capability.h: NET_ADMIN 12, SYS_PTRACE 19, SYS_ADMIN 21, PERFMON 38, BPF 39.
    assert.equal(await capEff(AGENT_CONTAINER), [12n, 19n, 21n, 38n, 39n].reduce((m, bit) => m | (1n << bit), 0n), 'the agent: the capabilities it asks for, no more');
    assert.equal(await capEff(ZTUNNEL_CONTAINER), 0n, 'the ztunnel: none');
    const script = agentEntryScript(o);
    const execAgent = 'exec meshlet agent --ztunnel-cgroup "$dir" "$@"';
    assert.ok(script.includes(execAgent));
    const found = (await exec(p, AGENT_CONTAINER, ['sh', '-c', script.replace(execAgent, 'echo --ztunnel-cgroup "$dir"; exit 0')])).trim();
    const podCgroupDir = state().pods[p.metadata!.uid!]!.cgroup;
    assert.equal(found, `--ztunnel-cgroup ${join('/sys/fs/cgroup', relative(node.cgroup, podCgroupDir))}`, 'the pod\'s own cgroup, through the node\'s cgroup tree');
    assert.equal((await exec(p, AGENT_CONTAINER, ['stat', '-f', '-c', '%T', BPF_PIN_DIR.replace(/\/meshlet$/, '')])).trim(), 'bpf_fs');
    await exec(p, AGENT_CONTAINER, ['sh', '-c', `mkdir -p ${BPF_PIN_DIR} && touch ${AGENT_ADMIN_SOCKET}`]);
    assert.ok(statSync(join(node.bpfDir, 'meshlet')).isDirectory(), 'the pins go into the node\'s bpffs');
    await exec(p, ZTUNNEL_CONTAINER, ['test', '-e', AGENT_ADMIN_SOCKET]);
    await exec(p, AGENT_CONTAINER, ['touch', `${NODE_CNI_CONF_DIR}/probe`, `${NODE_CNI_BIN_DIR}/probe`]);
    for (const dir of [NODE_CNI_CONF_DIR, NODE_CNI_BIN_DIR]) assert.ok(statSync(join(nodeRootDir(NAME, node.name), dir, 'probe')).isFile(), `the agent's ${dir} is the node's`);
    assert.equal((await exec(p, ZTUNNEL_CONTAINER, ['sh', '-c', `test -e ${NODE_CNI_CONF_DIR}/probe && echo seen || echo unseen`])).trim(), 'unseen', 'the ztunnel does not see the CNI config');
    assert.match(await exec(p, AGENT_CONTAINER, ['cat', `${KUBECONFIG_DIR}/${KUBECONFIG_KEY}`]), /server: https:\/\/kubernetes\.default\.svc:443/);
    assert.equal(jwtClaims(await exec(p, AGENT_CONTAINER, ['cat', `${SERVICE_ACCOUNT_DIR}/token`])).sub, `system:serviceaccount:${o.namespace}:${AGENT_ACCOUNT}`);
    assert.deepEqual(jwtClaims(await exec(p, ZTUNNEL_CONTAINER, ['cat', `${NODE_CA_TOKEN_DIR}/${NODE_CA_TOKEN_FILE}`])).aud, [CA_TOKEN_AUDIENCE]);
    assert.equal((await exec(p, AGENT_CONTAINER, ['sh', '-c', 'echo "$NODE_NAME $HOST_IP $POD_UID"'])).trim(), `${node.name} ${node.nodeIp4} ${p.metadata!.uid}`);
  });

  await t.test('a volume the sandbox does not materialise, or a mount it cannot make, keeps the container from starting with the reason', async () => {
    const emptyDir = { emptyDir: {} };
    await apply(
      podWith('nfs', { nfs: { server: '192.0.2.1', path: '/export' } }),
      podWith('hostpath', { hostPath: { path: '/dev/kmsg', type: 'CharDevice' } }),
      podWith('subpath', emptyDir, { subPath: 'sub' }),
      podWith('outside', emptyDir, { mountPath: '/meshlet-test-data' }),
      { ...podWith('netadmin', emptyDir), spec: { ...podWith('netadmin', emptyDir).spec, containers: [{ name: 'app', image: 'busybox', securityContext: { capabilities: { add: ['NET_ADMIN'] } } }] } },
    );
    // A start error is the termination's message, then the last state's under CrashLoopBackOff.
    const message = async (name: string): Promise<string> => {
      const c = (await podNamed(name)).status?.containerStatuses?.[0];
      return [c?.state?.waiting?.message, c?.state?.terminated?.message, c?.lastState?.terminated?.message].filter(Boolean).join('\n');
    };
    const reasons: [string, RegExp][] = [
      ['nfs', /^unable to attach or mount volumes: volume "data": nfs volumes are not supported by the sandbox/],
      ['hostpath', /^unable to attach or mount volumes: volume "data": hostPath type CharDevice is not supported by the sandbox/],
      ['subpath', /container "app": volumeMount "data" at \/run\/data uses subPath, which the sandbox does not support/],
      ['outside', /mount path \/meshlet-test-data does not exist on this host, and a sandbox container has no image filesystem to create it in/],
      ['netadmin', /container "app": securityContext\.capabilities\.add NET_ADMIN is refused: .* but in a namespace labelled pod-security\.kubernetes\.io\/enforce=privileged/],
    ];
    for (const [name, reason] of reasons) await eventually(`${name}'s reason`, async () => reason.test(await message(name)) || undefined, WAIT_MS);
    for (const name of ['nfs', 'hostpath']) {
      const p = await podNamed(name);
      assert.equal(p.status?.containerStatuses?.[0]?.state?.waiting?.reason, 'ContainerCreating');
      assert.deepEqual(state().pods[p.metadata!.uid!]?.containers, {}, `${name}: no container started`);
    }
    assert.equal(existsSync('/meshlet-test-data'), false);
    assert.equal((await cp.kubectl(['delete', 'pods', '-l', 'app=refused', '--wait=true'])).exitCode, 0);
  });

  await t.test('a deleted pod\'s volumes go with it, and its mount paths never existed on the host', async () => {
    const uid = volumesPod!.metadata!.uid!;
    const volumes = join(runDir, 'kubelet', 'pods', uid, 'volumes');
    assert.equal(readFileSync(join(volumes, 'bundle', 'name'), 'utf8'), 'volumes', 'materialised under the node\'s run dir');
    assert.equal((await cp.kubectl(['delete', 'pod', 'volumes', '--wait=true'])).exitCode, 0);
    assert.equal(existsSync(join(runDir, 'kubelet', 'pods', uid)), false);
    assert.deepEqual(state().pods, {});
    for (const path of ['/run/meshlet-test', '/run/secrets/meshlet-test', '/run/scratch', '/run/data']) assert.equal(existsSync(path), false, `${path} exists on the host`);
    assert.deepEqual(readdirSync(join(runDir, 'container-run')), [], 'the staging mount point stays empty on the host');
  });
});

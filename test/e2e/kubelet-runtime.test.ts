// The sandbox's container runtime under the real kubelet and a real control
// plane: a node namespace (as `sandbox up` builds it), pods as network
// namespaces on routed veths and cgroups in the kubelet's layout, containers
// as host processes (python's http.server) with the capabilities their
// securityContext leaves them, probes from the node namespace,
// EndpointSlices from the real controllers, and a kubelet restart that adopts
// what runs. The kubelet runs in this process, in the root namespace, and
// talks to the API server on 127.0.0.1.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { run } from '../../lib/core/exec.ts';
import { jsonLogger, silentLogger, type Logger } from '../../lib/core/log.ts';
import { cgroup2Root, removeCgroup } from '../../sandbox/cgroup.ts';
import type { SandboxNodeInfo } from '../../sandbox/info.ts';
import { nodeDir, planNode, podCgroup, podNetns, podVeth, prefixOf, RUN_ROOT } from '../../sandbox/layout.ts';
import { deleteNetns, listNetns, netnsExists } from '../../sandbox/netns.ts';
import { createNode, createUnderlay } from '../../sandbox/topology.ts';
import { Kubelet } from '../../sandbox/kubelet/kubelet.ts';
import { SandboxRuntime } from '../../sandbox/kubelet/sandbox-runtime.ts';
import { startTestControlPlane } from '../support/control-plane.ts';
import { eventually, leftovers, runName } from '../support/harness.ts';

const NAME = runName('krt');
const PREFIX = prefixOf(NAME);
const WAIT_MS = 90_000;
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

test('the sandbox runtime runs a Deployment for the real kubelet', { timeout: 420_000 }, async (t) => {
  const cgroupRoot = join(cgroup2Root(), PREFIX);
  const runDir = nodeDir(NAME, 'node-1');
  const underlay = `${PREFIX}-underlay`;
  let kubelet: Kubelet | undefined;
  let runtime: SandboxRuntime | undefined;
  // First registered, so it runs before the control plane stops; it runs on failure too.
  t.after(async () => {
    await kubelet?.stop();
    runtime?.close();
    await removeCgroup(cgroupRoot);
    for (const ns of await listNetns()) if (ns.startsWith(`${PREFIX}-`)) await deleteNetns(ns);
    await rm(join(RUN_ROOT, NAME), { recursive: true, force: true });
    assert.deepEqual(await leftovers(NAME), [], 'the test left something behind');
  });

  const node = planTestNode(cgroupRoot);
  await createUnderlay(underlay, '10.200.0.1/24');
  await createNode(underlay, node, [node]);

  const cp = await startTestControlPlane(t, { controllers: true });
  const admin = new KubeConfig();
  admin.loadFromFile(cp.kubeconfig);
  const core = admin.makeApiClient(CoreV1Api);
  const discovery = admin.makeApiClient(DiscoveryV1Api);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await cp.userKubeconfig('system:node:node-1', ['system:nodes']));

  const start = async (): Promise<void> => {
    runtime = new SandboxRuntime({ sandbox: NAME, node, runDir, log });
    kubelet = new Kubelet({
      kubeConfig, runtime, log,
      node: { name: node.name, addresses: [node.nodeIp4], podCIDRs: [node.podCidr], capacity: { cpu: '4', memory: '8Gi', pods: '110' } },
      probeSourceIp4: node.probeSourceIp4!,
      leaseRenewIntervalMs: 1000, statusCheckIntervalMs: 1000,
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
});

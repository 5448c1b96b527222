// meshlet on a real API server, driven with the real kubectl as a user would:
// namespace labels enrol and release pods, a Deployment's EndpointSlices (named
// targetPort, readiness) are what the ztunnels route to, a dual-stack Service
// gets its IPv6 ClusterIP and goes through the mesh, an AuthorizationPolicy
// applied with kubectl closes a live connection, the control plane restarts
// under live traffic and the agents watch again (a relist after the new API
// server's 410, changing nothing downstream), and an agent started
// after the pods enrols them. Each node's kube-proxy serves ClusterIPs to
// what meshlet does not capture.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { BlockList } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { run } from '../../lib/core/exec.ts';
import { isV6 } from '../../lib/core/ip.ts';
import type { AgentEnrolled, AgentStatus, EnrolledPod } from '../../lib/mesh/agent-status.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { ServiceEndpoint } from '../../lib/mesh/model.ts';
import type { InformerStatus } from '../../lib/cluster/sources/source.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { POD_PROGRAMS } from '../../agent/bpf/objects.ts';
import { sandboxDown, sandboxExec, sandboxKubectl, sandboxSpawn, sandboxStatus, sandboxUp, type SandboxInfo } from '../../sandbox/api.ts';
import { readControlPlanePids } from '../../sandbox/registry.ts';
import { adminJson, eventually, leftovers, REPO, runName } from '../support/harness.ts';
import { freezeContainer } from '../support/meshlet-node.ts';

const NAME = runName('k8s');
const WWW = join(tmpdir(), `meshlet-${NAME}-www`);
/** A Deployment pod is unready while a file named after it exists here (its readiness probe checks). */
const UNREADY = join(WWW, 'unready');
const INDEX = 'hello from files\n';
const BLOB_BYTES = 48 * 1024 * 1024;
const NODES = ['node-1', 'node-2'] as const;
const LINE_CLIENT = join(REPO, 'test/e2e/fixtures/line-client.py');
const CLIENT_PRINCIPAL = 'cluster.local/ns/apps/sa/client';
/** The sandbox API server's service CIDR for IPv6. */
const SERVICE_CIDR6 = ['fd00:96::', 112] as const;

let info: SandboxInfo;
let blobSha = '';

const nodeOf = (node: string) => info.nodes.find((n) => n.name === node)!;


const enrolledOn = async (node: string): Promise<EnrolledPod[]> => (await adminJson<AgentEnrolled>(nodeOf(node).agentAdminSocket, '/enrolled')).enrolledPods;
const agentStatus = (node: string): Promise<AgentStatus> => adminJson<AgentStatus>(nodeOf(node).agentAdminSocket, '/status');
const meshState = async (node: string): Promise<MeshState> => (await adminJson<{ state: MeshState }>(nodeOf(node).ztunnelAdminSocket, '/state')).state;
const flowsOn = async (node: string): Promise<FlowRecord[]> => (await adminJson<{ flows: FlowRecord[] }>(nodeOf(node).ztunnelAdminSocket, '/flows')).flows;

/** kubectl against the sandbox; a failure names the command and what kubectl said. */
async function kubectl(args: readonly string[], input?: string): Promise<string> {
  const r = await sandboxKubectl(NAME, args, input);
  assert.equal(r.exitCode, 0, `kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}
const kubectlJson = async <T>(args: readonly string[]): Promise<T> => JSON.parse(await kubectl([...args, '-o', 'json'])) as T;

async function execIn(pod: string, argv: readonly string[], timeoutMs = 60_000): Promise<string> {
  const r = await sandboxExec(NAME, { pod, namespace: 'apps' }, argv, { timeoutMs });
  assert.equal(r.exitCode, 0, `${argv.join(' ')} in apps/${pod} failed (${r.exitCode}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Polls until `get` returns exactly `want`; on timeout the error shows the last value beside the wanted one. */
async function eventuallyEqual<T>(what: string, get: () => Promise<T>, want: T | (() => Promise<T>), timeoutMs = 30_000): Promise<T> {
  return eventually(what, async () => {
    const [actual, wanted] = await Promise.all([get(), typeof want === 'function' ? (want as () => Promise<T>)() : want]);
    try {
      assert.deepStrictEqual(actual, wanted);
    } catch {
      throw new Error(`got ${JSON.stringify(actual)}, want ${JSON.stringify(wanted)}`);
    }
    return actual;
  }, timeoutMs);
}

async function podsIn(namespace: string, selector?: string): Promise<V1Pod[]> {
  return (await kubectlJson<{ items: V1Pod[] }>(['get', 'pods', '-n', namespace, ...(selector ? ['-l', selector] : [])])).items;
}

async function podNamed(name: string): Promise<{ uid: string; ip: string; ip6?: string; cgroup: string }> {
  const pod = (await sandboxStatus(NAME)).pods.find((p) => p.namespace === 'apps' && p.name === name);
  assert.ok(pod, `pod apps/${name} in sandbox status`);
  return pod;
}

async function clusterIPs(service: string): Promise<string[]> {
  const svc = await kubectlJson<V1Service>(['get', 'service', service, '-n', 'apps']);
  return svc.spec?.clusterIPs ?? [];
}
const vip4 = async (service: string): Promise<string> => (await clusterIPs(service)).find((ip) => !isV6(ip))!;

interface ReadyEndpoint extends ServiceEndpoint {
  /** The pod behind it (targetRef), for the test's messages and choices. */
  pod: string;
}

const byIp = <T extends { ip: string }>(list: T[]): T[] => list.sort((a, b) => a.ip.localeCompare(b.ip));

/** The ready endpoints of a Service's EndpointSlices, as kubectl reads them (unset `ready` counts as ready, the API's rule). */
async function readyEndpoints(service: string): Promise<ReadyEndpoint[]> {
  const slices = await kubectlJson<{ items: V1EndpointSlice[] }>(['get', 'endpointslices', '-n', 'apps', '-l', `kubernetes.io/service-name=${service}`]);
  const ready: ReadyEndpoint[] = [];
  for (const slice of slices.items) {
    const ports = Object.fromEntries((slice.ports ?? []).map((p) => [p.name ?? '', p.port!]));
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) ready.push({ ip, ports, pod: e.targetRef?.name ?? '' });
    }
  }
  return byIp(ready);
}

/** A Service's endpoints in a node's ztunnel: what it routes the Service's traffic to. */
async function ztunnelEndpoints(node: string, service: string): Promise<ServiceEndpoint[]> {
  const svc = (await meshState(node)).services.find((s) => s.namespace === 'apps' && s.name === service);
  if (!svc) throw new Error(`${node}'s ztunnel has no Service apps/${service}`);
  return byIp(svc.endpoints.map((e) => ({ ip: e.ip, ports: e.ports })));
}

/**
 * Waits until the Service's ready EndpointSlice endpoints number `count` and
 * both ztunnels route to exactly them; returns them.
 */
async function endpointsConverge(step: string, service: string, count: number): Promise<ReadyEndpoint[]> {
  let ready: ReadyEndpoint[] = [];
  await eventually(`${step}: ${count} ready endpoints of apps/${service}, the same in both ztunnels`, async () => {
    ready = await readyEndpoints(service);
    if (ready.length !== count) throw new Error(`the EndpointSlices list ${ready.length} ready endpoints (${ready.map((e) => `${e.pod} ${e.ip}`).join(', ')}), want ${count}`);
    const want = ready.map(({ ip, ports }) => ({ ip, ports }));
    for (const node of NODES) {
      const have = await ztunnelEndpoints(node, service);
      try {
        assert.deepStrictEqual(have, want);
      } catch {
        throw new Error(`${node}'s ztunnel routes to ${JSON.stringify(have)}, the EndpointSlices' ready endpoints are ${JSON.stringify(want)}`);
      }
    }
    return true;
  }, 60_000);
  return ready;
}

/** A long-lived line client in `pod`: greeting and peer first, then one reply per line sent. */
async function openLineClient(pod: string, host: string, port: number): Promise<{ child: ChildProcess; send: (line: string) => void; next: () => Promise<string | undefined> }> {
  const child = await sandboxSpawn(NAME, { pod, namespace: 'apps' }, ['python3', LINE_CLIENT, host, String(port)]);
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    send: (line) => child.stdin!.write(`${line}\n`),
    next: async () => (await lines.next()).value as string | undefined,
  };
}

/** Whatever the line client prints next, or a note that it printed nothing for a long while (a hang guard, not a timing check). */
async function nextOrSilence(next: () => Promise<string | undefined>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const silence = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('(no answer: the connection is still open)'), ms)));
  try {
    return await Promise.race([next(), silence]);
  } finally {
    clearTimeout(timer);
  }
}

/** The programs attached to a cgroup, by name. */
async function programsOn(cgroup: string): Promise<string[]> {
  const out = (await run('bpftool', ['cgroup', 'show', cgroup, '-j'])).stdout.trim();
  return (out === '' ? [] : (JSON.parse(out) as { name: string }[])).map((p) => p.name).sort();
}

const informerHealth = async (): Promise<Map<string, InformerStatus>> => {
  const health = new Map<string, InformerStatus>();
  for (const node of NODES) for (const i of (await agentStatus(node)).source.informers ?? []) health.set(`${node} ${i.kind}`, i);
  return health;
};

const deploymentYaml = (replicas: number) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: apps}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      serviceAccountName: echo
      containers:
        - name: echo
          image: node
          command: [node, scripts/workloads/http-echo.ts, --port, "8080"]
          env:
            - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: UNREADY_DIR, value: ${UNREADY}}
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            # Ready while no file names this pod and the server accepts connections.
            exec: {command: [bash, -c, 'test ! -e "$UNREADY_DIR/$POD_NAME" && exec 3<>/dev/tcp/127.0.0.1/8080']}
            periodSeconds: 1
            timeoutSeconds: 5
            failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: apps}
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
`;

const denyClientPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: banner-deny-client, namespace: apps}
spec:
  selector: {matchLabels: {app: banner}}
  action: DENY
  rules:
    - from: [{source: {principals: ["${CLIENT_PRINCIPAL}"]}}]
      to: [{operation: {ports: ["2525"]}}]
`;

describe('meshlet on a real Kubernetes API server', { timeout: 900_000 }, () => {
  before(async () => {
    await mkdir(UNREADY, { recursive: true });
    const blob = randomBytes(BLOB_BYTES);
    blobSha = createHash('sha256').update(blob).digest('hex');
    await writeFile(join(WWW, 'blob'), blob);
    await writeFile(join(WWW, 'index.html'), INDEX);
    const manifest = (await readFile(join(REPO, 'test/e2e/fixtures/kubernetes.yaml'), 'utf8')).replaceAll('WWW_DIR', WWW);
    await sandboxUp({ name: NAME, nodes: 2, manifest });
    info = await sandboxStatus(NAME);
    await kubectl(['wait', '--for=condition=Ready', 'pod', '--all', '-n', 'apps', '--timeout=60s']);
    await eventually('the apps pods enrolled by their nodes\' agents', async () => {
      const names = [...(await enrolledOn('node-1')), ...(await enrolledOn('node-2'))].map((p) => `${p.namespace}/${p.name}`);
      if (!['apps/client', 'apps/banner', 'apps/files'].every((p) => names.includes(p))) throw new Error(`enrolled so far: ${names.join(', ') || 'none'}`);
      return true;
    }, 30_000);
  });

  after(async () => {
    await sandboxDown(NAME);
    await rm(WWW, { recursive: true, force: true });
    assert.deepEqual(await leftovers(NAME), [], 'the sandbox left something behind');
  });

  test('kubectl label namespace enrols its running pods on their nodes; removing the label releases them', async () => {
    await kubectl(['wait', '--for=condition=Ready', 'pod', '--all', '-n', 'labelled', '--timeout=60s']);
    const uid = new Map((await podsIn('labelled')).map((p) => [p.metadata!.name!, p.metadata!.uid!]));
    const labelled = async () => {
      const byNode: Record<string, string[]> = {};
      for (const node of NODES) byNode[node] = (await enrolledOn(node)).filter((p) => p.namespace === 'labelled').map((p) => `${p.name} ${p.uid}`).sort();
      return byNode;
    };
    assert.deepEqual(await labelled(), { 'node-1': [], 'node-2': [] }, 'nothing of namespace labelled is enrolled before the label');

    await kubectl(['label', 'namespace', 'labelled', 'istio.io/dataplane-mode=ambient']);
    await eventuallyEqual('each node\'s agent to enrol its pod of namespace labelled', labelled, {
      'node-1': [`idle-1 ${uid.get('idle-1')}`],
      'node-2': [`idle-2 ${uid.get('idle-2')}`],
    });

    await kubectl(['label', 'namespace', 'labelled', 'istio.io/dataplane-mode-']);
    await eventuallyEqual('the agents to release the pods of namespace labelled', labelled, { 'node-1': [], 'node-2': [] });
  });

  test('each node\'s kube-proxy takes a Service\'s ClusterIP to its endpoints for pods meshlet does not capture and for the node\'s own processes', async () => {
    const vip = await vip4('files');
    const idle = await sandboxExec(NAME, { pod: 'idle-1', namespace: 'labelled' }, ['curl', '-sf', '--max-time', '10', `http://${vip}/index.html`], { timeoutMs: 20_000 });
    assert.equal(idle.exitCode, 0, `curl from labelled/idle-1, not enrolled: ${idle.stderr}`);
    assert.equal(idle.stdout, INDEX);
    for (const node of NODES) {
      const netns = `--net=/run/netns/${nodeOf(node).netns}`;
      const hostNetwork = await run('nsenter', [netns, 'curl', '-sf', '--max-time', '10', `http://${vip}/index.html`], { allowFailure: true });
      assert.equal(hostNetwork.exitCode, 0, `curl from ${node}'s network namespace: ${hostNetwork.stderr}`);
      assert.equal(hostNetwork.stdout, INDEX);
      const table = await run('nsenter', [netns, 'nft', 'list', 'table', 'ip', 'kube-proxy'], { allowFailure: true });
      assert.equal(table.exitCode, 0, `${node} has kube-proxy's nftables table: ${table.stderr}`);
      assert.match(table.stdout, new RegExp(vip.replaceAll('.', '\\.')), `the table maps ${vip}`);
    }
  });

  test('kubectl scale 1→5→2: the ztunnels route to exactly the ready EndpointSlice endpoints (named targetPort), and readiness takes a pod out and back', async () => {
    await kubectl(['apply', '-f', '-'], deploymentYaml(1));
    const vip = await vip4('echo');
    const served = async (ready: ReadyEndpoint[]) => {
      const { pod } = JSON.parse(await execIn('client', ['curl', '-sf', '--max-time', '10', `http://${vip}/`])) as { pod: string };
      assert.ok(ready.some((e) => e.pod === pod), `the VIP answered from ${pod}, which is not among the ready endpoints ${ready.map((e) => e.pod).join(', ')}`);
    };

    let ready = await endpointsConverge('replicas 1', 'echo', 1);
    assert.deepEqual(ready[0]!.ports, { web: 8080 }, 'the named targetPort http resolves to the pod\'s containerPort');
    await served(ready);

    for (const replicas of [5, 2]) {
      await kubectl(['scale', 'deployment/echo', '-n', 'apps', `--replicas=${replicas}`]);
      ready = await endpointsConverge(`after kubectl scale --replicas=${replicas}`, 'echo', replicas);
      await served(ready);
    }

    const [failing, staying] = ready as [ReadyEndpoint, ReadyEndpoint];
    await writeFile(join(UNREADY, failing.pod), '');
    try {
      const left = await endpointsConverge(`${failing.pod} failing readiness`, 'echo', 1);
      assert.deepEqual(left.map((e) => e.pod), [staying.pod], `${failing.pod} (${failing.ip}) left the ready set, ${staying.pod} stayed`);
      await served(left);
    } finally {
      await rm(join(UNREADY, failing.pod), { force: true });
    }
    const back = await endpointsConverge(`${failing.pod} ready again`, 'echo', 2);
    assert.deepEqual(back.map((e) => e.pod).sort(), [failing.pod, staying.pod].sort(), `${failing.pod} came back, with ${staying.pod}`);
  });

  test('a PreferDualStack Service gets an IPv6 ClusterIP, and curl to it goes through the mesh with mutual TLS', async () => {
    const ips = await clusterIPs('files-dual');
    const v6 = ips.find(isV6);
    assert.ok(v6, `files-dual has an IPv6 ClusterIP: ${ips.join(', ')}`);
    const cidr = new BlockList();
    cidr.addSubnet(SERVICE_CIDR6[0], SERVICE_CIDR6[1], 'ipv6');
    assert.ok(cidr.check(v6, 'ipv6'), `${v6} is in the service CIDR ${SERVICE_CIDR6.join('/')}`);
    // Both families' slices, as both ztunnels hold them.
    const ready = await endpointsConverge('dual-stack', 'files-dual', 2);
    const files = await podNamed('files');
    assert.deepEqual(ready.map((e) => e.ip).sort(), [files.ip, files.ip6].sort(), 'the IPv4 and the IPv6 slice each list the files pod');

    assert.equal(await execIn('client', ['curl', '-sf', '--max-time', '10', `http://[${v6}]:80/index.html`]), INDEX);
    const outbound = await eventually('node-1\'s outbound flow to the IPv6 VIP', async () =>
      (await flowsOn('node-1')).find((f) => f.direction === 'outbound' && f.originalDestination.ip === v6 && f.state === 'closed'));
    assert.equal(outbound.source.workload?.name, 'client');
    assert.deepEqual(outbound.service, { namespace: 'apps', name: 'files-dual' });
    assert.equal(outbound.path, 'tunnel', 'client (node-1) reached files (node-2) through both ztunnels');
    assert.equal(outbound.security, 'mutual_tls');
    assert.equal(outbound.destination?.ip, files.ip6, 'the IPv6 VIP routes to the pod\'s IPv6 address');
    const inbound = await eventually('node-2\'s inbound side of that flow', async () =>
      (await flowsOn('node-2')).find((f) => f.direction === 'inbound' && f.traceId === outbound.traceId));
    assert.equal(inbound.security, 'mutual_tls');
    assert.equal(inbound.source.identity, `spiffe://${CLIENT_PRINCIPAL}`);
  });

  test('an AuthorizationPolicy applied with kubectl closes a live connection it now denies; deleting it lets new ones through', async (t) => {
    t.after(async () => {
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '-f', '-'], denyClientPolicy);
    });
    const vip = await vip4('banner');
    const open = await openLineClient('client', vip, 25);
    try {
      assert.equal(await open.next(), `peer ${vip} 25`);
      assert.match((await open.next()) ?? '', /^220 /, 'the banner greets the client');
      open.send('before the policy');
      assert.equal(await open.next(), 'before the policy', 'the connection works before the policy');

      assert.match(await kubectl(['apply', '-f', '-'], denyClientPolicy), /authorizationpolicy\.security\.istio\.io\/banner-deny-client created/);
      const closed = await eventually('node-2\'s ztunnel to close the open connection by policy', async () =>
        (await flowsOn('node-2')).find((f) => f.direction === 'inbound' && f.destination?.workload?.name === 'banner' && f.source.identity === `spiffe://${CLIENT_PRINCIPAL}` && f.closeReason === 'policy_denied'));
      assert.equal(closed.verdict, 'deny');
      assert.equal(closed.policy, 'apps/banner-deny-client');
      open.send('after the policy');
      const reply = await nextOrSilence(open.next, 15_000);
      assert.notEqual(reply, 'after the policy', 'the connection the policy denies no longer carries data');
      assert.ok(reply === undefined || reply === '', `the client sees its connection closed, not: ${reply}`);
    } finally {
      open.child.kill('SIGKILL');
    }
    const fresh = await sandboxExec(NAME, { pod: 'client', namespace: 'apps' }, ['python3', LINE_CLIENT, vip, '25'], { timeoutMs: 20_000 });
    assert.doesNotMatch(fresh.stdout, /^220 /m, `a new connection under the policy gets no greeting: ${fresh.stdout}${fresh.stderr}`);

    assert.match(await kubectl(['delete', '-f', '-'], denyClientPolicy), /authorizationpolicy\.security\.istio\.io "banner-deny-client" deleted/);
    await eventually('a new connection to be let through once the policy is deleted', async () => {
      const r = await sandboxExec(NAME, { pod: 'client', namespace: 'apps' }, ['python3', LINE_CLIENT, vip, '25'], { timeoutMs: 20_000, input: 'hello again\n' });
      return r.exitCode === 0 && /^220 .*\nhello again$/m.test(r.stdout.trim());
    }, 30_000);
  });

  test('SIGKILL of kube-apiserver and etcd mid-traffic loses no connection; the agents watch again with at most one relist that changes nothing, and see what changed after', async (t) => {
    const banner = await vip4('banner');
    const open = await openLineClient('client', banner, 25);
    t.after(() => void open.child.kill('SIGKILL'));
    assert.equal(await open.next(), `peer ${banner} 25`);
    assert.match((await open.next()) ?? '', /^220 /);

    const files = await vip4('files');
    let transferDone = false;
    const transfer = sandboxExec(NAME, { pod: 'client', namespace: 'apps' }, ['sh', '-c', `curl -sf --limit-rate 2M http://${files}/blob | sha256sum`], { timeoutMs: 180_000 })
      .finally(() => (transferDone = true));
    await eventually('the transfer to be under way', async () =>
      (await flowsOn('node-1')).some((f) => f.direction === 'outbound' && f.source.workload?.name === 'client' && f.originalDestination.ip === files && f.state === 'open'));

    const before = await informerHealth();
    const ackedBefore = await Promise.all(NODES.map(async (n) => (await agentStatus(n)).ztunnel.ackedVersion));
    assert.ok([...before.values()].every((i) => i.synced), `every informer synced before the restart: ${[...before].filter(([, i]) => !i.synced).map(([k]) => k).join(', ')}`);
    const killed = (await readControlPlanePids(NAME))?.pids ?? {};
    for (const component of ['kube-apiserver', 'etcd']) {
      assert.ok(killed[component], `controlplane/pids.json names the ${component} pid: ${JSON.stringify(killed)}`);
      process.kill(killed[component]!, 'SIGKILL');
    }
    await eventually('the supervisor to restart kube-apiserver and etcd', async () => {
      const now = (await readControlPlanePids(NAME))?.pids ?? {};
      return ['kube-apiserver', 'etcd'].every((c) => now[c] !== undefined && now[c] !== killed[c]);
    }, 60_000);
    await eventually('kubectl get nodes to work again', async () => (await sandboxKubectl(NAME, ['get', 'nodes'])).exitCode === 0, 60_000);
    assert.equal(transferDone, false, 'the transfer was still running when the API server came back (else the test proves nothing about mid-traffic; make the blob larger)');

    open.send('after the restart');
    assert.equal(await open.next(), 'after the restart', 'the connection opened before the restart still works');
    const result = await transfer;
    assert.equal(result.exitCode, 0, `the transfer across the restart failed: ${result.stderr}`);
    assert.equal(result.stdout.split(' ')[0], blobSha, 'the transfer arrived intact');

    await eventually('every informer of both agents to watch again', async () => {
      const now = await informerHealth();
      const waiting = [...before].filter(([key, b]) => !b.missing && (now.get(key)?.watches ?? 0) <= b.watches);
      if (waiting.length > 0) throw new Error(`not watching again yet: ${waiting.map(([key, b]) => `${key} (watches ${b.watches} → ${now.get(key)?.watches}, lastError ${now.get(key)?.lastError ?? 'none'})`).join('; ')}`);
      return true;
    }, 60_000);
    // A restarted API server starts its watch cache at etcd's current revision, so a watch resuming from an older
    // resource version gets 410 Gone and the informer relists, as client-go's reflector does: once, and a relist
    // of objects that did not change changes nothing downstream.
    const afterRestart = await informerHealth();
    const storms = [...before].filter(([key, b]) => (afterRestart.get(key)?.lists ?? 0) - b.lists > 1);
    assert.deepEqual(storms.map(([key, b]) => `${key}: lists ${b.lists} → ${afterRestart.get(key)?.lists}`), [], 'informers that listed more than once after the restart');
    const ackedAfter = await Promise.all(NODES.map(async (n) => (await agentStatus(n)).ztunnel.ackedVersion));
    assert.deepEqual(ackedAfter, ackedBefore, 'the relist after the restart sent the ztunnels a change, though no object changed');
    // Made after the restart: each agent must hear of it.
    await kubectl(['apply', '-f', '-'], [1, 2].map((n) => `apiVersion: v1
kind: Pod
metadata: {name: after-${n}, namespace: apps, labels: {app: after}}
spec:
  nodeName: node-${n}
  serviceAccountName: client
  containers: [{name: idle, image: busybox}]
`).join('---\n') + `---
apiVersion: v1
kind: Service
metadata: {name: after, namespace: apps}
spec:
  selector: {app: after}
  ports: [{port: 80}]
`);
    await kubectl(['wait', '--for=condition=Ready', 'pod', '-l', 'app=after', '-n', 'apps', '--timeout=60s']);
    for (const [i, node] of NODES.entries()) {
      await eventually(`${node}'s agent to enrol after-${i + 1}, created after the restart`, async () => (await enrolledOn(node)).some((p) => p.namespace === 'apps' && p.name === `after-${i + 1}`));
    }
    await endpointsConverge('a Service created after the restart', 'after', 2);

  });

  test('a pod created while its node\'s agent is down does not start until the agent enrolled it (the CNI plugin holds its sandbox), and its first connection is captured', async (t) => {
    const stopped = (await sandboxStatus(NAME)).nodes.find((n) => n.name === 'node-1')?.agentPid;
    assert.ok(stopped, 'sandbox status names node-1\'s agent container');
    // Every process of the container, not only its init.
    const frozen = await freezeContainer(stopped);
    // Whatever fails below, teardown must not meet a frozen agent.
    t.after(() => frozen.thaw());

    await kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: late, namespace: apps}
spec:
  nodeName: node-1
  serviceAccountName: client
  containers: [{name: idle, image: busybox}]
`);
    // The plugin waits for the frozen agent, gives up, and the kubelet retries the sandbox: the pod stays ContainerCreating, saying why.
    const held = await eventually('the pod\'s sandbox to fail on the meshlet CNI plugin', async () => {
      const pod = await kubectlJson<V1Pod>(['get', 'pod', 'late', '-n', 'apps']);
      const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
      return waiting?.message?.includes('meshlet-cni') ? waiting : undefined;
    }, 60_000);
    assert.equal(held.reason, 'ContainerCreating');
    assert.match(held.message ?? '', /meshlet agent/, `the reason names the agent: ${held.message}`);
    assert.equal((await kubectlJson<V1Pod>(['get', 'pod', 'late', '-n', 'apps'])).status?.containerStatuses?.[0]?.state?.running, undefined, 'no container of the pod runs while the agent is down');

    await frozen.kill();
    await eventually('the kubelet to start node-1\'s agent container again', async () => {
      const pid = (await sandboxStatus(NAME)).nodes.find((n) => n.name === 'node-1')?.agentPid;
      return pid !== undefined && pid !== stopped;
    }, 60_000);
    await kubectl(['wait', '--for=condition=Ready', 'pod/late', '-n', 'apps', '--timeout=90s']);
    const late = await podNamed('late');
    // Enrolled before its containers started: nothing to wait for once it runs.
    assert.ok((await enrolledOn('node-1')).some((p) => p.uid === late.uid && p.name === 'late'), 'node-1\'s agent enrolled the pod before it started');
    assert.deepEqual(await programsOn(late.cgroup), POD_PROGRAMS.map((p) => p.name).sort(), 'the new pod\'s cgroup has each pod program, once');

    const files = await vip4('files');
    assert.equal(await execIn('late', ['curl', '-sf', '--max-time', '10', `http://${files}/index.html`]), INDEX);
    const flow = await eventually('a flow from the new pod in node-1\'s ztunnel', async () =>
      (await flowsOn('node-1')).find((f) => f.direction === 'outbound' && f.source.ip === late.ip && f.originalDestination.ip === files));
    assert.equal(flow.source.workload?.name, 'late');
    assert.equal(flow.path, 'tunnel');
  });
});

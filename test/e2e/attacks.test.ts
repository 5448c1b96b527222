// The standing attack suite: what one hostile pod or one hostile object can
// try, run in a two-node sandbox from pods with a container runtime's default
// capabilities. Each case proves the attack fails and that the refusal shows
// where an operator looks: a flow's close or verdict reason, a metric, a line
// of the agent's status.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isDeepStrictEqual } from 'node:util';
import { join } from 'node:path';
import { run } from '../../lib/core/exec.ts';
import type { Rejection } from '../../lib/cluster/cluster-state.ts';
import type { AgentStatus } from '../../lib/mesh/agent-status.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { sandboxApply, sandboxDelete, sandboxDown, sandboxExec, sandboxKubectl, sandboxSpawn, sandboxStatus, sandboxUp, type SandboxInfo, type SandboxNodeInfo } from '../../sandbox/api.ts';
import { adminGet, adminJson, eventually, leftovers, meshlet, REPO, runName } from '../support/harness.ts';
import { inZtunnel, nodeLog, ZTUNNEL_CA_ACCESS } from '../support/meshlet-node.ts';

const NAME = runName('atk');
const WWW = join(tmpdir(), `meshlet-${NAME}-www`);
const MARKER = `meshlet-attacks-${randomBytes(8).toString('hex')}`;
const NODES = ['node-1', 'node-2'] as const;
const FIXTURES = join(REPO, 'test/e2e/fixtures');
const ALPHA = 'spiffe://cluster.local/ns/demo/sa/alpha';
const MALLORY = 'spiffe://cluster.local/ns/demo/sa/mallory';
/**
 * The ztunnels' caps, small enough that a case reaches each with a few dozen
 * connections (the defaults are 1024 sessions per peer, 100 streams, 4096
 * connections per pod), and above what the other cases hold: case 6 keeps 16
 * silent connections to 15008 open at once.
 */
const LIMITS = { hboneMaxSessionsPerPeer: 32, hboneMaxStreams: 8, maxConnectionsPerPod: 32 } as const;
/** How many connections or streams past a cap the bounds cases try. */
const OVER = 8;

let info: SandboxInfo;

const podOf = (name: string, namespace = 'demo') => {
  const pod = info.pods.find((p) => p.name === name && p.namespace === namespace);
  assert.ok(pod, `pod ${namespace}/${name} in sandbox status`);
  return pod;
};
const nodeOf = (name: string) => info.nodes.find((n) => n.name === name)!;
const webVip = () => info.services!.find((s) => s.name === 'web' && s.namespace === 'demo')!.clusterIPs[0]!;
const url = (ip: string, port: number, path = '/') => `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}${path}`;


const agentStatus = (node: string) => adminJson<AgentStatus>(nodeOf(node).agentAdminSocket, '/status');
const meshState = async (node: string) => (await adminJson<{ state: MeshState }>(nodeOf(node).ztunnelAdminSocket, '/state')).state;
const ztunnelFlows = async (node: string) => (await adminJson<{ flows: FlowRecord[] }>(nodeOf(node).ztunnelAdminSocket, '/flows')).flows;
/** The kernel's drops (STRICT ingress), as the node's agent logs them. */
const dropFlows = async (node: string) => (await adminJson<{ flows: FlowRecord[] }>(nodeOf(node).agentAdminSocket, '/flows')).flows;
const ztunnelMetrics = (node: string) => adminGet(nodeOf(node).ztunnelAdminSocket, '/metrics');

/** Sum of a Prometheus counter over the series whose labels include all of `labels`. */
function counter(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Both agents' rejections, by object. */
async function rejections(): Promise<Map<string, Rejection>> {
  const all = new Map<string, Rejection>();
  for (const node of NODES) for (const r of (await agentStatus(node)).rejected) all.set(r.object, r);
  return all;
}

/** Waits until every node's agent lists each of `objects` as rejected; returns node-1's view of them. */
async function rejectedEverywhere(objects: readonly string[], timeoutMs = 30_000): Promise<Map<string, Rejection>> {
  return eventually(`${objects.join(', ')} rejected by both agents`, async () => {
    let first: Map<string, Rejection> | undefined;
    for (const node of NODES) {
      const status = await agentStatus(node);
      const mine = new Map(status.rejected.map((r) => [r.object, r]));
      const missing = objects.filter((o) => !mine.has(o));
      if (missing.length > 0) {
        const health = status.ready ? 'ready' : `NOT READY: ${status.notReady.join('; ')}`;
        throw new Error(`${node}'s agent does not list ${missing.join(', ')} as rejected (it lists ${[...mine.keys()].join(', ') || 'nothing'}; it is ${health})`);
      }
      first ??= mine;
    }
    return first!;
  }, timeoutMs);
}

const rejectionsCleared = (objects: readonly string[]) =>
  eventually(`the rejections of ${objects.join(', ')} to clear`, async () => {
    const left = [...(await rejections()).keys()].filter((o) => objects.includes(o));
    if (left.length > 0) throw new Error(`still rejected: ${left.join(', ')}`);
    return true;
  }, 30_000);

/** kubectl against the sandbox; a failure names the command and what kubectl said. */
async function kubectl(args: readonly string[], input?: string): Promise<string> {
  const r = await sandboxKubectl(NAME, args, input);
  assert.equal(r.exitCode, 0, `kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const exec = (pod: string, argv: readonly string[], namespace = 'demo', timeoutMs = 30_000) => sandboxExec(NAME, { pod, namespace }, argv, { timeoutMs });
const curl = (pod: string, target: string, namespace = 'demo', seconds = 5) => exec(pod, ['curl', '-sf', '--max-time', String(seconds), target], namespace);
/** Runs argv in a node's network namespace only. */
const inNode = (node: string, argv: readonly string[]) => run('nsenter', [`--net=/run/netns/${nodeOf(node).netns}`, '--', ...argv], { allowFailure: true });

/** Each node's agent and ztunnel container: main pid and restarts, as `sandbox status` reads them from the node's runtime and the pod. */
type NodePids = Pick<SandboxNodeInfo, 'agentPid' | 'ztunnelPid' | 'agentRestarts' | 'ztunnelRestarts'>;
const pidsOf = async (): Promise<Record<string, NodePids>> => Object.fromEntries((await sandboxStatus(NAME)).nodes.map((n) => [n.name, {
  agentPid: n.agentPid, ztunnelPid: n.ztunnelPid, agentRestarts: n.agentRestarts, ztunnelRestarts: n.ztunnelRestarts,
}]));
const pidsOn = async (node: string): Promise<NodePids> => (await pidsOf())[node] ?? {};

async function everyAgentReadyAndInSync(): Promise<void> {
  await eventually('both agents ready, their ztunnels in sync', async () => {
    for (const node of NODES) {
      const s = await agentStatus(node);
      if (!s.ready || !s.ztunnel.connected || !s.ztunnel.inSync) throw new Error(`${node}: ready ${s.ready} (${s.notReady.join('; ')}), ztunnel connected ${s.ztunnel.connected}, in sync ${s.ztunnel.inSync}, last error ${s.ztunnel.lastError ?? s.lastError ?? 'none'}`);
    }
    return true;
  }, 30_000);
}

const policy = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'demo' }, spec });
const asList = (items: unknown[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items });

/** A running fixture's stdout and stderr, as far as they have come. */
function outputOf(child: Awaited<ReturnType<typeof sandboxSpawn>>): () => string {
  let text = '';
  child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (text += `stderr: ${c.toString()}`));
  return () => text;
}

/**
 * held-connections.py in a pod: `count` connections to host:port, one after
 * another; resolves once `refused` of them were closed by the server, with
 * their indices and how many the pod then holds. release() closes the rest.
 */
async function holdConnections(pod: { name: string; namespace: string }, host: string, port: number, count: number, refused: number) {
  const child = await sandboxSpawn(NAME, { pod: pod.name, namespace: pod.namespace }, ['python3', '-u', join(FIXTURES, 'held-connections.py'), host, String(port), String(count), String(refused), '20']);
  const output = outputOf(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const what = `${pod.namespace}/${pod.name}'s ${count} connections to ${host}:${port}`;
  const result = await eventually(what, () => {
    const refusedLine = /^refused ?([\d ]*)$/m.exec(output());
    const heldLine = /^held (\d+)$/m.exec(output());
    if (refusedLine && heldLine) return { refused: refusedLine[1]!.split(' ').filter(Boolean).map(Number), held: Number(heldLine[1]) };
    if (child.exitCode !== null) throw new Error(`held-connections.py exited ${child.exitCode}: ${output()}`);
    return undefined;
  }, 30_000);
  const release = async () => {
    child.stdin!.end();
    await exited;
  };
  return { ...result, release, kill: () => void child.kill('SIGKILL') };
}

/** The indices `from` … `from + n - 1`. */
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/**
 * A fixture acting as a mesh peer from node-1's ztunnel container toward
 * node-2's 15008: a certificate for demo/`sourceSa` that node-1's ztunnel
 * token gets from the CA, SNI naming demo/`destinationSa`, CONNECTs to `authority`.
 */
function meshPeer(fixture: string, sourceSa: string, destinationSa: string, authority: string, args: readonly string[]) {
  const ca = ZTUNNEL_CA_ACCESS;
  return inZtunnel(NAME, 'node-1', [process.execPath, join(FIXTURES, fixture), ca.url, ca.bundleFile, ca.tokenFile, 'demo', sourceSa,
    nodeOf('node-2').nodeIp4, '15008', 'demo', destinationSa, authority, ...args], { timeoutMs: 120_000 });
}

describe('attacks from hostile pods and hostile objects', { timeout: 600_000 }, () => {
  before(async () => {
    await mkdir(WWW, { recursive: true });
    await writeFile(join(WWW, 'index.html'), `${MARKER}\n`);
    const manifest = (await readFile(join(FIXTURES, 'attacks.yaml'), 'utf8')).replaceAll('WWW_DIR', WWW);
    await sandboxUp({ name: NAME, nodes: 2, manifest, ztunnelLimits: LIMITS });
    info = await sandboxStatus(NAME);
    await eventually('the demo pods enrolled', async () => {
      const enrolled = (await Promise.all(NODES.map(agentStatus))).flatMap((s) => s.enrolledPods.map((p) => `${p.namespace}/${p.name}`));
      const want = ['demo/web', 'demo/echo', 'demo/vault', 'demo/client-a', 'demo/mallory'];
      if (!want.every((p) => enrolled.includes(p))) throw new Error(`enrolled so far: ${enrolled.join(', ') || 'none'}`);
      return true;
    }, 30_000);
    await eventually('web reachable through its Service', async () => (await curl('client-a', url(webVip(), 80, '/index.html'))).stdout.trim() === MARKER, 30_000);
    await eventually('echo serving', async () => (await curl('client-a', url(podOf('echo').ip, 8080))).exitCode === 0, 30_000);
  });

  after(async () => {
    await sandboxDown(NAME);
    await rm(WWW, { recursive: true, force: true });
    assert.deepEqual(await leftovers(NAME), [], 'the sandbox left something behind');
  });

  test('1. one object never stops a component: hostile policies and annotations are each rejected with a reason, nothing restarts, traffic flows', async (t) => {
    const pidsBefore = await pidsOf();
    // Everything here is admitted by the API server and its CRD schemas; selectors match no pod, so a fail-closed stand-in denies nothing that runs.
    const nobody = { matchLabels: { app: 'nobody' } };
    const policies = [
      policy('long-principal', { selector: nobody, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['x'.repeat(10_000)] } }] }] }),
      // Emoji, the text of escapes, and a lone surrogate (which reaches the API server as U+FFFD).
      policy('emoji-principal', { selector: nobody, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/\u{1F9A0}\\ud800\ud800\\u0000\u{1F4A3}'] } }] }] }),
      policy('bad-ip-block', { selector: nobody, action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['999.1.1.1/99'] } }] }] }),
      policy('port-name', { selector: nobody, action: 'DENY', rules: [{ to: [{ operation: { ports: ['http'] } }] }] }),
    ];
    // 70,000 entries, 17,000 of them distinct ports: more than the node's whole excluded-ports table holds.
    const manyPorts = [...Array.from({ length: 17_000 }, (_, i) => String(i + 1)), ...Array.from({ length: 53_000 }, () => '1')].join(',');
    const pod = (name: string, excluded: string) => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: demo
  annotations: {meshlet.io/exclude-outbound-ports: ${JSON.stringify(excluded)}}
spec:
  nodeName: node-1
  containers: [{name: sleep, image: busybox, command: [sleep, infinity]}]
`;
    const pods = [pod('excludes-70000', manyPorts), pod('excludes-garbage', '\u0000,-1,99999999999999999999,0x50,1e3,\u{1F47E},../..')].join('---\n');
    const objects = [...policies.map((p) => `AuthorizationPolicy demo/${p.metadata.name}`), 'Pod demo/excludes-70000', 'Pod demo/excludes-garbage'];
    const honest = pod('excludes-one', '5432');
    const cleanUp = async () => {
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '-f', '-'], asList(policies));
      await sandboxDelete(NAME, pods, { strict: false });
      await rejectionsCleared(objects);
    };
    t.after(async () => {
      await cleanUp();
      await sandboxDelete(NAME, honest, { strict: false });
    });

    await kubectl(['apply', '-f', '-'], asList(policies));
    await sandboxApply(NAME, pods);

    const rejected = await rejectedEverywhere(objects);
    for (const o of objects) assert.match(rejected.get(o)!.reason, /\S/, `${o} is rejected with a reason`);
    assert.match(rejected.get('AuthorizationPolicy demo/long-principal')!.reason, /principals/);
    assert.match(rejected.get('AuthorizationPolicy demo/emoji-principal')!.reason, /principals/);
    assert.match(rejected.get('AuthorizationPolicy demo/bad-ip-block')!.reason, /999\.1\.1\.1\/99/);
    assert.match(rejected.get('AuthorizationPolicy demo/port-name')!.reason, /"http"/);
    assert.match(rejected.get('Pod demo/excludes-garbage')!.reason, /meshlet\.io\/exclude-outbound-ports/);
    assert.match(rejected.get('Pod demo/excludes-70000')!.reason, /meshlet\.io\/exclude-outbound-ports/);
    const text = await meshlet(['status', '--sandbox', NAME]);
    assert.match(text.stdout, /AuthorizationPolicy demo\/bad-ip-block: .*\[invalid\]/);

    await everyAgentReadyAndInSync();
    const served = await curl('client-a', url(webVip(), 80, '/index.html'));
    assert.equal(served.stdout.trim(), MARKER, `traffic through the web Service: ${served.stderr}`);
    assert.deepEqual(await pidsOf(), pidsBefore, 'no agent or ztunnel restarted (their containers\' pids and restart counts)');

    // Gone, they leave nothing behind: an ordinary pod with an excluded port enrols on the same node.
    await cleanUp();
    await sandboxApply(NAME, honest);
    await eventually('node-1\'s agent to enrol a pod excluding port 5432', async () => {
      const s = await agentStatus('node-1');
      const enrolled = s.enrolledPods.find((p) => p.namespace === 'demo' && p.name === 'excludes-one');
      if (!enrolled || !isDeepStrictEqual(enrolled.excludeOutboundPorts, [5432])) throw new Error(`not enrolled with [5432] (${JSON.stringify(enrolled?.excludeOutboundPorts)}); agent ${s.ready ? 'ready' : `NOT READY: ${s.notReady.join('; ')}`}`);
      return true;
    }, 30_000);
    await everyAgentReadyAndInSync();
  });

  test('2. agent and ztunnel converge: after SIGKILL of a ztunnel and then its agent, the agent is ready and in sync and the ztunnel holds what it held', async () => {
    const node = 'node-2';
    await everyAgentReadyAndInSync();
    // As sets: the order the ztunnel lists them in is the order it learnt them.
    const held = async () => {
      const state = await meshState(node);
      return {
        workloads: [...state.workloads].sort((a, b) => a.uid.localeCompare(b.uid)),
        services: [...state.services].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)),
      };
    };
    const before = await held();
    assert.ok(before.workloads.some((w) => w.namespace === 'demo' && w.name === 'web'), 'the ztunnel holds web before the kills');
    assert.ok(before.services.some((s) => s.namespace === 'demo' && s.name === 'web'), 'the ztunnel holds the web Service before the kills');

    const first = await pidsOn(node);
    assert.ok(first.ztunnelPid && first.agentPid, `sandbox status names both containers' pids: ${JSON.stringify(first)}`);
    process.kill(first.ztunnelPid, 'SIGKILL');
    await eventually('the kubelet to restart the ztunnel container', async () => {
      const now = await pidsOn(node);
      return now.ztunnelPid !== undefined && now.ztunnelPid !== first.ztunnelPid && (now.ztunnelRestarts ?? 0) > (first.ztunnelRestarts ?? 0);
    }, 60_000);
    // Once the agent has the new ztunnel in sync, whichever agent it is: the one from before, or one that took its place.
    await everyAgentReadyAndInSync();
    const agent = await pidsOn(node);
    try {
      process.kill(agent.agentPid!, 'SIGKILL');
    } catch (err) {
      // Gone on its own since the status was read: the check at the end says so.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
    await eventually('the kubelet to restart the agent container', async () => {
      const now = await pidsOn(node);
      return now.agentPid !== undefined && now.agentPid !== agent.agentPid && (now.agentRestarts ?? 0) > (agent.agentRestarts ?? 0);
    }, 60_000);

    await everyAgentReadyAndInSync();
    await eventually(`${node}'s ztunnel to hold the same workloads and services as before`, async () => {
      const now = await held();
      try {
        assert.deepStrictEqual(now, before);
      } catch {
        throw new Error(`holds ${now.workloads.length} workloads (${now.workloads.map((w) => `${w.namespace}/${w.name}`).join(', ')}) and ${now.services.length} services, before ${before.workloads.length} and ${before.services.length}`);
      }
      return true;
    }, 30_000);
    await eventually('web reachable through its Service again', async () => (await curl('client-a', url(webVip(), 80, '/index.html'))).stdout.trim() === MARKER, 30_000);
    // Separate processes so that either can go without the other: losing its ztunnel, the agent reconnects.
    assert.deepEqual([agent.agentPid, agent.agentRestarts], [first.agentPid, first.agentRestarts], `the agent restarted when its ztunnel was killed (kubectl logs -n meshlet-system -c agent --previous says why)`);
  });

  test('3. addresses have owners: ghost-node pods claiming 127.0.0.1, an address outside every pod CIDR and a running pod\'s address are refused by rule, and that pod keeps its identity', async (t) => {
    const web = podOf('web');
    // ghost-a declares a pod range of its own; ghost-b none (as with a CNI that allocates addresses itself), so
    // only the duplicate rule stands between its pod and web's address. No kubelet runs on either: the pods'
    // statuses are what a compromised kubelet would write.
    const nodes = [
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'ghost-a' }, spec: { podCIDR: '10.244.9.0/24', podCIDRs: ['10.244.9.0/24'] } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'ghost-b' } },
    ];
    const claims = [
      { pod: 'claims-loopback', node: 'ghost-a', ip: '127.0.0.1', rule: 'pod-ip-not-unicast' },
      { pod: 'claims-outside', node: 'ghost-a', ip: '10.250.0.7', rule: 'pod-ip-outside-node-cidr' },
      { pod: 'claims-web', node: 'ghost-b', ip: web.ip, rule: 'ip-claimed' },
    ];
    const pods = claims.map((c) => ({
      apiVersion: 'v1', kind: 'Pod', metadata: { name: c.pod, namespace: 'ghosts' },
      spec: { nodeName: c.node, serviceAccountName: 'default', containers: [{ name: 'sleep', image: 'busybox', command: ['sleep', 'infinity'] }] },
    }));
    t.after(async () => {
      // No kubelet confirms a graceful deletion on a ghost node.
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '--force', '--grace-period=0', '-f', '-'], asList(pods));
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '-f', '-'], asList(nodes));
      await rejectionsCleared(claims.map((c) => `Pod ghosts/${c.pod}`));
    });

    await kubectl(['apply', '-f', '-'], asList(nodes));
    for (const [i, n] of nodes.entries()) {
      await kubectl(['patch', 'node', n.metadata.name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: `10.200.0.${90 + i}` }] } })]);
    }
    await kubectl(['apply', '-f', '-'], asList(pods));
    for (const c of claims) {
      await kubectl(['patch', 'pod', c.pod, '-n', 'ghosts', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: c.ip, podIPs: [{ ip: c.ip }] } })]);
    }

    const rejected = await rejectedEverywhere(claims.map((c) => `Pod ghosts/${c.pod}`));
    for (const c of claims) {
      const r = rejected.get(`Pod ghosts/${c.pod}`)!;
      assert.equal(r.rule, c.rule, `${c.pod} (${c.ip} on ${c.node}) is refused by rule ${c.rule}: ${r.reason}`);
      assert.ok(r.reason.includes(c.ip), `the reason names the address: ${r.reason}`);
    }
    const text = await meshlet(['status', '--sandbox', NAME]);
    assert.match(text.stdout, /Pod ghosts\/claims-web: .*\[ip-claimed\]/);
    for (const node of NODES) {
      const state = await meshState(node);
      assert.deepEqual(state.workloads.filter((w) => w.namespace === 'ghosts').map((w) => w.name), [], `${node}'s ztunnel holds no ghost pod`);
      assert.deepEqual(state.workloads.filter((w) => w.ips.includes(web.ip)).map((w) => `${w.namespace}/${w.name} ${w.uid}`), [`demo/web ${web.uid}`], `${node}'s ztunnel has web, and only web, at ${web.ip}`);
    }

    const path = `/index.html?claim=${randomBytes(4).toString('hex')}`;
    const served = await curl('client-a', url(web.ip, 8080, path));
    assert.equal(served.stdout.trim(), MARKER, `client-a → web's address: ${served.stderr}`);
    const outbound = await eventually('node-1\'s flow to web\'s address', async () =>
      (await ztunnelFlows('node-1')).find((f) => f.direction === 'outbound' && f.originalDestination.ip === web.ip && f.source.workload?.name === 'client-a' && f.state === 'closed' && f.bytesReceived > 0));
    assert.equal(outbound.destination?.workload?.name, 'web');
    assert.equal(outbound.destination?.identity, 'spiffe://cluster.local/ns/demo/sa/web', 'client-a\'s ztunnel asked for web\'s identity');
    const inbound = await eventually('node-2\'s side of that flow', async () => (await ztunnelFlows('node-2')).find((f) => f.direction === 'inbound' && f.traceId === outbound.traceId));
    assert.equal(inbound.source.identity, ALPHA, 'the destination saw the real client\'s identity');
    assert.equal(inbound.destination?.identity, 'spiffe://cluster.local/ns/demo/sa/web', 'the real pod served under its own identity');
    assert.equal(inbound.destination?.workload?.name, 'web');
    assert.equal(inbound.security, 'mutual_tls');
  });

  test('4. identity rests on the kernel: a pod cannot take an address, forged packets never reach a STRICT pod, NET_ADMIN is not granted, and a connection from an address not the pod\'s own is refused as source_mismatch', async (t) => {
    const [mallory, clientA, web, vault, echo] = [podOf('mallory'), podOf('client-a'), podOf('web'), podOf('vault'), podOf('echo')];
    const node2 = nodeOf('node-2');

    const claim = await exec('mallory', ['ip', 'addr', 'add', `${web.ip}/32`, 'dev', 'eth0']);
    assert.notEqual(claim.exitCode, 0, 'mallory added web\'s address to its interface');
    assert.match(claim.stderr, /Operation not permitted/);

    // The node's anti-spoofing: IPv4 strict reverse-path filtering, IPv6 the nftables fib check; both count what they drop.
    const spoofDrops = async () => {
      const netstat = (await inNode('node-1', ['cat', '/proc/net/netstat'])).stdout.split('\n').filter((l) => l.startsWith('TcpExt:'));
      const [names, values] = netstat.map((l) => l.split(/\s+/));
      const v4 = Number(values?.[names?.indexOf('IPReversePathFilter') ?? -1]);
      const chain = JSON.parse((await inNode('node-1', ['nft', '-j', 'list', 'chain', 'inet', 'meshlet', 'pod_source'])).stdout || '{}') as { nftables?: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
      const v6 = (chain.nftables ?? []).flatMap((e) => e.rule?.expr ?? []).reduce((sum, x) => sum + (x.counter?.packets ?? 0), 0);
      assert.ok(Number.isFinite(v4), `IPReversePathFilter in node-1's /proc/net/netstat: ${netstat.join(' / ')}`);
      return { v4, v6 };
    };
    const dropsBefore = await spoofDrops();

    const listener = await sandboxSpawn(NAME, { pod: 'vault', namespace: 'demo' }, ['python3', '-u', join(FIXTURES, 'raw-listen.py'), '9999']);
    t.after(() => void listener.kill('SIGKILL'));
    let heard = '';
    listener.stdout!.on('data', (c: Buffer) => (heard += c.toString()));
    listener.stderr!.on('data', (c: Buffer) => (heard += `stderr: ${c.toString()}`));
    await eventually('the raw listener in vault', () => heard.includes('listening\n') || undefined);

    const send = async (kind: 'udp' | 'syn', src: string, dst: string, payload: string) => {
      const argv = kind === 'udp' ? ['python3', join(FIXTURES, 'spoof-udp.py'), src, dst, '9999', payload] : ['python3', join(FIXTURES, 'spoof-syn.py'), src, dst, '9999'];
      const r = await exec('mallory', argv);
      assert.equal(r.exitCode, 0, `raw ${kind} from mallory claiming ${src}: ${r.stderr}`);
    };
    const forged: [string, string][] = [
      ['inbound-source', node2.inboundSourceIp4!], ['client-a', clientA.ip], ['web', web.ip],
      ['inbound-source6', node2.inboundSourceIp6!], ['client-a6', clientA.ip6!], ['web6', web.ip6!],
    ];
    for (const [tag, src] of forged) {
      const dst = src.includes(':') ? vault.ip6! : vault.ip;
      await send('udp', src, dst, tag);
      await send('syn', src, dst, tag);
    }
    // mallory's own packets take the same path after the forged ones: once they are heard, the forged ones would have been.
    for (const src of [mallory.ip, mallory.ip6!]) {
      await send('udp', src, src.includes(':') ? vault.ip6! : vault.ip, 'own');
      await send('syn', src, src.includes(':') ? vault.ip6! : vault.ip, 'own');
    }
    const honest = [`udp own ${mallory.ip}`, `udp own ${mallory.ip6}`, `tcp ${mallory.ip}`, `tcp ${mallory.ip6}`].sort();
    await eventually('mallory\'s own packets in vault', () => {
      const missing = honest.filter((l) => !heard.split('\n').includes(l));
      if (missing.length > 0) throw new Error(`not heard: ${missing.join(', ')}; the listener printed ${JSON.stringify(heard)}`);
      return true;
    });
    assert.deepEqual(heard.split('\n').filter((l) => l !== '' && l !== 'listening').sort(), honest, 'only mallory\'s own packets reached the STRICT pod');

    // NET_RAW lets a socket bind any address (IP_TRANSPARENT); connecting from another pod's through the mesh goes nowhere.
    const foreign = (src: string, dst: string) => exec('mallory', ['python3', join(FIXTURES, 'foreign-source-connect.py'), src, dst, '8080', '3']);
    for (const [src, dst] of [[web.ip, echo.ip], [web.ip6!, echo.ip6!]] as const) {
      const r = await foreign(src, dst);
      assert.match(r.stdout, /^bound\n/, `mallory bound ${src}: ${r.stderr}`);
      assert.notEqual(r.exitCode, 0, `mallory reached ${dst} from web's address ${src}: ${r.stdout}`);
    }
    const dropsAfter = await spoofDrops();
    // Three forged sources per family, a datagram and a SYN each, and the SYN of each connect from web's address.
    assert.ok(dropsAfter.v4 - dropsBefore.v4 >= 7, `node-1 counted ${dropsAfter.v4 - dropsBefore.v4} IPv4 packets dropped by reverse-path filtering, want at least 7`);
    assert.ok(dropsAfter.v6 - dropsBefore.v6 >= 7, `node-1 counted ${dropsAfter.v6 - dropsBefore.v6} IPv6 packets dropped by its source check, want at least 7`);
    const carried = (await ztunnelFlows('node-1')).filter((f) => [web.ip, web.ip6].includes(f.source.ip) || [web.ip, web.ip6].includes(f.claimedSource?.ip));
    assert.deepEqual(carried, [], 'node-1\'s ztunnel carried nothing from web\'s addresses');

    // The sandbox refuses NET_ADMIN outright (its pods share the host's mount namespace, where /run/netns lies), so
    // no pod can add another pod's address to its interface and send from it past the node's source check.
    const netadmin = `apiVersion: v1
kind: Pod
metadata: {name: netadmin, namespace: demo}
spec:
  nodeName: node-1
  restartPolicy: Never
  containers: [{name: app, image: busybox, command: [sleep, infinity], securityContext: {capabilities: {add: [NET_ADMIN]}}}]
`;
    t.after(() => sandboxDelete(NAME, netadmin, { strict: false }).then(() => undefined));
    const applied = await sandboxApply(NAME, netadmin);
    assert.match(applied.find((r) => r.name === 'netadmin')?.warning ?? '', /StartError: container "app": securityContext\.capabilities\.add NET_ADMIN is refused/);

    // One address that is not the pod's passes the node's source check: its own IPv6 link-local one, on its own
    // link. The kernel's capture record names mallory's cgroup, so the ztunnel refuses the connection as hers.
    const linkLocal = (await exec('mallory', ['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])).stdout.match(/inet6 (fe80:[0-9a-f:]+)\//)?.[1];
    assert.ok(linkLocal, 'mallory has an IPv6 link-local address');
    const mismatchesBefore = counter(await ztunnelMetrics('node-1'), 'meshlet_source_mismatches_total', { direction: 'outbound' });
    const fromLinkLocal = await foreign(linkLocal, echo.ip6!);
    assert.notEqual(fromLinkLocal.exitCode, 0, `mallory reached echo from her link-local address: ${fromLinkLocal.stdout}`);
    const refused = await eventually('node-1\'s flow refusing the link-local source', async () => {
      const flows = await ztunnelFlows('node-1');
      const found = flows.find((f) => f.closeReason === 'source_mismatch' && f.claimedSource?.ip === linkLocal);
      if (!found) throw new Error(`no flow closed source_mismatch claiming ${linkLocal}; mallory's flows: ${JSON.stringify(flows.filter((f) => f.source.workload?.name === 'mallory').map((f) => [f.source.ip, f.originalDestination.ip, f.closeReason]))}`);
      return found;
    });
    assert.equal(refused.source.workload?.name, 'mallory', 'the flow names the pod the kernel saw connect');
    assert.equal(refused.source.identity, undefined, 'carried under no identity');
    assert.ok(counter(await ztunnelMetrics('node-1'), 'meshlet_source_mismatches_total', { direction: 'outbound' }) > mismatchesBefore, 'meshlet_source_mismatches_total{direction="outbound"} counted it');
  });

  test('5. rejected policies fail closed: an unusable ALLOW denies its workload, an unusable PeerAuthentication makes its workload STRICT', async (t) => {
    const [echo, web, outsider] = [podOf('echo'), podOf('web'), podOf('outsider', 'plain')];
    assert.equal((await curl('client-a', url(echo.ip, 8080))).exitCode, 0, 'client-a reaches echo before the policy');
    assert.equal((await curl('outsider', url(web.ip, 8080, '/index.html'), 'plain')).stdout.trim(), MARKER, 'plaintext reaches web before the policy (PERMISSIVE)');
    // Both admitted by the CRD schemas; meshlet can use neither.
    const docs = asList([
      policy('echo-port-names', { selector: { matchLabels: { app: 'echo' } }, action: 'ALLOW', rules: [{ to: [{ operation: { ports: ['http'] } }] }] }),
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'web-mtls-disable', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'DISABLE' } } },
    ]);
    t.after(async () => {
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '-f', '-'], docs);
      await rejectionsCleared(['AuthorizationPolicy demo/echo-port-names', 'PeerAuthentication demo/web-mtls-disable']);
      await eventually('echo reachable again', async () => (await curl('client-a', url(echo.ip, 8080))).exitCode === 0, 30_000);
    });
    await kubectl(['apply', '-f', '-'], docs);

    const rejected = await rejectedEverywhere(['AuthorizationPolicy demo/echo-port-names', 'PeerAuthentication demo/web-mtls-disable']);
    assert.match(rejected.get('AuthorizationPolicy demo/echo-port-names')!.failClosed ?? '', /denies every connection to workloads labelled app=echo/);
    assert.match(rejected.get('PeerAuthentication demo/web-mtls-disable')!.failClosed ?? '', /counts as STRICT for workloads labelled app=web/);

    await eventually('client-a refused by echo', async () => (await curl('client-a', url(echo.ip, 8080))).exitCode !== 0, 30_000);
    const denied = await eventually('node-2\'s deny of client-a → echo', async () =>
      (await ztunnelFlows('node-2')).find((f) => f.direction === 'inbound' && f.source.identity === ALPHA && f.destination?.workload?.name === 'echo' && f.verdict === 'deny'));
    assert.equal(denied.policy, 'demo/echo-port-names');
    assert.match(denied.verdictReason ?? '', /demo\/echo-port-names.*fails closed/);

    await eventually('web STRICT in the kernel, because of the rejected PeerAuthentication', async () => {
      const pod = (await agentStatus('node-2')).enrolledPods.find((p) => p.namespace === 'demo' && p.name === 'web');
      return pod?.inbound?.mode === 'STRICT' && (pod.inbound.failClosed ?? []).includes('PeerAuthentication demo/web-mtls-disable');
    });
    await eventually('plaintext to web dropped', async () => (await curl('outsider', url(web.ip, 8080, '/index.html'), 'plain', 2)).exitCode !== 0, 15_000);
    const drop = await eventually('the kernel\'s drop of outsider → web', async () =>
      (await dropFlows('node-2')).find((f) => f.source.ip === outsider.ip && f.destination?.workload?.name === 'web' && f.closeReason === 'dropped'));
    assert.equal(drop.verdict, 'deny');
    assert.match(drop.verdictReason ?? '', /PeerAuthentication demo\/web-mtls-disable/);
    assert.equal((await curl('client-a', url(web.ip, 8080, '/index.html'))).stdout.trim(), MARKER, 'mesh traffic to web still flows under STRICT');
  });

  test('6. bounded: silent connections to 15008 are closed after the handshake timeout and counted; the CA refuses oversized and odd-exponent keys and a flood, and counts them', async () => {
    const node2 = nodeOf('node-2');
    const ca = ZTUNNEL_CA_ACCESS;
    const caMetrics = async () => {
      const r = await inZtunnel(NAME, 'node-1', ['curl', '-sf', '--cacert', ca.bundleFile, `${ca.url}/metrics`], { timeoutMs: 30_000 });
      assert.equal(r.exitCode, 0, `the CA's /metrics: ${r.stderr}`);
      return r.stdout;
    };
    const IDLE = 16;
    const timeouts = async () => counter(await ztunnelMetrics('node-2'), 'meshlet_hbone_handshake_failures_total', { direction: 'inbound', reason: 'handshake_timeout' });

    const idleBefore = await timeouts();
    const caBefore = await caMetrics();
    // The idle connections wait out the 10 s handshake timeout while the CA is tried.
    const idle = exec('outsider', ['python3', join(FIXTURES, 'idle-connections.py'), node2.nodeIp4, '15008', String(IDLE), '60'], 'plain', 90_000);

    const forged = async (bits: number, exponent: number, count = 1) => {
      const r = await inZtunnel(NAME, 'node-1', [process.execPath, join(FIXTURES, 'ca-forged-request.ts'), ca.url, ca.bundleFile, ca.tokenFile, 'demo', 'alpha', String(bits), String(exponent), String(count)], { timeoutMs: 120_000 });
      assert.equal(r.exitCode, 0, r.stderr);
      return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { signed: boolean; status?: number; reason?: string; message?: string; count: number });
    };
    const [huge] = await forged(65_536, 65_537);
    assert.deepEqual([huge!.signed, huge!.status, huge!.reason], [false, 400, 'key-too-large'], `a 65,536-bit modulus: ${huge!.message}`);
    const [three] = await forged(2048, 3);
    assert.deepEqual([three!.signed, three!.status, three!.reason], [false, 400, 'bad-exponent'], `e = 3: ${three!.message}`);
    const flood = await forged(2048, 3, 80);
    const limited = flood.find((o) => o.status === 429);
    assert.ok(limited, `80 requests at once from one node: some are rate-limited (${JSON.stringify(flood)})`);
    assert.equal(limited.reason, 'rate-limited');
    assert.equal(flood.filter((o) => o.signed).length, 0, 'nothing of the flood was signed');

    const caAfter = await caMetrics();
    const refusals = (text: string, reason: string) => counter(text, 'meshlet_ca_refusals_total', { reason });
    assert.ok(refusals(caAfter, 'key-too-large') - refusals(caBefore, 'key-too-large') >= 1, 'meshlet_ca_refusals_total{reason="key-too-large"} counted the oversized key');
    assert.ok(refusals(caAfter, 'bad-exponent') - refusals(caBefore, 'bad-exponent') >= 1, 'meshlet_ca_refusals_total{reason="bad-exponent"} counted e = 3');
    assert.ok(refusals(caAfter, 'rate-limited') - refusals(caBefore, 'rate-limited') >= limited.count, 'meshlet_ca_refusals_total{reason="rate-limited"} counted the flood');

    const r = await idle;
    assert.equal(r.exitCode, 0, `the silent connections to ${node2.nodeIp4}:15008: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^open ${IDLE}\\nclosed ${IDLE}\\n$`));
    await eventually('the handshake timeouts counted', async () => {
      const counted = (await timeouts()) - idleBefore;
      if (counted < IDLE) throw new Error(`meshlet_hbone_handshake_failures_total{direction="inbound",reason="handshake_timeout"} rose by ${counted}, want ${IDLE}`);
      return true;
    });
  });

  test('4b. identity: the inbound side ignores a Forwarded claim its peer may not make, so ipBlocks judge the peer: a mesh client forging another pod\'s address is denied, the honest claim is allowed', async (t) => {
    const [clientA, echo, web] = [podOf('client-a'), podOf('echo'), podOf('web')];
    const node1 = nodeOf('node-1');
    const docs = asList([policy('echo-from-client-a', { selector: { matchLabels: { app: 'echo' } }, action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: [`${clientA.ip}/32`] } }] }] })]);
    t.after(async () => {
      await sandboxKubectl(NAME, ['delete', '--ignore-not-found', '-f', '-'], docs);
      await eventually('echo open to mallory again', async () => (await curl('mallory', url(echo.ip, 8080))).exitCode === 0, 30_000);
    });
    await kubectl(['apply', '-f', '-'], docs);
    await eventually('echo-from-client-a in force: mallory refused', async () => (await curl('mallory', url(echo.ip, 8080), 'demo', 2)).exitCode !== 0, 30_000);
    assert.equal((await curl('client-a', url(echo.ip, 8080))).exitCode, 0, 'client-a, inside the ipBlock, reaches echo through its ztunnel');

    // A peer on node-1 holding mallory's certificate (what a compromised node-1 ztunnel has) names client-a, a pod
    // of its own node but of another identity, and web, a pod of node-2; the same peer as alpha names client-a.
    const mismatches = async () => counter(await ztunnelMetrics('node-2'), 'meshlet_source_mismatches_total', { direction: 'inbound' });
    const mismatchesBefore = await mismatches();
    const claim = (ip: string) => `for="${ip}:40000"`;
    const streams = async (sourceSa: string, ...claims: string[]) => {
      const r = await meshPeer('hbone-claims.ts', sourceSa, 'echo', `${echo.ip}:8080`, claims);
      assert.equal(r.exitCode, 0, `hbone-claims.ts as demo/${sourceSa}: ${r.stderr}`);
      return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { forwarded: string; status: number; traceId: string });
    };
    const [asClientA, asWeb] = await streams('mallory', claim(clientA.ip), claim(web.ip));
    const [honest] = await streams('alpha', claim(clientA.ip));
    assert.equal(asClientA!.status, 401, 'mallory\'s certificate claiming client-a\'s address');
    assert.equal(asWeb!.status, 401, 'a node-1 peer claiming the address of web, a pod of node-2');
    assert.equal(honest!.status, 200, 'alpha\'s certificate claiming client-a\'s address, as client-a\'s ztunnel does');

    const flowOf = (traceId: string) => eventually(`node-2's flow of trace ${traceId}`, async () => (await ztunnelFlows('node-2')).find((f) => f.direction === 'inbound' && f.traceId === traceId));
    for (const [forged, claimed] of [[asClientA!, clientA.ip], [asWeb!, web.ip]] as const) {
      const flow = await flowOf(forged.traceId);
      assert.deepEqual(
        { source: flow.source.ip, identity: flow.source.identity, claimed: flow.claimedSource?.ip, verdict: flow.verdict, reason: flow.verdictReason, closeReason: flow.closeReason },
        { source: node1.nodeIp4, identity: MALLORY, claimed, verdict: 'deny', reason: 'no ALLOW policy for this workload matched', closeReason: 'denied' },
        `the claim of ${claimed} is ignored: policy judged the peer, node-1, and denied it`,
      );
    }
    const allowed = await flowOf(honest!.traceId);
    assert.deepEqual(
      { source: allowed.source.ip, workload: allowed.source.workload?.name, identity: allowed.source.identity, claimed: allowed.claimedSource, verdict: allowed.verdict, policy: allowed.policy },
      { source: clientA.ip, workload: 'client-a', identity: ALPHA, claimed: undefined, verdict: 'allow', policy: 'demo/echo-from-client-a' },
      'the honest claim is taken',
    );
    assert.equal(await mismatches() - mismatchesBefore, 2, 'meshlet_source_mismatches_total{direction="inbound"} counted both forged claims');
    const warnings = (await nodeLog(NAME, 'node-2', 'ztunnel')).split('\n').filter((l) => l.includes('"event":"source_mismatch"') && l.includes('"direction":"inbound"'));
    assert.ok(warnings.some((l) => l.includes(`${clientA.ip}:40000`) && l.includes('the peer\'s certificate is spiffe://cluster.local/ns/demo/sa/mallory')), `node-2's ztunnel log says why the claim of client-a's address was ignored: ${warnings.join('\n')}`);
    assert.ok(warnings.some((l) => l.includes(`${web.ip}:40000`) && l.includes('the peer is node node-1')), `node-2's ztunnel log says why the claim of web's address was ignored: ${warnings.join('\n')}`);
  });

  test('6b. bounded: a pod holding more connections to another node\'s 15008 than the per-peer cap has the rest refused at accept and counted, and another peer still gets a session', async (t) => {
    const [outsider, echo] = [podOf('outsider', 'plain'), podOf('echo')];
    const cap = LIMITS.hboneMaxSessionsPerPeer;
    const refusals = async () => counter(await ztunnelMetrics('node-2'), 'meshlet_connections_refused_total', { listener: 'hbone', reason: 'peer_session_limit' });
    const before = await refusals();
    // Without a mesh certificate a pod gets no further than TCP, which is what the cap counts (handshakes included).
    const hog = await holdConnections(outsider, nodeOf('node-2').nodeIp4, 15008, cap + OVER, OVER);
    t.after(hog.kill);
    assert.deepEqual(hog.refused, range(cap, OVER), `the connections past the first ${cap} are the ones closed`);
    assert.equal(hog.held, cap);
    assert.equal(await refusals() - before, OVER, 'meshlet_connections_refused_total{listener="hbone",reason="peer_session_limit"} counted each');

    // node-1 is another peer: a new session from it (a mesh client as alpha, for client-a) is served while outsider holds its cap.
    const r = await meshPeer('hbone-claims.ts', 'alpha', 'echo', `${echo.ip}:8080`, [`for="${podOf('client-a').ip}:40000"`]);
    assert.equal(r.exitCode, 0, `a session from node-1 while outsider holds ${cap}: ${r.stderr}`);
    assert.equal((JSON.parse(r.stdout) as { status: number }).status, 200, 'node-1\'s stream on its new session is answered 200');
    await hog.release();
  });

  test('6c. bounded: a mesh peer that ignores the advertised stream cap has the streams past it refused (REFUSED_STREAM) and keeps its session', async () => {
    const echo = podOf('echo');
    const cap = LIMITS.hboneMaxStreams;
    const refusals = async () => counter(await ztunnelMetrics('node-2'), 'meshlet_hbone_streams_refused_total', { reason: 'stream_limit' });
    const before = await refusals();
    const r = await meshPeer('hbone-stream-flood.ts', 'mallory', 'echo', `${echo.ip}:8080`, [String(cap + OVER), '20']);
    assert.equal(r.exitCode, 0, `hbone-stream-flood.ts: ${r.stdout}${r.stderr}`);
    const outcome = JSON.parse(r.stdout) as { maxConcurrentStreams?: number; answered: number[]; other: number[]; reset: { stream: number; code: number }[]; goaway?: unknown };
    const streamIds = (from: number, n: number) => range(from, n).map((i) => 2 * i + 1);
    // HTTP/2's own limit sits above the cap so that the ztunnel, not nghttp2, refuses the streams past it and counts them.
    assert.equal(outcome.maxConcurrentStreams, 2 * cap, 'node-2\'s ztunnel advertises twice its stream cap');
    assert.deepEqual(outcome.answered.sort((a, b) => a - b), streamIds(0, cap), `the first ${cap} streams are tunnels to echo`);
    assert.deepEqual(outcome.other, []);
    // RST_STREAM with REFUSED_STREAM (RFC 9113, 7): a stream the server never began, which a client may retry elsewhere.
    assert.deepEqual(outcome.reset.sort((a, b) => a.stream - b.stream), streamIds(cap, OVER).map((stream) => ({ stream, code: 0x7 })), 'the streams past the cap are refused');
    assert.equal(outcome.goaway, undefined, 'the session itself goes on');
    assert.equal(await refusals() - before, OVER, 'meshlet_hbone_streams_refused_total{reason="stream_limit"} counted each');
  });

  test('6d. bounded: a pod holding more captured connections than the per-pod cap has the rest refused as connection_limit, counted, and the node\'s other pods keep connecting', async (t) => {
    const [mallory, echo] = [podOf('mallory'), podOf('echo')];
    const cap = LIMITS.maxConnectionsPerPod;
    const refusals = async () => counter(await ztunnelMetrics('node-1'), 'meshlet_connections_refused_total', { listener: 'outbound', reason: 'connection_limit' });
    const before = await refusals();
    const hog = await holdConnections(mallory, echo.ip, 8080, cap + OVER, OVER);
    t.after(hog.kill);
    assert.deepEqual(hog.refused, range(cap, OVER), `the connections past the first ${cap} are the ones closed`);
    assert.equal(hog.held, cap);

    const served = await curl('client-a', url(echo.ip, 8080));
    assert.equal(served.exitCode, 0, `client-a, on mallory's node, reaches echo while mallory holds ${cap}: ${served.stderr}`);
    assert.notEqual((await curl('mallory', url(echo.ip, 8080), 'demo', 2)).exitCode, 0, 'mallory gets no connection past her cap');
    assert.equal(await refusals() - before, OVER + 1, 'meshlet_connections_refused_total{listener="outbound",reason="connection_limit"} counted each');
    const refused = (await ztunnelFlows('node-1')).filter((f) => f.closeReason === 'connection_limit');
    assert.equal(refused.length, OVER + 1, `node-1's flows closed connection_limit: ${JSON.stringify(refused.map((f) => [f.source.workload?.name, f.source.ip, f.originalDestination.ip]))}`);
    assert.ok(refused.every((f) => f.source.workload?.name === 'mallory' && f.source.ip === mallory.ip && f.originalDestination.ip === echo.ip), 'each names mallory and where she was going');

    await hog.release();
    await eventually('mallory connecting again once her connections are closed', async () => (await curl('mallory', url(echo.ip, 8080), 'demo', 2)).exitCode === 0, 15_000);
  });

  test('pods have PID namespaces of their own: a pod lists only its own processes and cannot signal its node\'s ztunnel, though it holds CAP_KILL', async () => {
    const pidsBefore = await pidsOf();
    const ztunnelPid = pidsBefore['node-1']?.ztunnelPid;
    assert.ok(ztunnelPid !== undefined && process.kill(ztunnelPid, 0), 'node-1\'s ztunnel runs (sandbox status)');

    // Every process in mallory's /proc but zombies (an earlier case's killed exec, until it is reaped), with its command line.
    const listing = await exec('mallory', ['sh', '-c', 'for d in /proc/[0-9]*; do grep -qs "^State:[[:space:]]*Z" "$d/status" && continue; echo "${d#/proc/} $(tr "\\0" " " < "$d/cmdline")"; done']);
    assert.equal(listing.exitCode, 0, listing.stderr);
    const processes = listing.stdout.trim().split('\n').map((l) => l.trim());
    // tini as PID 1, mallory's command, and this exec's own shell: nothing of the node's.
    assert.match(processes[0] ?? '', /^1 \S*tini -- sleep infinity$/, `PID 1 is the container's init: ${listing.stdout}`);
    assert.equal(processes.filter((p) => / sleep infinity$/.test(p) && !p.startsWith('1 ')).length, 1, `the container's command: ${listing.stdout}`);
    assert.equal(processes.length, 3, `mallory's /proc lists only its own processes: ${listing.stdout}`);

    const signal = (flag: string, pid: number) => exec('mallory', ['sh', '-c', `kill ${flag} "$0"`, String(pid)]);
    assert.equal((await signal('-0', 1)).exitCode, 0, 'mallory can signal its own init: CAP_KILL is not what stops it');
    for (const flag of ['-0', '-TERM']) {
      const r = await signal(flag, ztunnelPid);
      assert.notEqual(r.exitCode, 0, `kill ${flag} ${ztunnelPid} from mallory succeeded`);
      assert.match(r.stderr, /No such process/, `kill ${flag} ${ztunnelPid} finds no such process in mallory's namespace`);
    }

    assert.ok(process.kill(ztunnelPid, 0), 'node-1\'s ztunnel still runs');
    await everyAgentReadyAndInSync();
    assert.equal((await curl('client-a', url(webVip(), 80, '/index.html'))).stdout.trim(), MARKER, 'node-1\'s ztunnel still carries client-a\'s traffic');
    assert.deepEqual(await pidsOf(), pidsBefore, 'no agent or ztunnel restarted (their containers\' pids and restart counts)');
  });
});

// The three measured paths of the L4 section, client pod on node-1 and server
// pod on node-2: direct (neither enrolled), meshlet (both enrolled, HBONE
// between the ztunnels) and haproxy-mtls (the same pods as direct, through a
// haproxy per node). Each is checked to really take its route before it is
// measured. Client, server and proxies sit on their node's CPUs (cpus.ts) on
// every path. The L7 section's paths are l7-paths.ts's.
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { AgentStatus } from '../../lib/mesh/agent-status.ts';
import { getJson } from '../../cli/admin-client.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { AGENT_CONTAINER, ZTUNNEL_CONTAINER } from '../../lib/install/names.ts';
import { NODE_POD_SELECTOR } from '../../sandbox/node-pod.ts';
import { DEFAULT_NAMESPACE } from '../../lib/install/options.ts';
import { sandboxExec, sandboxKubectl, sandboxStatus, type SandboxInfo } from '../../sandbox/api.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { cgroupOfPid } from '../../sandbox/cgroup.ts';
import { ensurePinned, pinCgroup, type CpuPlan } from './cpus.ts';
import { BenchSetupError } from './errors.ts';
import { startHaproxyPair, TLS_PORT, type HaproxyPair } from './haproxy.ts';
import { NS_DIRECT, NS_MESH } from './manifest.ts';
import { processesIn } from './proc-stats.ts';
import { probe, type Client } from './workloads.ts';
import { SERVER_PORT, SMALL_PATH } from './www.ts';

/** How much of each container's log a diagnosis reads. */
const LOG_TAIL_LINES = 500;

/** The L4 section's paths, in the order each round measures them. */
export const PATH_IDS = ['direct', 'meshlet', 'haproxy-mtls'] as const;
/** The L7 section's (issue 11): direct, meshlet L4 to a Service, meshlet through a waypoint, nginx in the waypoint's place. */
export const L7_PATH_IDS = ['direct', 'meshlet-l4', 'waypoint', 'nginx'] as const;
export type L4PathId = (typeof PATH_IDS)[number];
export type L7PathId = (typeof L7_PATH_IDS)[number];
export type PathId = L4PathId | L7PathId;

export interface BenchPath {
  id: PathId;
  client: Client;
  /**
   * The proxies this path's bytes cross (none for direct): their memory and
   * CPU are the path's cost. L4: one per node in node order; L7: the
   * waypoint's or nginx's processes.
   */
  proxyPids(): Promise<number[]>;
  /** Pins the server pod and the proxies to their nodes' CPUs, where they are not already (before each measurement: a restarted proxy is a new process). */
  pin(): Promise<void>;
  /** What the proxies logged lately, to quote when a workload fails (their logs go with the sandbox). */
  diagnose(): Promise<string>;
  /** Why the path could not be set up: it is not measured, and every round records this against its figures. */
  unavailable?: Error;
}

export type MeshletTunnel = 'mutual_tls' | 'plaintext' | 'unknown';

export interface Paths {
  all: BenchPath[];
  byId(id: PathId): BenchPath;
  /** How node-1's ztunnel carried the probe (its flow record's `security`): the report says which was measured. */
  meshletTunnel: MeshletTunnel;
  stop(): void;
}

export const podOf = (info: SandboxInfo, ns: string, name: string): SandboxInfo['pods'][number] => {
  const pod = info.pods.find((p) => p.namespace === ns && p.name === name);
  if (!pod?.ip) throw new BenchSetupError(`pod ${ns}/${name} has no address; was the manifest applied?`);
  return pod;
};

export const podIp = (info: SandboxInfo, ns: string, name: string): string => podOf(info, ns, name).ip;

/** The CPUs of the node pod ns/name runs on. */
export function podCpus(info: SandboxInfo, plan: CpuPlan, ns: string, name: string): string {
  const pod = podOf(info, ns, name);
  const index = info.nodes.findIndex((n) => n.name === pod.node);
  if (index < 0) throw new BenchSetupError(`pod ${ns}/${name} runs on ${pod.node}, which is not a node of the sandbox`);
  return plan.byNode[index]!;
}

/** Pins the server pod of `ns` and each proxy to its node's CPUs. */
async function pinAll(info: SandboxInfo, plan: CpuPlan, ns: string, proxyPids: readonly number[]): Promise<void> {
  await pinCgroup(podOf(info, ns, 'server').cgroup, podCpus(info, plan, ns, 'server'));
  for (const [i, pid] of proxyPids.entries()) await ensurePinned(pid, plan.byNode[i]!);
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new BenchSetupError(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The last lines matching `interesting` of each log file. */
/** The last `lines` interesting lines of `text`, indented under `title`; '' when none is. */
function tailOf(title: string, text: string, interesting: RegExp, lines: number): string {
  const tail = text.split('\n').filter((l) => l.trim() !== '' && interesting.test(l)).slice(-lines);
  return tail.length === 0 ? '' : `${title}:\n${tail.map((l) => `  ${l.slice(0, 400)}`).join('\n')}`;
}

export async function logTails(files: readonly string[], interesting: RegExp, lines = 4): Promise<string> {
  const parts: string[] = [];
  for (const file of files) parts.push(tailOf(`${basename(dirname(file))}/${basename(file)}`, await readFile(file, 'utf8').catch(() => ''), interesting, lines));
  return parts.filter(Boolean).join('\n');
}

/** The same of each node's agent and ztunnel, from their containers' logs as `kubectl logs` reads them. */
export async function nodeLogTails(sandbox: string, interesting: RegExp, lines = 4): Promise<string> {
  const listed = await sandboxKubectl(sandbox, ['get', 'pods', '-n', DEFAULT_NAMESPACE, '-l', NODE_POD_SELECTOR, '-o', 'json']);
  if (listed.exitCode !== 0) return `kubectl get pods -n ${DEFAULT_NAMESPACE}: ${listed.stderr.trim()}`;
  const parts: string[] = [];
  for (const pod of (JSON.parse(listed.stdout) as { items: V1Pod[] }).items) {
    for (const container of [AGENT_CONTAINER, ZTUNNEL_CONTAINER]) {
      const logs = await sandboxKubectl(sandbox, ['logs', '-n', DEFAULT_NAMESPACE, pod.metadata!.name!, '-c', container, `--tail=${LOG_TAIL_LINES}`]);
      parts.push(tailOf(`${pod.spec?.nodeName}/${container}`, logs.stdout, interesting, lines));
    }
  }
  return parts.filter(Boolean).join('\n');
}

const isZtunnel = (argv: readonly string[]): boolean => basename(argv[0] ?? '') === 'node' && argv.includes('ztunnel');

/** Each node's ztunnel process, in node order: the node process in its container (not the container's init), the one to pin and measure. */
export async function ztunnelPids(sandbox: string): Promise<number[]> {
  const info = await sandboxStatus(sandbox);
  return Promise.all(info.nodes.map(async (n) => {
    const cgroup = n.ztunnelPid === undefined ? undefined : await cgroupOfPid(n.ztunnelPid);
    const pids = cgroup === undefined ? [] : await processesIn(cgroup, isZtunnel);
    if (pids.length !== 1) throw new BenchSetupError(`the ztunnel of ${n.name} is not running (${pids.length} ztunnel processes in its container); see kubectl logs -n ${DEFAULT_NAMESPACE} -c ${ZTUNNEL_CONTAINER}`);
    return pids[0]!;
  }));
}

/** The three paths, their clients and servers placed by `plan`; starts the haproxies (on their nodes' CPUs). */
export async function setupPaths(sandbox: string, info: SandboxInfo, benchDir: string, plan: CpuPlan): Promise<Paths> {
  const [front, back] = info.nodes;
  if (!front || !back) throw new BenchSetupError('the bench needs a two-node sandbox');
  const client = (ns: string, base: string): Client => ({ sandbox, pod: { pod: 'client', namespace: ns }, base, cpus: podCpus(info, plan, ns, 'client') });

  const direct: BenchPath = {
    id: 'direct',
    client: client(NS_DIRECT, `http://${podIp(info, NS_DIRECT, 'server')}:${SERVER_PORT}`),
    proxyPids: async () => [],
    pin: () => pinAll(info, plan, NS_DIRECT, []),
    diagnose: async () => '',
  };
  const meshlet: BenchPath = {
    id: 'meshlet',
    client: client(NS_MESH, `http://${podIp(info, NS_MESH, 'server')}:${SERVER_PORT}`),
    proxyPids: () => ztunnelPids(sandbox),
    pin: async () => pinAll(info, plan, NS_MESH, await ztunnelPids(sandbox)),
    // Warnings, errors and the supervisor's (non-JSON) lines of the ztunnels and agents.
    diagnose: () => nodeLogTails(sandbox, /"level":"(warn|error)"|^(?!\{)/),
  };
  const pair = await startHaproxyPair(join(benchDir, 'haproxy'), info.name, front, back, `${podIp(info, NS_DIRECT, 'server')}:${SERVER_PORT}`, [plan.byNode[0]!, plan.byNode[1]!]);
  const haproxy: BenchPath = {
    id: 'haproxy-mtls',
    client: client(NS_DIRECT, pair.base),
    proxyPids: async () => pair.pids,
    pin: () => pinAll(info, plan, NS_DIRECT, pair.pids),
    diagnose: () => logTails(pair.logs, /./),
  };
  const all = [direct, meshlet, haproxy];
  try {
    await waitFor('the mesh pods to be enrolled', async () => {
      const statuses = await Promise.all(info.nodes.map((n) => getJson<AgentStatus>(n.agentAdminSocket, '/status')));
      const enrolled = statuses.flatMap((s) => s.enrolledPods).filter((p) => p.namespace === NS_MESH);
      return enrolled.length === 2;
    });
    for (const path of all) {
      try {
        await waitFor(`the ${path.id} path to serve ${path.client.base}${SMALL_PATH}`, () => probe(path.client));
      } catch (err) {
        // The logs go with the sandbox: quote them now.
        const logs = await path.diagnose().catch(() => '');
        throw new BenchSetupError(`${(err as Error).message}${logs ? `\n${logs}` : ''}`, { cause: err });
      }
    }
    const meshletTunnel = await checkMeshletCaptured(info, meshlet);
    await checkHaproxyMutualTls(sandbox, direct.client, pair, back.nodeIp4);
    // Once now, so a host where taskset cannot pin fails before any figure.
    for (const path of all) await path.pin();
    return { all, byId: (id) => all.find((p) => p.id === id)!, meshletTunnel, stop: pair.stop };
  } catch (err) {
    pair.stop();
    throw err;
  }
}

/** The mesh client's request must show up as a tunnelled flow on node-1's ztunnel, or "meshlet" would be measuring direct. */
async function checkMeshletCaptured(info: SandboxInfo, meshlet: BenchPath): Promise<MeshletTunnel> {
  const clientIp = podIp(info, NS_MESH, 'client');
  const { flows } = await getJson<{ flows: FlowRecord[] }>(info.nodes[0]!.ztunnelAdminSocket, '/flows');
  const flow = flows.find((f) => f.direction === 'outbound' && f.source.ip === clientIp && f.path === 'tunnel');
  if (!flow) throw new BenchSetupError(`no tunnelled flow from ${NS_MESH}/client on node-1's ztunnel after probing ${meshlet.client.base}: the meshlet path is not captured`);
  return flow.security ?? 'unknown';
}

/** node-2's haproxy must refuse a TLS client without a certificate and accept ours: the baseline really is mutual TLS. */
async function checkHaproxyMutualTls(sandbox: string, from: Client, pair: HaproxyPair, backIp: string): Promise<void> {
  const url = `https://${pair.serverName}:${TLS_PORT}${SMALL_PATH}`;
  const common = ['-s', '-o', '/dev/null', '--max-time', '5', '--tlsv1.3', '--cacert', pair.rootCertFile, '--resolve', `${pair.serverName}:${TLS_PORT}:${backIp}`];
  const anonymous = await sandboxExec(sandbox, from.pod, ['curl', ...common, url], { timeoutMs: 15_000 });
  if (anonymous.exitCode === 0) throw new BenchSetupError(`node-2's haproxy accepted a TLS client without a certificate; see ${pair.logs[1]}`);
  const mutual = await sandboxExec(sandbox, from.pod, ['curl', ...common, '-f', '--cert', pair.clientPemFile, url], { timeoutMs: 15_000 });
  if (mutual.exitCode !== 0) throw new BenchSetupError(`node-2's haproxy refused our client certificate (curl exit ${mutual.exitCode}: ${mutual.stderr.trim()}); see ${pair.logs[1]}`);
}

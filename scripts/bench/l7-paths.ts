// The L7 section's four paths, clients on node-1, backends, the waypoint and
// nginx on node-2: direct (client pod to a backend pod, outside the mesh),
// meshlet-l4 (enrolled client to the Service web-v1, which no waypoint
// takes), waypoint (enrolled client to the Service web, bound to the
// waypoint: 90/10 over v1 and v2 with retries) and nginx (a reverse proxy pod
// in the waypoint's place, the same split, mutual TLS 1.3 to its backends).
// Each is checked to take its route before it is measured: the backend that
// answered, the proxy's response header, the split over 200 requests on one
// connection and, for the mesh paths, node-1's ztunnel's flow record. A
// waypoint that cannot be set up does not stop the run: its path stands in
// with the setup error, which every round records against its figures.
import { basename } from 'node:path';
import { getJson } from '../../cli/admin-client.ts';
import { sandboxApply, sandboxExec, sandboxStatus, type SandboxInfo } from '../../sandbox/api.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { loadRoot } from './certs.ts';
import { ensurePinned, parseCpuList, pinCgroup, type CpuPlan } from './cpus.ts';
import { BenchSetupError } from './errors.ts';
import { backendPod, BACKEND_HEADER, L4_SERVICE, l7Manifest, NS_L7_DIRECT, NS_L7_MESH, PROXY_POD, proxyPodManifest, ROUTE_HEADER, SCHEME_HEADER, SPLIT, SPLIT_SERVICE, VERSIONS, WAYPOINT_NAME, type Version } from './l7-manifest.ts';
import { l7Layout, writeL7Backends, writeProxyConf, type L7Files } from './l7-www.ts';
import { nodeLogTails, podCpus, podIp, podOf, waitFor, ztunnelPids, type BenchPath, type L7PathId } from './paths.ts';
import { processesIn } from './proc-stats.ts';
import { placeWaypoint, podLogTail, waitWaypointReady } from './waypoint-pod.ts';
import { probe, type Client } from './workloads.ts';
import { SERVER_PORT, SMALL_PATH } from './www.ts';

/** Requests of the split check, on one keep-alive connection (balancing is per request). */
const SPLIT_SAMPLE = 200;
/** How far v1's share may be from 90 % in the check: over 3 standard deviations at 200 requests. */
const SPLIT_TOLERANCE = 0.07;

export interface PreparedL7 {
  files: L7Files;
  /** The node the waypoint and nginx run on. */
  proxyNode: string;
  /** Why the waypoint pod could not be placed, if it could not. */
  waypointError?: Error;
}

export interface L7Paths {
  /** In L7_PATH_IDS order; the waypoint's `unavailable` when it could not be set up. */
  all: BenchPath[];
}

const nodeIndex = (info: SandboxInfo, node: string): number => {
  const i = info.nodes.findIndex((n) => n.name === node);
  if (i < 0) throw new BenchSetupError(`${node} is not a node of the sandbox`);
  return i;
};

/**
 * Writes certificates and configs, applies the clients, backends, Services
 * and routes, places the waypoint on the server's node and starts nginx
 * there. Before the enrollment pods: other nodes are cordoned meanwhile.
 */
export async function prepareL7(sandbox: string, info: SandboxInfo, plan: CpuPlan, benchDir: string, wwwRoot: string): Promise<PreparedL7> {
  const [front, back] = info.nodes;
  if (!front || !back) throw new BenchSetupError('the bench needs a two-node sandbox');
  const files = l7Layout(benchDir);
  await writeL7Backends(files, await loadRoot(sandbox), wwwRoot, [NS_L7_MESH, NS_L7_DIRECT], NS_L7_DIRECT);
  await sandboxApply(sandbox, l7Manifest(files.backendConf, front.name, back.name));
  const waypointError = await placeWaypoint(sandbox, info.nodes.map((n) => n.name), back.name).then(() => undefined, (err: unknown) => err as Error);
  const applied = await sandboxStatus(sandbox);
  const backends = Object.fromEntries(VERSIONS.map((v) => [v, podIp(applied, NS_L7_DIRECT, backendPod(v))])) as Record<Version, string>;
  // worker_processes auto on a host with the CPUs it is pinned to.
  await writeProxyConf(files, backends, parseCpuList(plan.byNode[nodeIndex(info, back.name)]!).length);
  await sandboxApply(sandbox, proxyPodManifest(files.proxyConf, back.name));
  return { files, proxyNode: back.name, ...(waypointError ? { waypointError } : {}) };
}

interface Sampled {
  status: string;
  route: string;
  backend: string;
  scheme: string;
}

/** `count` requests on one connection (curl reuses it), with the headers that tell who answered and how. */
async function sample(client: Client, count: number): Promise<Sampled[]> {
  const format = `%{http_code}|%header{${ROUTE_HEADER}}|%header{${BACKEND_HEADER}}|%header{${SCHEME_HEADER}}\\n`;
  const url = `${client.base}${SMALL_PATH}`;
  const argv = ['curl', '-s', '--max-time', '60', '-w', format];
  for (let i = 0; i < count; i++) argv.push('-o', '/dev/null', url);
  const r = await sandboxExec(client.sandbox, client.pod, argv, { timeoutMs: 90_000 });
  if (r.exitCode !== 0) throw new BenchSetupError(`curl of ${url} from ${client.pod.namespace}/${client.pod.pod} failed (exit ${r.exitCode ?? r.signal}): ${r.stderr.trim()}`);
  return r.stdout.trim().split('\n').map((line) => {
    const [status = '', route = '', backend = '', scheme = ''] = line.split('|');
    return { status, route, backend, scheme };
  });
}

interface Expectation {
  /** ROUTE_HEADER's value: who proxied the request ('' for none). */
  route: string;
  scheme: 'http' | 'https';
  /** Backend versions expected: one alone, or the 90/10 split. */
  backends: 'v1' | 'split';
}

/** Why the samples do not show the path's route, or undefined when they do. */
export function routeProblem(samples: readonly Sampled[], want: Expectation): string | undefined {
  const count = (pred: (s: Sampled) => boolean) => samples.filter(pred).length;
  const n = samples.length;
  const problems: string[] = [];
  const bad = count((s) => s.status !== '200');
  if (bad > 0) problems.push(`${bad} of ${n} responses were not 200 (${[...new Set(samples.map((s) => s.status))].join(', ')})`);
  const routed = count((s) => s.route === want.route);
  if (routed < n) problems.push(want.route === '' ? `${n - routed} of ${n} responses carry ${ROUTE_HEADER} (${[...new Set(samples.map((s) => s.route))].join(', ')}): a proxy answered` : `${n - routed} of ${n} responses lack ${ROUTE_HEADER}: ${want.route}: they did not come through it`);
  const schemed = count((s) => s.scheme === want.scheme);
  if (schemed < n) problems.push(`${n - schemed} of ${n} requests reached the backend by ${[...new Set(samples.map((s) => s.scheme).filter((s) => s !== want.scheme))].join(', ') || 'no scheme'}, not ${want.scheme}`);
  const byVersion = Object.fromEntries(VERSIONS.map((v) => [v, count((s) => s.backend === v)])) as Record<Version, number>;
  const split = VERSIONS.map((v) => `${byVersion[v]} ${v}`).join(', ');
  if (want.backends === 'v1') {
    if (byVersion.v1 < n) problems.push(`backends: ${split} of ${n}, not all v1`);
  } else {
    const share = byVersion.v1 / n;
    const expected = SPLIT.v1 / (SPLIT.v1 + SPLIT.v2);
    if (byVersion.v2 === 0 || Math.abs(share - expected) > SPLIT_TOLERANCE) problems.push(`backends: ${split} of ${n}, not ${SPLIT.v1}/${SPLIT.v2} (±${SPLIT_TOLERANCE * 100} %)`);
  }
  return problems.length ? problems.join('; ') : undefined;
}

const splitText = (samples: readonly Sampled[]): string => VERSIONS.map((v) => `${samples.filter((s) => s.backend === v).length} ${v}`).join(', ');

async function checkRoute(path: BenchPath, count: number, want: Expectation): Promise<string> {
  const samples = await sample(path.client, count);
  const problem = routeProblem(samples, want);
  if (problem) {
    const logs = await path.diagnose().catch(() => '');
    throw new BenchSetupError(`the ${path.id} path (${path.client.base}) does not take its route: ${problem}${logs ? `\n${logs}` : ''}`);
  }
  return `${count} requests: ${splitText(samples)}${want.route ? `, all with ${ROUTE_HEADER}: ${want.route}` : ''}, ${want.scheme} at the backend`;
}

/** node-1's ztunnel's outbound flow of the client to `vip`, which must be tunnelled and go (or not) through the waypoint. */
async function checkFlow(info: SandboxInfo, vip: string, throughWaypoint: boolean): Promise<void> {
  const clientIp = podIp(info, NS_L7_MESH, 'client');
  const { flows } = await getJson<{ flows: FlowRecord[] }>(info.nodes[0]!.ztunnelAdminSocket, '/flows');
  const mine = flows.filter((f) => f.direction === 'outbound' && f.source.ip === clientIp && f.originalDestination.ip === vip);
  const wanted = mine.find((f) => f.path === 'tunnel' && (throughWaypoint ? f.waypoint?.namespace === NS_L7_MESH && f.waypoint.name === WAYPOINT_NAME : f.waypoint === undefined));
  if (!wanted) {
    const seen = mine.map((f) => `path ${f.path ?? '?'}, waypoint ${f.waypoint ? `${f.waypoint.namespace}/${f.waypoint.name}` : 'none'}, ${f.closeReason ?? f.state}`).join('; ');
    throw new BenchSetupError(`node-1's ztunnel has no tunnelled flow from ${NS_L7_MESH}/client to ${vip} ${throughWaypoint ? `through waypoint ${NS_L7_MESH}/${WAYPOINT_NAME}` : 'without a waypoint'} (${seen || 'no flow of it at all'})`);
  }
}

function serviceVip(info: SandboxInfo, ns: string, name: string): string {
  const vip = info.services?.find((s) => s.namespace === ns && s.name === name)?.clusterIPs[0];
  if (vip === undefined) throw new BenchSetupError(`Service ${ns}/${name} has no cluster IP; was the L7 manifest applied?`);
  return vip;
}

/** A path that could not be set up: never measured, `error` recorded instead. */
function unavailable(id: L7PathId, client: Client, error: Error): BenchPath {
  return { id, client, proxyPids: async () => [], pin: () => Promise.reject(error), diagnose: async () => '', unavailable: error };
}

/** Warnings, errors and the supervisors' (non-JSON) lines of a JSON log. */
const WARNINGS = /"level":"(warn|error)"|^(?!\{)/;
/** The waypoint's warnings, and its access-log lines of requests that ended with a response flag. */
const WAYPOINT_TROUBLE = new RegExp(`${WARNINGS.source}|"response_flags":"(?!-")`);

const isNginx = (argv: readonly string[]): boolean => argv[0]?.startsWith('nginx') ?? false;
const isWaypoint = (argv: readonly string[]): boolean => basename(argv[0] ?? '') === 'node' && argv.includes('waypoint');

/** The newest flows that did not end with their client closing: where a connection a load tool saw fail ended, and why. */
async function flowsNotClosedByClient(info: SandboxInfo, lines = 6): Promise<string> {
  const perNode = await Promise.all(info.nodes.map((n) =>
    getJson<{ flows: FlowRecord[] }>(n.ztunnelAdminSocket, '/flows').then((r) => r.flows.map((flow) => ({ node: n.name, flow })), () => [])));
  const odd = perNode.flat().filter(({ flow }) => flow.closeReason !== undefined && flow.closeReason !== 'client_closed').slice(-lines);
  return odd.length === 0 ? '' : `flows not closed by their client:\n${odd.map(({ node, flow }) => `  ${node}: ${JSON.stringify(flow).slice(0, 400)}`).join('\n')}`;
}

/** The four paths on the pods prepareL7 made, in L7_PATH_IDS order; waits for the waypoint to be ready. */
export async function setupL7Paths(sandbox: string, info: SandboxInfo, plan: CpuPlan, prepared: PreparedL7, log: (line: string) => void): Promise<L7Paths> {
  const client = (ns: string, base: string): Client => ({ sandbox, pod: { pod: 'client', namespace: ns }, base, cpus: podCpus(info, plan, ns, 'client') });
  const proxyCpus = plan.byNode[nodeIndex(info, prepared.proxyNode)]!;
  const pinPods = async (ns: string, names: readonly string[]) => {
    for (const name of names) await pinCgroup(podOf(info, ns, name).cgroup, podCpus(info, plan, ns, name));
  };
  const pinZtunnels = async () => {
    for (const [i, pid] of (await ztunnelPids(sandbox)).entries()) await ensurePinned(pid, plan.byNode[i]!);
  };
  const backends = VERSIONS.map(backendPod);
  const meshLogs = async () => [
    await nodeLogTails(sandbox, WARNINGS),
    await flowsNotClosedByClient(info),
  ].filter(Boolean).join('\n');
  const url = (ip: string) => `http://${ip}:${SERVER_PORT}`;

  const direct: BenchPath = {
    id: 'direct',
    client: client(NS_L7_DIRECT, url(podIp(info, NS_L7_DIRECT, backendPod('v1')))),
    proxyPids: async () => [],
    pin: () => pinPods(NS_L7_DIRECT, backends),
    diagnose: async () => '',
  };
  const meshletL4: BenchPath = {
    id: 'meshlet-l4',
    client: client(NS_L7_MESH, url(serviceVip(info, NS_L7_MESH, L4_SERVICE))),
    proxyPids: async () => [],
    pin: async () => {
      await pinPods(NS_L7_MESH, backends);
      await pinZtunnels();
    },
    diagnose: meshLogs,
  };
  const proxy = podOf(info, NS_L7_DIRECT, PROXY_POD);
  const nginxPids = async () => {
    const pids = await processesIn(proxy.cgroup, isNginx);
    if (pids.length === 0) throw new BenchSetupError(`no nginx process in the proxy pod's cgroup ${proxy.cgroup}: has it exited? see ${proxy.logDir ?? 'its log'}`);
    return pids;
  };
  const nginx: BenchPath = {
    id: 'nginx',
    client: client(NS_L7_DIRECT, url(proxy.ip)),
    proxyPids: nginxPids,
    pin: async () => {
      await pinPods(NS_L7_DIRECT, backends);
      await pinCgroup(proxy.cgroup, proxyCpus);
    },
    diagnose: () => podLogTail(proxy.logDir),
  };

  for (const path of [direct, meshletL4, nginx]) {
    await waitFor(`the L7 ${path.id} path to serve ${path.client.base}${SMALL_PATH}`, () => probe(path.client)).catch(async (err: unknown) => {
      const logs = await path.diagnose().catch(() => '');
      throw new BenchSetupError(`${(err as Error).message}${logs ? `\n${logs}` : ''}`, { cause: err });
    });
  }
  log(`L7 direct: ${await checkRoute(direct, 20, { route: '', scheme: 'http', backends: 'v1' })}`);
  log(`L7 meshlet-l4: ${await checkRoute(meshletL4, 20, { route: '', scheme: 'http', backends: 'v1' })}`);
  await checkFlow(info, serviceVip(info, NS_L7_MESH, L4_SERVICE), false);
  log(`L7 nginx: ${await checkRoute(nginx, SPLIT_SAMPLE, { route: 'nginx', scheme: 'https', backends: 'split' })}`);

  const splitVip = serviceVip(info, NS_L7_MESH, SPLIT_SERVICE);
  const waypointClient = client(NS_L7_MESH, url(splitVip));
  let waypoint: BenchPath;
  try {
    waypoint = await setupWaypointPath(sandbox, waypointClient, prepared, proxyCpus, { pinPods: () => pinPods(NS_L7_MESH, backends), pinZtunnels, meshLogs });
    log(`L7 waypoint: ${await checkRoute(waypoint, SPLIT_SAMPLE, { route: 'waypoint', scheme: 'http', backends: 'split' })}`);
    await checkFlow(info, splitVip, true);
  } catch (err) {
    log(`L7 waypoint path not measured: ${(err as Error).message}`);
    waypoint = unavailable('waypoint', waypointClient, new BenchSetupError(`the waypoint path could not be set up: ${(err as Error).message}`, { cause: err }));
  }
  const all = [direct, meshletL4, waypoint, nginx];
  // Once now, so a host where taskset cannot pin fails before any figure.
  for (const path of all) if (!path.unavailable) await path.pin();
  return { all };
}

interface MeshPinning {
  pinPods(): Promise<void>;
  pinZtunnels(): Promise<void>;
  meshLogs(): Promise<string>;
}

/** The waypoint path once its Gateway is Programmed and its pod Ready and serving. */
async function setupWaypointPath(sandbox: string, client: Client, prepared: PreparedL7, cpus: string, mesh: MeshPinning): Promise<BenchPath> {
  if (prepared.waypointError) throw prepared.waypointError;
  const ready = await waitWaypointReady(sandbox);
  const info = await sandboxStatus(sandbox);
  const pod = podOf(info, NS_L7_MESH, ready.name);
  const pids = async () => {
    const found = await processesIn(pod.cgroup, isWaypoint);
    if (found.length === 0) throw new BenchSetupError(`no \`meshlet waypoint\` process in the waypoint pod's cgroup ${pod.cgroup}: has it exited? see ${pod.logDir ?? 'its log'}`);
    return found;
  };
  const path: BenchPath = {
    id: 'waypoint',
    client,
    proxyPids: pids,
    pin: async () => {
      await mesh.pinPods();
      await mesh.pinZtunnels();
      await pinCgroup(pod.cgroup, cpus);
    },
    // Not the whole access log (a line per request would drown the rest): its requests that ended with a flag.
    diagnose: async () => [await podLogTail(pod.logDir, WAYPOINT_TROUBLE), await mesh.meshLogs()].filter(Boolean).join('\n'),
  };
  await waitFor(`the waypoint path to serve ${client.base}${SMALL_PATH}`, () => probe(client)).catch(async (err: unknown) => {
    const logs = await path.diagnose().catch(() => '');
    throw new BenchSetupError(`${(err as Error).message}${logs ? `\n${logs}` : ''}`, { cause: err });
  });
  await pids();
  return path;
}

// Bringing a sandbox up and tearing it down. `down` works from the name's
// prefix (cgroups, namespaces, run dir, pin dir, processes), not from
// sandbox.json, so it also cleans up after a crash.
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../lib/cluster/pooled-kubeconfig.ts';
import { run } from '../lib/core/exec.ts';
import { SandboxError } from '../lib/core/errors.ts';
import { applyManifest, type ObjectResult } from './apply.ts';
import { cgroup2Root, ensureCgroup, killCgroup, removeCgroup } from './cgroup.ts';
import { compiledCliMain } from './compiled.ts';
import { controlPlaneBinaries } from './controlplane/binaries.ts';
import { clientKubeconfig, installCrds, prepareControlPlane, waitForApiServer, writeKubeletServing } from './controlplane/bootstrap.ts';
import { apiServerUrl, COMPONENTS, controlPlaneLayout } from './controlplane/components.ts';
import { handOff, listenOnLoopback } from './controlplane/host-relay.ts';
import { SandboxRunningError } from './errors.ts';
import type { SandboxControlPlaneInfo, SandboxInfo, SandboxNodeInfo } from './info.ts';
import type { ZtunnelLimits } from '../lib/config/ztunnel.ts';
import { installFromManifests, installNodeRbac, sandboxInstallArgs } from './install.ts';
import { isNodeDaemonSetPod, MESHLET_NAMESPACE } from './node-pod.ts';
import { CA_NAME, NODE_DAEMONSET } from '../lib/install/names.ts';
import {
  BPF_ROOT, checkName, checkNodeCount, CONTROL_PLANE_IP, CONTROL_PLANE_NETWORK, controlPlaneCgroups, nodeAddresses, nodeCgroups, nodeDir, planNode, prefixOf, REPO_ROOT, RUN_ROOT, sandboxPaths,
} from './layout.ts';
import { deleteNetns, listNetns } from './netns.ts';
import { findExecutable, findSandboxProcesses, pidAlive, spawnIn } from './proc.ts';
import { readPids, readSandboxFile, writeSandboxFile } from './registry.ts';
import { createNode, createUnderlay } from './topology.ts';

export interface UpOptions {
  name: string;
  nodes: number;
  /** Manifest text applied once the nodes run. */
  manifest?: string;
  /** Where `manifest` came from, for messages. */
  manifestSource?: string;
  /** Wait until every Node is Ready and every agent and ztunnel answers on its admin socket (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
  /** false: a cluster without meshlet, to install it by hand (`meshlet install … | kubectl apply -f -`). Default true. */
  install?: boolean;
  /** Progress lines for a terminal. */
  log?: (line: string) => void;
  /** Workload certificate lifetime the ztunnels ask the CA for (default: the CA's, 24h). */
  certTtl?: string;
  /** The ztunnels' timeouts and caps, where not the defaults. */
  ztunnelLimits?: Partial<ZtunnelLimits>;
}

export interface UpResult {
  info: SandboxInfo;
  applied: ObjectResult[];
}

const SUPERVISOR_START_MS = 10_000;
/** A node's processes are many (every container's): give cgroup.kill longer than one container's stop. */
const REBOOT_KILL_MS = 15_000;
const API_SERVER_START_MS = 60_000;
/** How long `up` waits for meshlet's pods by default: the CA's first root, then each ztunnel's certificates once its kubelet syncs the root's ConfigMap into it. */
export const READY_TIMEOUT_MS = 120_000;

export async function up(options: UpOptions): Promise<UpResult> {
  const name = checkName(options.name);
  const nodeCount = checkNodeCount(options.nodes);
  const log = options.log ?? (() => undefined);
  await checkHost();
  if (await isRunning(name)) {
    throw new SandboxRunningError(`sandbox "${name}" is already up (its supervisors run); use it, or \`meshlet sandbox down --name ${name}\` first`);
  }
  if (await hasLeftovers(name)) {
    log(`cleaning up what a previous sandbox "${name}" left behind`);
    await down(name);
  }

  const paths = sandboxPaths(name);
  const cgroupRoot = join(cgroup2Root(), prefixOf(name));
  const nodes = Array.from({ length: nodeCount }, (_, i) => planNode(name, i + 1, cgroupRoot));
  const install = options.install ?? true;
  const binaries = await controlPlaneBinaries();
  const relay = await listenOnLoopback();
  const controlPlane: SandboxControlPlaneInfo = {
    dir: paths.controlPlaneDir,
    bin: binaries.bin,
    server: apiServerUrl(CONTROL_PLANE_NETWORK),
    hostServer: `https://127.0.0.1:${(relay.address() as { port: number }).port}`,
    kubeconfig: paths.kubeconfig,
  };
  const info: SandboxInfo = {
    name, runDir: paths.runDir, controlPlane, nodes, pods: [], underlayNetns: paths.underlayNetns, cgroup: cgroupRoot,
    ...(options.certTtl ? { certTtl: options.certTtl } : {}),
    ...(options.ztunnelLimits ? { ztunnelLimits: options.ztunnelLimits } : {}),
  };
  try {
    const main = await compiledCliMain(log);
    await ensureBpffs(log);
    for (const node of nodes) await mkdir(nodeDir(name, node.name), { recursive: true });
    log(`network: underlay ${paths.underlayNetns} (control plane ${CONTROL_PLANE_IP}), ${nodes.map((n) => `${n.name} ${n.nodeIp4}`).join(', ')}`);
    await createUnderlay(paths.underlayNetns, `${CONTROL_PLANE_IP}/24`);
    for (const node of nodes) await createNode(paths.underlayNetns, node, nodes);
    const cpCgroups = controlPlaneCgroups(cgroupRoot);
    for (const cg of [cpCgroups.supervisor, ...COMPONENTS.map(cpCgroups.component)]) await ensureCgroup(cg);
    for (const node of nodes) for (const cg of Object.values(nodeCgroups(node))) await ensureCgroup(cg);

    const layout = controlPlaneLayout(controlPlane.dir);
    await prepareControlPlane(layout, CONTROL_PLANE_NETWORK);
    await clientKubeconfig(layout, CONTROL_PLANE_NETWORK, paths.kubeconfig, 'meshlet-admin', ['system:masters'], controlPlane.hostServer);
    for (const node of nodes) {
      await clientKubeconfig(layout, CONTROL_PLANE_NETWORK, node.kubeletKubeconfig, `system:node:${node.name}`, ['system:nodes']);
      await clientKubeconfig(layout, CONTROL_PLANE_NETWORK, node.kubeProxyKubeconfig, 'system:kube-proxy');
      await writeKubeletServing(layout, node.name, nodeAddresses(node), node.kubeletServingCert, node.kubeletServingKey);
    }
    await writeSandboxFile(info);

    log(`control plane: etcd, kube-apiserver ${controlPlane.server} (from the host: ${controlPlane.hostServer}), kube-controller-manager, kube-scheduler`);
    await startControlPlane(name, cpCgroups.supervisor, paths.underlayNetns, relay, main, join(controlPlane.dir, 'supervisor.log'));
    await withLogTails(() => waitForApiServer(layout, CONTROL_PLANE_NETWORK, API_SERVER_START_MS, controlPlane.hostServer), [join(controlPlane.dir, 'supervisor.log'), layout.log('etcd'), layout.log('kube-apiserver')]);
    log(install
      ? 'installing Istio\'s and the Gateway API\'s CRDs, and meshlet as `meshlet install` renders it (its DaemonSet and the CA\'s Deployment)'
      : `installing Istio's and the Gateway API's CRDs; meshlet is yours to install: meshlet install ${sandboxInstallArgs().join(' ')} | meshlet sandbox kubectl --name ${name} -- apply --server-side -f -`);
    await withLogTails(async () => {
      await installCrds(binaries, paths.kubeconfig);
      await installNodeRbac(info);
      if (install) await installFromManifests(info);
    }, [layout.log('kube-apiserver'), layout.log('kube-controller-manager')]);

    await Promise.all(nodes.map((node) => startNodeSupervisor(name, node, main)));
  } catch (err) {
    relay.close();
    await down(name).catch(() => undefined);
    throw err;
  }
  log(`supervisors started; kubeconfig ${paths.kubeconfig}; meshlet's logs: kubectl logs -n ${MESHLET_NAMESPACE} (or ${paths.runDir}/nodes/<node>/pods/)`);
  if (options.waitReady ?? true) await waitReady(info, options.readyTimeoutMs ?? READY_TIMEOUT_MS, log, { meshlet: install });
  const applied = options.manifest === undefined ? [] : await applyManifest(name, options.manifest, options.manifestSource);
  return { info, applied };
}

/** Starts the node's supervisor (its kubelet and kube-proxy) and waits for it to record its pid. */
async function startNodeSupervisor(name: string, node: SandboxNodeInfo, main: string, previousPid?: number): Promise<void> {
  const logFile = join(nodeDir(name, node.name), 'supervisor.log');
  startSupervisor(name, { cgroup: nodeCgroups(node).supervisor, netns: node.netns, logFile, args: ['--node', node.name], main });
  await waitFor(`the supervisor of ${node.name}`, async () => {
    const pid = (await readPids(name, node.name))?.supervisorPid;
    return pid !== undefined && pid !== previousPid && pidAlive(pid);
  }, logFile);
}

/**
 * A node's reboot, as the sandbox models it: every process of the node (its
 * supervisor, kubelet and kube-proxy, and every container, meshlet's among
 * them) is killed at once, then its supervisor starts again. What outlives
 * the processes stays: the kubelet's record of its pods, their network
 * namespaces and cgroups, and the node's bpffs.
 */
export async function rebootNode(name: string, nodeName: string, log: (line: string) => void = () => undefined): Promise<void> {
  const info = await readSandboxFile(name);
  const node = info.nodes.find((n) => n.name === nodeName);
  if (!node) throw new SandboxError(`sandbox "${name}" has no node "${nodeName}"; its nodes: ${info.nodes.map((n) => n.name).join(', ')}`);
  const main = await compiledCliMain(log);
  const previousPid = (await readPids(name, node.name))?.supervisorPid;
  log(`${node.name}: killing every process of the node (${node.cgroup})`);
  await killCgroup(node.cgroup, REBOOT_KILL_MS);
  log(`${node.name}: starting its supervisor again`);
  await startNodeSupervisor(name, node, main, previousPid);
}

/** Starts the control-plane supervisor in the underlay and hands it the host's loopback listener for the API relay. */
async function startControlPlane(name: string, cgroup: string, netns: string, relay: Server, main: string, logFile: string): Promise<void> {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawnIn({ cgroup, netns }, [process.execPath, main, 'sandbox', 'supervise', '--name', name, '--control-plane'], {
      stdio: ['ignore', fd, fd, 'ipc'],
      cwd: REPO_ROOT,
      detached: true,
    });
    child.on('error', () => undefined);
    child.unref();
    await handOff(relay, child);
  } finally {
    closeSync(fd);
  }
}

async function checkHost(): Promise<void> {
  if (process.getuid?.() !== 0) throw new SandboxError('the sandbox needs root (network namespaces, cgroups, bpffs); run it with sudo');
  for (const tool of ['ip', 'nsenter', 'sysctl', 'sh']) {
    if (!findExecutable(tool, process.env.PATH, '/')) throw new SandboxError(`\`${tool}\` is not on PATH; the sandbox needs iproute2, util-linux (nsenter) and procps (sysctl)`);
  }
}

/** bpffs at /sys/fs/bpf, where the agents pin; mounted if missing. */
async function ensureBpffs(log: (line: string) => void): Promise<void> {
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');
  if (mounted) return;
  const res = await run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { allowFailure: true });
  if (res.exitCode === 0) log('mounted bpffs at /sys/fs/bpf');
  else log(`warning: bpffs is not mounted at /sys/fs/bpf and mounting it failed (${res.stderr.trim()}); the agents cannot pin`);
}

interface SupervisorSpec {
  cgroup: string;
  netns: string;
  logFile: string;
  /** What to supervise: `--node NAME` or `--ca`. */
  args: string[];
  /** The compiled CLI the supervisor and its children run. */
  main: string;
}

function startSupervisor(name: string, spec: SupervisorSpec): void {
  const fd = openSync(spec.logFile, 'a');
  try {
    const child = spawnIn({ cgroup: spec.cgroup, netns: spec.netns }, [process.execPath, spec.main, 'sandbox', 'supervise', '--name', name, ...spec.args], {
      stdio: ['ignore', fd, fd],
      cwd: REPO_ROOT,
      detached: true,
    });
    child.on('error', () => undefined);
    child.unref();
  } finally {
    closeSync(fd);
  }
}

async function tailOf(file: string, lines = 10): Promise<string> {
  const text = existsSync(file) ? (await readFile(file, 'utf8')).trim() : '';
  return text === '' ? '' : text.split('\n').slice(-lines).join('\n');
}

/** A failed step's error with the tails of `logs`: `up` removes what it built on failure, logs included. */
async function withLogTails<T>(step: () => Promise<T>, logs: readonly string[]): Promise<T> {
  try {
    return await step();
  } catch (err) {
    const tails = (await Promise.all(logs.map(async (f) => [f, await tailOf(f)] as const))).filter(([, t]) => t !== '');
    if (tails.length === 0) throw err;
    throw new SandboxError(`${(err as Error).message}\n${tails.map(([f, t]) => `--- ${f}:\n${t}`).join('\n')}`, { cause: err });
  }
}

async function waitFor(what: string, done: () => boolean | Promise<boolean>, logFile: string): Promise<void> {
  const deadline = Date.now() + SUPERVISOR_START_MS;
  while (Date.now() < deadline) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = await tailOf(logFile);
  throw new SandboxError(`${what} did not appear within ${SUPERVISOR_START_MS} ms; see ${logFile}${tail ? `:\n${tail}` : ''}`);
}

const canConnect = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** Nodes whose Ready condition is not True (or that have not registered). */
async function unreadyNodes(info: SandboxInfo, core: CoreV1Api): Promise<string[]> {
  try {
    const listed = await core.listNode();
    const ready = new Set(listed.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata?.name));
    return info.nodes.map((n) => n.name).filter((n) => !ready.has(n));
  } catch {
    return info.nodes.map((n) => n.name);
  }
}

/** What keeps meshlet's pods (one node pod per node, the CA) from being Ready, one line each. */
async function unreadyMeshletPods(info: SandboxInfo, core: CoreV1Api): Promise<string[]> {
  let pods: V1Pod[];
  try {
    pods = (await core.listNamespacedPod({ namespace: MESHLET_NAMESPACE })).items;
  } catch (err) {
    return [`cannot list the pods of ${MESHLET_NAMESPACE}: ${(err as Error).message}`];
  }
  const ready = (p: V1Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  const nodePods = pods.filter(isNodeDaemonSetPod);
  const problems = pods.filter((p) => !ready(p)).map((p) => `pod ${MESHLET_NAMESPACE}/${p.metadata?.name} on ${p.spec?.nodeName ?? 'no node'} is not Ready (${p.status?.phase})`);
  for (const node of info.nodes) if (!nodePods.some((p) => p.spec?.nodeName === node.name)) problems.push(`no ${NODE_DAEMONSET} pod on ${node.name} yet`);
  if (!pods.some((p) => p.metadata?.labels?.['app.kubernetes.io/name'] === CA_NAME)) problems.push(`no ${CA_NAME} pod yet`);
  return problems;
}

/**
 * Waits until every Node is Ready and, unless `meshlet` is false (a sandbox
 * without it), every node's agent and ztunnel accept connections on their
 * admin sockets and meshlet's pods are Ready.
 */
export async function waitReady(info: SandboxInfo, timeoutMs: number, log: (line: string) => void = () => undefined, wait: { meshlet: boolean } = { meshlet: true }): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromFile(info.controlPlane.kubeconfig);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const pending = new Map(!wait.meshlet ? [] : info.nodes.flatMap((n) => [
    [`${n.name} agent`, n.agentAdminSocket],
    [`${n.name} ztunnel`, n.ztunnelAdminSocket],
  ]));
  for (;;) {
    for (const [what, socket] of pending) if (await canConnect(socket)) pending.delete(what);
    const unready = await unreadyNodes(info, core);
    // meshlet is ready when its pods are (the ztunnels' readiness waits for their certificates).
    const unreadyPods = wait.meshlet ? await unreadyMeshletPods(info, core) : [];
    if (pending.size === 0 && unready.length === 0 && unreadyPods.length === 0) break;
    if (Date.now() > deadline) {
      const missing = [
        ...unready.map((n) => `  Node ${n} is not Ready; see ${join(nodeDir(info.name, n), 'supervisor.log')}`),
        ...unreadyPods.map((p) => `  ${p}`),
        ...[...pending].map(([what, socket]) => `  ${what}: no answer on ${socket}; see ${join(nodeDir(info.name, what.split(' ')[0]!), 'pods')}/${MESHLET_NAMESPACE}_*/`),
      ].join('\n');
      throw new SandboxError(`sandbox "${info.name}" is up but not ready after ${timeoutMs} ms:\n${missing}\nthe sandbox is left running for inspection; \`meshlet sandbox down --name ${info.name}\` removes it`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  log(wait.meshlet ? 'Nodes Ready; agents and ztunnels answer' : 'Nodes Ready');
}

/** Some supervisor of the sandbox is alive. */
export async function isRunning(name: string): Promise<boolean> {
  const root = join(cgroup2Root(), prefixOf(name));
  let nodes: string[];
  try {
    nodes = await readdir(root);
  } catch {
    return false;
  }
  for (const node of nodes) {
    try {
      if ((await readFile(join(root, node, 'supervisor', 'cgroup.procs'), 'utf8')).trim() !== '') return true;
    } catch {
      // not a node directory
    }
  }
  return false;
}

async function hasLeftovers(name: string): Promise<boolean> {
  const prefix = `${prefixOf(name)}-`;
  return (
    existsSync(join(cgroup2Root(), prefixOf(name))) ||
    existsSync(sandboxPaths(name).runDir) ||
    existsSync(join(BPF_ROOT, name)) ||
    (await listNetns()).some((ns) => ns.startsWith(prefix))
  );
}

/** Removes everything sandbox `name` created; idempotent, and safe after a crash. */
export async function down(name: string): Promise<void> {
  checkName(name);
  const paths = sandboxPaths(name);
  // Processes first: a namespace or cgroup in use cannot go.
  await removeCgroup(join(cgroup2Root(), prefixOf(name)));
  const strays = await findSandboxProcesses(prefixOf(name), paths.runDir, ['sandbox', 'supervise', '--name', name]);
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // Pods first, then nodes, then the underlay: each veth dies with its namespace.
  const prefix = `${prefixOf(name)}-`;
  const mine = (await listNetns()).filter((ns) => ns.startsWith(prefix));
  const rank = (ns: string): number => (ns === paths.underlayNetns ? 2 : /-node-\d+$/.test(ns) ? 1 : 0);
  for (const ns of mine.sort((a, b) => rank(a) - rank(b))) await deleteNetns(ns);
  await rm(paths.bpfDir, { recursive: true, force: true });
  await rm(paths.runDir, { recursive: true, force: true });
  await rmdirIfEmpty(BPF_ROOT);
  await rmdirIfEmpty(RUN_ROOT);
}

async function rmdirIfEmpty(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch {
    // not empty or not there
  }
}

/** Names of every sandbox with something left on this host. */
export async function listSandboxes(): Promise<string[]> {
  const names = new Set<string>();
  const readNames = async (dir: string): Promise<string[]> => readdir(dir).catch(() => []);
  for (const entry of await readNames(RUN_ROOT)) names.add(entry);
  for (const entry of await readNames(BPF_ROOT)) names.add(entry);
  for (const entry of await readNames(cgroup2Root())) if (entry.startsWith('meshlet-')) names.add(entry.slice('meshlet-'.length));
  for (const ns of await listNetns()) {
    const m = /^meshlet-([a-z0-9]+)-/.exec(ns);
    if (m) names.add(m[1]!);
  }
  return [...names].filter((n) => /^[a-z0-9]{1,16}$/.test(n)).sort();
}

export async function downAll(): Promise<string[]> {
  const names = await listSandboxes();
  for (const name of names) await down(name);
  return names;
}

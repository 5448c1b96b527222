// Supervisors, the sandbox's init: the control plane's runs etcd, the API
// server, the controller manager and the scheduler in the underlay namespace
// (and relays the host's loopback port to the API server); a node's plays the
// kubelet for its pods (meshlet's DaemonSet pod among them) and runs its
// kube-proxy in the node namespace. Each restarts its children when they exit
// (with a crash-loop backoff) and records their pids.
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { CoreV1Api, type V1Service } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../lib/cluster/pooled-kubeconfig.ts';
import type { SandboxNodeInfo } from './info.ts';
import { CLUSTER_CIDRS, CONTROL_PLANE_IP, API_SERVER_PORT, CONTROL_PLANE_NETWORK, controlPlaneCgroups, nodeAddresses, nodeCgroups, nodeDir, REPO_ROOT, sandboxPaths } from './layout.ts';
import { spawnIn } from './proc.ts';
import { ensureSandboxNetworkConfig } from './kubelet/cni.ts';
import { readSandboxFile, writeControlPlanePids, writePids } from './registry.ts';
import { SandboxError } from '../lib/core/errors.ts';
import { jsonLogger } from '../lib/core/log.ts';
import { KubeSource } from '../lib/cluster/sources/kube.ts';
import { SERVICES } from '../lib/cluster/sources/kube-kinds.ts';
import { COMPONENTS, componentArgs, controlPlaneLayout } from './controlplane/components.ts';
import { receiveAndRelay } from './controlplane/host-relay.ts';
import { waitForApiServer } from './controlplane/bootstrap.ts';
import { HostsFiles, hostsDir } from './hosts.ts';
import { Kubelet } from './kubelet/kubelet.ts';
import { KUBELET_PORT, KubeletServer, subjectAccessReviewer } from './kubelet/kubelet-server.ts';
import { PrivilegedNamespaces } from './kubelet/pod-security.ts';
import { SandboxRuntime } from './kubelet/sandbox-runtime.ts';

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** A child that ran this long was healthy: its next crash starts the backoff over. */
const HEALTHY_AFTER_MS = 10_000;
const STOP_GRACE_MS = 3000;
/** The sandbox's kubelet's --sync-frequency for ConfigMap, Secret and downward API volumes. */
const VOLUME_RESYNC_MS = 10_000;
/**
 * The node's kube-proxy, as a node runs it: Services' ClusterIPs reach their
 * endpoints from the node's own processes (host-network pods) and from pods
 * meshlet does not capture, by nftables rules in the node's namespace. It
 * leaves the host's conntrack limits and timeouts alone (0 keeps them), and
 * serves its health and metrics on the node's loopback.
 */
export function kubeProxyArgs(node: SandboxNodeInfo): string[] {
  return [
    '--kubeconfig', node.kubeProxyKubeconfig, '--hostname-override', node.name, '--bind-address', node.nodeIp4,
    '--proxy-mode', 'nftables', '--cluster-cidr', CLUSTER_CIDRS, '--detect-local-mode', 'ClusterCIDR',
    '--conntrack-max-per-core', '0', '--conntrack-tcp-timeout-established', '0', '--conntrack-tcp-timeout-close-wait', '0',
    '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
  ];
}

interface Managed {
  role: string;
  /** The whole command line. */
  argv: string[];
  /** Its first start waits for this (settled either way). */
  after?: Promise<unknown>;
  cgroup: string;
  log: string;
  child?: ChildProcess;
  startedAt: number;
  restarts: number;
  backoffMs: number;
  timer?: NodeJS.Timeout;
}

const say = (line: string): void => {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
};

/**
 * A node's supervisor: the node's kubelet (its Node, its pods, their hosts
 * files) in process, and its kube-proxy as a child, in the node namespace.
 */
export async function runSupervisor(name: string, nodeName: string): Promise<void> {
  const info = await readSandboxFile(name);
  const node = info.nodes.find((n) => n.name === nodeName);
  if (!node) throw new SandboxError(`sandbox "${name}" has no node "${nodeName}"`);
  const log = jsonLogger('kubelet');
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromFile(node.kubeletKubeconfig);
  const hosts = new HostsFiles(hostsDir(name, node.name));
  const services = new KubeSource({ kubeconfig: kubeConfig, kinds: [SERVICES], log });
  void services.start((update) => hosts.update(update.objects as V1Service[]));
  const namespaces = new PrivilegedNamespaces(kubeConfig.makeApiClient(CoreV1Api), log);
  // The node's network plugin's config, as a node's CNI installs it before any pod: what meshlet's agent chains its plugin into.
  ensureSandboxNetworkConfig(name, node);
  const runtime = new SandboxRuntime({
    sandbox: name, node, runDir: nodeDir(name, node.name), nameFiles: (ns) => hosts.filesFor(ns), privilegedNamespace: (ns) => namespaces.privileged(ns), log,
  });
  const kubelet = new Kubelet({
    kubeConfig, runtime, log,
    node: {
      name: node.name,
      addresses: nodeAddresses(node),
      kubeletPort: KUBELET_PORT,
      podCIDRs: [node.podCidr, ...(node.podCidr6 ? [node.podCidr6] : [])],
      capacity: { cpu: '8', memory: '16Gi', pods: '110' },
    },
    ...(node.probeSourceIp4 ? { probeSourceIp4: node.probeSourceIp4 } : {}),
    ...(node.probeSourceIp6 ? { probeSourceIp6: node.probeSourceIp6 } : {}),
    // A ConfigMap made after its pod started (the CA's root, which the ztunnels mount) reaches the pod within this; kubelet's default is a minute.
    volumeResyncIntervalMs: VOLUME_RESYNC_MS,
  });
  void kubelet.start().catch((err: unknown) => say(`kubelet failed to start: ${(err as Error).message}`));
  const api = new KubeletServer({
    nodeName: node.name, log,
    tls: { cert: readFileSync(node.kubeletServingCert, 'utf8'), key: readFileSync(node.kubeletServingKey, 'utf8'), ca: readFileSync(controlPlaneLayout(info.controlPlane.dir).pki.caCert, 'utf8') },
    logs: (namespace, pod, container, previous) => runtime.containerLog(namespace, pod, container, previous),
    authorize: subjectAccessReviewer(kubeConfig, node.name),
  });
  // Without its API the node still runs its pods; only `kubectl logs` fails.
  await api.listen(nodeAddresses(node), KUBELET_PORT).catch((err: unknown) => say(`kubelet API cannot listen on port ${KUBELET_PORT}: ${(err as Error).message}`));
  const cgroups = nodeCgroups(node);
  const kubeProxy: Managed = { role: 'kube-proxy', argv: [`${info.controlPlane.bin}/kube-proxy`, ...kubeProxyArgs(node)], cgroup: cgroups.kubeProxy, log: node.kubeProxyLog, startedAt: 0, restarts: 0, backoffMs: BACKOFF_MIN_MS };
  try {
    await supervise(name, node.netns, [kubeProxy], () => writePids(name, nodeName, { supervisorPid: process.pid }));
  } finally {
    services.stop();
    api.close();
    await kubelet.stop();
    runtime.close();
  }
}

/** The control plane's supervisor: its four components in the underlay namespace, and the host's relay to the API server. */
export async function runControlPlaneSupervisor(name: string): Promise<void> {
  // Before any await: `up` sends the listening socket at once, and a message nobody listens for is lost.
  receiveAndRelay({ host: CONTROL_PLANE_IP, port: API_SERVER_PORT }, jsonLogger('controlplane'));
  const info = await readSandboxFile(name);
  const { controlPlane } = info;
  const layout = controlPlaneLayout(controlPlane.dir);
  const args = componentArgs(layout, CONTROL_PLANE_NETWORK);
  const cgroups = controlPlaneCgroups(info.cgroup!);
  // The controllers exit at once while the API server has not set up its bootstrap RBAC: start them once it is ready.
  const apiServerReady = waitForApiServer(layout, CONTROL_PLANE_NETWORK).catch(() => undefined);
  const managed: Managed[] = COMPONENTS.map((c) => ({
    role: c, argv: [`${controlPlane.bin}/${c}`, ...args[c]], cgroup: cgroups.component(c), log: layout.log(c), startedAt: 0, restarts: 0, backoffMs: BACKOFF_MIN_MS,
    ...(c === 'kube-controller-manager' || c === 'kube-scheduler' ? { after: apiServerReady } : {}),
  }));
  await supervise(name, info.underlayNetns!, managed, (children) => writeControlPlanePids(name, {
    supervisorPid: process.pid,
    pids: Object.fromEntries(children.map((m) => [m.role, m.child?.pid])),
    restarts: Object.fromEntries(children.map((m) => [m.role, m.restarts])),
  }));
}
/** Runs `managed` in `netns` until SIGTERM/SIGINT or until the sandbox disappears; never returns early on child failures. */
async function supervise(name: string, netns: string, managed: Managed[], writeState: (children: readonly Managed[]) => Promise<void>): Promise<void> {
  let stopping = false;

  // Writes are chained so that the last one on disk reflects the latest state.
  let writing = Promise.resolve();
  const recordPids = (): void => {
    writing = writing.then(() => writeState(managed).catch((err: unknown) => say(`cannot write pids.json: ${(err as Error).message}`)));
  };

  const start = (m: Managed): void => {
    m.timer = undefined;
    if (stopping) return;
    const fd = openSync(m.log, 'a');
    try {
      writeSync(fd, `--- ${new Date().toISOString()} meshlet supervisor: starting ${m.role} (restart ${m.restarts})\n`);
      m.child = spawnIn({ cgroup: m.cgroup, netns }, m.argv, {
        stdio: ['ignore', fd, fd],
        cwd: REPO_ROOT,
      });
    } finally {
      closeSync(fd);
    }
    m.startedAt = Date.now();
    const child = m.child;
    say(`started ${m.role} pid ${child.pid}`);
    let gone = false;
    const onGone = (what: string): void => {
      if (gone) return;
      gone = true;
      if (m.child === child) m.child = undefined;
      recordPids();
      if (stopping) return;
      if (Date.now() - m.startedAt > HEALTHY_AFTER_MS) m.backoffMs = BACKOFF_MIN_MS;
      say(`${m.role} ${what}; restarting in ${m.backoffMs} ms`);
      m.restarts++;
      m.timer = setTimeout(() => start(m), m.backoffMs);
      m.backoffMs = Math.min(m.backoffMs * 2, BACKOFF_MAX_MS);
    };
    child.on('error', (err) => onGone(`could not start: ${err.message}`));
    child.on('exit', (code, signal) => onGone(`exited (${signal ?? `code ${code}`})`));
    recordPids();
  };

  await new Promise<void>((resolve) => {
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      say(`stopping: ${why}`);
      clearInterval(watchdog);
      const running = managed.filter((m) => m.child);
      for (const m of managed) clearTimeout(m.timer);
      for (const m of running) m.child!.kill('SIGTERM');
      const force = setTimeout(() => {
        for (const m of running) m.child?.kill('SIGKILL');
        resolve();
      }, STOP_GRACE_MS);
      Promise.all(running.map((m) => new Promise((r) => (m.child ? m.child.once('exit', r) : r(undefined))))).then(() => {
        clearTimeout(force);
        resolve();
      }, resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // A sandbox torn down under us (run dir removed) needs no supervisor.
    const watchdog = setInterval(() => {
      if (!existsSync(sandboxPaths(name).infoFile)) stop('sandbox.json is gone');
    }, 2000);
    for (const m of managed) void (m.after ?? Promise.resolve()).finally(() => start(m));
  });
}

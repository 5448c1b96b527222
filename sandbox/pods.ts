// The pieces of a sandbox pod: where it lives (its network namespace and
// cgroup, derived from the pod), its containers' environment, its network,
// and a container's command run as a host process inside both. The kubelet's
// runtime (kubelet/sandbox-runtime.ts) builds pods from them; `exec` and
// `status` find pods with them.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { SandboxNodeInfo } from './info.ts';
import { API_SERVER_PORT, CONTROL_PLANE_IP, nodeDir, podCgroup, podNetns, podVeth, REPO_ROOT } from './layout.ts';
import { cgroupProcs } from './cgroup.ts';
import { runningLauncherDir } from './compiled.ts';
import { spawnIn, type ContainerRun, type NameFiles, type Placement } from './proc.ts';
import { createPodNetwork } from './topology.ts';

const CONTAINER_START_MS = 5000;

/** Where a pod lives; derived from the pod (uid, QoS class, hostNetwork) and its node, so nothing else is recorded. */
export interface PodPlace {
  uid: string;
  node: SandboxNodeInfo;
  netns: string;
  cgroup: string;
  /** Its containers' logs, one directory per container (kubelet/sandbox-runtime.ts logFile). */
  logDir: string;
}

export function placePod(sandbox: string, node: SandboxNodeInfo, pod: V1Pod): PodPlace {
  const uid = pod.metadata?.uid ?? '';
  return {
    uid,
    node,
    netns: pod.spec?.hostNetwork ? node.netns : podNetns(sandbox, uid),
    cgroup: podCgroup(node, pod),
    logDir: podLogDir(nodeDir(sandbox, node.name), pod.metadata?.namespace ?? 'default', pod.metadata?.name ?? '', uid),
  };
}

/** `<node run dir>/pods/<namespace>_<name>_<uid>`, as the kubelet lays out /var/log/pods. */
export const podLogDir = (nodeRunDir: string, namespace: string, name: string, uid: string): string => join(nodeRunDir, 'pods', `${namespace}_${name}_${uid}`);

/**
 * Where a pod reaches the API server. Not the kubernetes Service's ClusterIP,
 * as kubelet would point KUBERNETES_SERVICE_HOST at: the sandbox has no
 * kube-proxy, and only pods meshlet captures have their ClusterIP traffic
 * redirected (waypoints never are). The API server's own address on the
 * underlay is routed from every pod, and its serving certificate names it.
 */
export interface ApiServerAddress {
  host: string;
  port: number;
}

export const SANDBOX_API_SERVER: ApiServerAddress = { host: CONTROL_PLANE_IP, port: API_SERVER_PORT };

/**
 * Environment every container starts from: the host PATH with this Node
 * first (the system `node` may be older), then this checkout's bin, so that
 * `meshlet` is the sandbox's own whatever checkout /usr/local/bin/meshlet
 * (which `npm run setup` links) names.
 */
function baseEnv(): NodeJS.ProcessEnv {
  const launchers = [runningLauncherDir(), join(REPO_ROOT, 'bin')].filter((d) => d !== undefined);
  const env: NodeJS.ProcessEnv = { PATH: [dirname(process.execPath), ...launchers, process.env.PATH ?? '/usr/bin:/bin'].join(':'), HOME: process.env.HOME ?? '/root' };
  for (const key of ['LANG', 'LC_ALL', 'TZ', 'PYENV_ROOT']) if (process.env[key] !== undefined) env[key] = process.env[key];
  return env;
}

/** The kubernetes Service's variables as kubelet sets them in every container (enableServiceLinks or not), for `api`. */
function apiServerEnv(api: ApiServerAddress): NodeJS.ProcessEnv {
  const port = String(api.port);
  const url = `tcp://${api.host.includes(':') ? `[${api.host}]` : api.host}:${port}`;
  const link = `KUBERNETES_PORT_${port}_TCP`;
  return {
    KUBERNETES_SERVICE_HOST: api.host,
    KUBERNETES_SERVICE_PORT: port,
    KUBERNETES_SERVICE_PORT_HTTPS: port,
    KUBERNETES_PORT: url,
    [link]: url,
    [`${link}_PROTO`]: 'tcp',
    [`${link}_PORT`]: port,
    [`${link}_ADDR`]: api.host,
  };
}

/** The downward-API fields the sandbox can fill. */
const FIELDS: Readonly<Record<string, (pod: V1Pod) => string | undefined>> = {
  'metadata.name': (pod) => pod.metadata?.name,
  'metadata.namespace': (pod) => pod.metadata?.namespace,
  'metadata.uid': (pod) => pod.metadata?.uid,
  'spec.nodeName': (pod) => pod.spec?.nodeName,
  'spec.serviceAccountName': (pod) => pod.spec?.serviceAccountName,
  'status.podIP': (pod) => pod.status?.podIP,
  'status.podIPs': (pod) => pod.status?.podIPs?.map((p) => p.ip).join(','),
  'status.hostIP': (pod) => pod.status?.hostIP,
  'status.hostIPs': (pod) => pod.status?.hostIPs?.map((h) => h.ip).join(','),
};
const FIELD_PATHS = Object.keys(FIELDS).join(', ');

/** Why the sandbox cannot fill a container's environment as Kubernetes would (a source it does not read), or undefined. */
export function envProblem(container: V1Container): string | undefined {
  if (container.envFrom?.length) return `container "${container.name}": envFrom (ConfigMaps, Secrets) is not supported by the sandbox; set env values directly`;
  for (const e of container.env ?? []) {
    if (e.value !== undefined || !e.valueFrom) continue;
    const path = e.valueFrom.fieldRef?.fieldPath;
    if (path === undefined) {
      const source = Object.keys(e.valueFrom).join(', ');
      return `container "${container.name}": env ${e.name} takes its value from ${source}, which the sandbox does not support; use a literal value or a fieldRef to ${FIELD_PATHS}`;
    }
    if (!Object.hasOwn(FIELDS, path)) return `container "${container.name}": env ${e.name} has fieldRef ${path}, which the sandbox cannot fill; supported: ${FIELD_PATHS}`;
  }
  return undefined;
}

/** A container's environment (also used for `exec`): base, the API server's variables, HOSTNAME, then env with literal values and supported fieldRefs. */
export function containerEnv(pod: V1Pod, container: V1Container | undefined, api: ApiServerAddress = SANDBOX_API_SERVER): NodeJS.ProcessEnv {
  const env = { ...baseEnv(), ...apiServerEnv(api) };
  env.HOSTNAME = pod.metadata?.name ?? '';
  for (const e of container?.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath;
    const value = e.value ?? (path !== undefined && Object.hasOwn(FIELDS, path) ? FIELDS[path]!(pod) : undefined);
    if (value !== undefined) env[e.name] = value;
  }
  return env;
}

/** Creates the pod's network namespace and eth0 with its addresses, on a routed veth of its own to `node`'s namespace. */
export async function createPodNetns(node: SandboxNodeInfo, netns: string, uid: string, ip: string, ip6?: string): Promise<void> {
  const nodeSource6 = node.probeSourceIp6 ?? node.captureIp6;
  await createPodNetwork({
    nodeNetns: node.netns,
    podNetns: netns,
    veth: podVeth(uid),
    ip,
    nodeSource4: node.probeSourceIp4 ?? node.captureIp4,
    ...(ip6 ? { ip6, ...(nodeSource6 ? { nodeSource6 } : {}) } : {}),
  });
}

export interface ContainerSpawn {
  /** The container's command and args. */
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** stdout and stderr are appended here, after a header line naming the container. */
  logFile: string;
  name: string;
  names?: NameFiles;
  /** What it may do as root (capabilities.ts). */
  capabilities: readonly string[];
  /** Its /run and volume mounts (proc.ts planContainerRun). */
  run?: ContainerRun;
  /** The pod's hostPID: the host's PID namespace instead of one of its own. */
  hostPid?: boolean;
}

/**
 * Starts a container's command as a detached host process in `where` (its
 * cgroup, then its network namespace) with its capabilities only; resolves
 * once it joined the cgroup (so it is "running"), or exited.
 */
export async function spawnContainer(where: Placement, spec: ContainerSpawn): Promise<ChildProcess> {
  const fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    writeSync(fd, `--- ${new Date().toISOString()} container ${spec.name}: ${spec.argv.join(' ')}\n`);
    // Detached: pods outlive the process that started them, like a kubelet's.
    child = spawnIn(where, spec.argv, {
      stdio: ['ignore', fd, fd],
      env: spec.env,
      cwd: spec.cwd,
      detached: true,
      capabilities: spec.capabilities,
      ...(spec.names ? { names: spec.names } : {}),
      ...(spec.run ? { containerRun: spec.run } : {}),
      ...(spec.hostPid ? { hostPid: true } : {}),
    });
  } finally {
    closeSync(fd);
  }
  child.on('error', () => undefined);
  child.unref();
  await inCgroup(where.cgroup, child);
  return child;
}

/** Resolves once the container joined its cgroup (so it is "running" when apply returns), or exited. */
async function inCgroup(cgroup: string, child: ChildProcess): Promise<void> {
  let exited = child.exitCode !== null;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + CONTAINER_START_MS;
  while (!exited && child.pid !== undefined && Date.now() < deadline) {
    if ((await cgroupProcs(cgroup)).includes(child.pid)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

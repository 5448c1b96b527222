// The sandbox's kubelet + CNI for one pod: a network namespace with a veth to
// the node's pod bridge, a cgroup, and each container's command run as a host
// process inside both.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { SandboxNodeInfo } from './info.ts';
import { podCgroup, podLogFile, podNetns, podVeth, REPO_ROOT } from './layout.ts';
import { cgroupProcs, ensureCgroup, removeCgroup } from './cgroup.ts';
import { deleteNetns } from './netns.ts';
import { findExecutable, spawnIn, type NameFiles } from './proc.ts';
import { createPodNetwork } from './topology.ts';

const CONTAINER_START_MS = 5000;

export const NO_COMMAND = 'sandbox pods run host commands: set spec.containers[].command';

/** Where a pod lives; derived from the pod (uid, QoS class) and its node, so nothing else is recorded. */
export interface PodPlace {
  uid: string;
  node: SandboxNodeInfo;
  netns: string;
  cgroup: string;
  logFile: string;
}

export function placePod(sandbox: string, node: SandboxNodeInfo, pod: V1Pod): PodPlace {
  const uid = pod.metadata?.uid ?? '';
  return {
    uid,
    node,
    netns: podNetns(sandbox, uid),
    cgroup: podCgroup(node, pod),
    logFile: podLogFile(sandbox, pod.metadata?.namespace ?? 'default', pod.metadata?.name ?? ''),
  };
}

/** Why the sandbox cannot run this pod, or undefined. Mesh semantics are the agent's to judge. */
export function refusalReason(pod: V1Pod): string | undefined {
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) return 'spec.containers is empty';
  if (spec.hostNetwork) return 'hostNetwork pods are not supported by the sandbox';
  if (spec.initContainers?.length) return 'initContainers are not supported by the sandbox; fold them into the container command';
  for (const c of spec.containers) {
    if (!Array.isArray(c.command) || c.command.length === 0) return `${NO_COMMAND} (container "${c.name}" has none)`;
    const env = baseEnv();
    if (!findExecutable(c.command[0]!, env.PATH, c.workingDir ?? REPO_ROOT)) {
      return `container "${c.name}": command "${c.command[0]}" is not an executable on this host (PATH=${env.PATH})`;
    }
  }
  return undefined;
}

/** Environment every container starts from: the host PATH with this Node first (the system `node` may be older). */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: process.env.HOME ?? '/root' };
  for (const key of ['LANG', 'LC_ALL', 'TZ', 'PYENV_ROOT']) if (process.env[key] !== undefined) env[key] = process.env[key];
  return env;
}

/** The downward-API fields the sandbox can fill. */
function fieldValue(pod: V1Pod, path: string): string | undefined {
  switch (path) {
    case 'metadata.name': return pod.metadata?.name;
    case 'metadata.namespace': return pod.metadata?.namespace;
    case 'metadata.uid': return pod.metadata?.uid;
    case 'spec.nodeName': return pod.spec?.nodeName;
    case 'spec.serviceAccountName': return pod.spec?.serviceAccountName;
    case 'status.podIP': return pod.status?.podIP;
    case 'status.podIPs': return pod.status?.podIPs?.map((p) => p.ip).join(',');
    case 'status.hostIP': return pod.status?.hostIP;
    default: return undefined;
  }
}

/** A container's environment (also used for `exec`): base, HOSTNAME, then env with literal values and supported fieldRefs. */
export function containerEnv(pod: V1Pod, container: V1Container | undefined): NodeJS.ProcessEnv {
  const env = baseEnv();
  env.HOSTNAME = pod.metadata?.name ?? '';
  for (const e of container?.env ?? []) {
    const value = e.value ?? (e.valueFrom?.fieldRef ? fieldValue(pod, e.valueFrom.fieldRef.fieldPath) : undefined);
    if (value !== undefined) env[e.name] = value;
  }
  return env;
}

/** Builds the pod's network and cgroup and starts its containers; undoes everything on failure. */
export async function startPod(place: PodPlace, pod: V1Pod, names?: NameFiles): Promise<void> {
  const ip = pod.status?.podIPs?.[0]?.ip;
  const ip6 = pod.status?.podIPs?.[1]?.ip;
  if (!ip) throw new Error('pod has no IP allocated');
  try {
    await createPodNetwork({
      nodeNetns: place.node.netns,
      podNetns: place.netns,
      veth: podVeth(place.uid),
      ip,
      prefix: Number(place.node.podCidr.split('/')[1]),
      gateway: place.node.podGatewayIp4,
      ip6,
      prefix6: place.node.podCidr6 ? Number(place.node.podCidr6.split('/')[1]) : undefined,
      gateway6: place.node.podGatewayIp6,
    });
    await ensureCgroup(place.cgroup);
    await Promise.all(pod.spec!.containers.map((container) => startContainer(place, pod, container, names)));
  } catch (err) {
    await stopPod(place).catch(() => undefined);
    throw err;
  }
}

async function startContainer(place: PodPlace, pod: V1Pod, container: V1Container, names: NameFiles | undefined): Promise<void> {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  const fd = openSync(place.logFile, 'a');
  let child: ChildProcess;
  try {
    writeSync(fd, `--- ${new Date().toISOString()} container ${container.name}: ${argv.join(' ')}\n`);
    // Detached: pods outlive the apply that started them, like a kubelet's.
    child = spawnIn(place, argv, {
      stdio: ['ignore', fd, fd],
      env: containerEnv(pod, container),
      cwd: container.workingDir ?? REPO_ROOT,
      detached: true,
      ...(names ? { names } : {}),
    });
  } finally {
    closeSync(fd);
  }
  child.on('error', () => undefined);
  child.unref();
  await inCgroup(place.cgroup, child);
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

/** Kills the pod's processes and removes its cgroup and namespace (its veth goes with it). */
export async function stopPod(place: Pick<PodPlace, 'cgroup' | 'netns'>): Promise<void> {
  await removeCgroup(place.cgroup);
  await deleteNetns(place.netns);
}

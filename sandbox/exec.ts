// `exec`: a command inside a pod's cgroup and network namespace with its
// container's capabilities, so it is captured, policed and confined exactly
// like the pod's own processes; in the named container's (default: the
// first's) cgroup and PID and mount namespaces while that runs, as
// `kubectl exec [-c container]` enters them.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import type { V1Pod } from '@kubernetes/client-node';
import { ConfigError, SandboxError } from '../lib/core/errors.ts';
import { statusCodeOf } from '../lib/cluster/sources/kube-client.ts';
import { containerCapabilities } from './capabilities.ts';
import { openCluster } from './cluster-client.ts';
import { PodNotFoundError } from './errors.ts';
import { existingNameFiles, hostsDir } from './hosts.ts';
import { runningContainer } from './kubelet/sandbox-runtime.ts';
import { nodeDir } from './layout.ts';
import { netnsExists } from './netns.ts';
import { containerEnv, placePod, type PodPlace } from './pods.ts';
import { spawnIn } from './proc.ts';

export interface PodRef {
  pod: string;
  /** Default "default". */
  namespace?: string;
  /** Default: the pod's first container, as `kubectl exec` picks it. */
  container?: string;
}

export interface SpawnInPodOptions {
  stdio?: StdioOptions;
  /** Added to the pod's container environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface ExecOptions {
  /** Written to stdin, then closed. */
  input?: string;
  /** SIGKILL the command after this long; the result then has timedOut set. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** null when killed by a signal (see `signal`). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export async function resolvePod(sandbox: string, ref: PodRef): Promise<{ pod: V1Pod; place: PodPlace }> {
  const cluster = await openCluster(sandbox);
  const namespace = ref.namespace ?? 'default';
  let pod: V1Pod;
  try {
    pod = await cluster.core.readNamespacedPod({ namespace, name: ref.pod });
  } catch (err) {
    if (statusCodeOf(err) !== 404) throw err;
    const here = (await cluster.core.listNamespacedPod({ namespace })).items.map((p) => p.metadata?.name);
    throw new PodNotFoundError(`sandbox "${sandbox}" has no pod ${namespace}/${ref.pod}; pods in namespace ${namespace}: ${here.join(', ') || 'none'} (set the namespace with -n)`);
  }
  const node = cluster.info.nodes.find((n) => n.name === pod.spec?.nodeName);
  if (!node || !pod.metadata?.uid) throw new SandboxError(`pod ${namespace}/${ref.pod} is not scheduled on a sandbox node yet; see \`meshlet sandbox kubectl -- describe pod -n ${namespace} ${ref.pod}\``);
  const place = placePod(sandbox, node, pod);
  if (!(await netnsExists(place.netns))) throw new SandboxError(`the network namespace ${place.netns} of pod ${namespace}/${ref.pod} does not exist (yet); see \`meshlet sandbox kubectl -- get pod -n ${namespace} ${ref.pod}\``);
  return { pod, place };
}

export async function spawnInPod(sandbox: string, ref: PodRef, argv: readonly string[], options: SpawnInPodOptions = {}): Promise<ChildProcess> {
  if (argv.length === 0) throw new ConfigError('no command given: `meshlet sandbox exec POD -- CMD [ARGS…]`');
  const { pod, place } = await resolvePod(sandbox, ref);
  const container = ref.container === undefined ? pod.spec?.containers[0] : pod.spec?.containers.find((c) => c.name === ref.container);
  if (!container && ref.container !== undefined) {
    const names = (pod.spec?.containers ?? []).map((c) => c.name).join(', ');
    throw new ConfigError(`pod ${pod.metadata?.namespace}/${pod.metadata?.name} has no container "${ref.container}"; its containers: ${names} (pick one with -c)`);
  }
  const env = { ...containerEnv(pod, container), ...(process.env.TERM ? { TERM: process.env.TERM } : {}), ...options.env };
  const names = existingNameFiles(hostsDir(sandbox, place.node.name), pod.metadata?.namespace ?? 'default');
  // The container's capabilities; none for one the runtime refuses.
  const caps = container ? containerCapabilities(container) : undefined;
  const capabilities = caps && caps.problem === undefined ? caps.capabilities : [];
  const stdio = options.stdio ?? 'pipe';
  const cwd = options.cwd ?? process.cwd();
  const running = container ? runningContainer(nodeDir(sandbox, place.node.name), place.uid, container.name) : undefined;
  // Into a running container with what it was started with.
  if (running) return spawnIn({ cgroup: running.cgroup, netns: place.netns }, argv, { stdio, env, cwd, capabilities: running.capabilities ?? capabilities, joinContainer: running.pid, ...(running.hostPid ? { hostPid: true } : {}) });
  // None runs: a PID namespace of its own, in the pod's cgroup.
  return spawnIn(place, argv, { stdio, env, cwd, capabilities, ...(names ? { names } : {}) });
}

/** Runs `argv` in the pod to completion and collects its output. */
export async function execInPod(sandbox: string, ref: PodRef, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const child = await spawnInPod(sandbox, ref, argv, { stdio: 'pipe', env: options.env, cwd: options.cwd });
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new SandboxError(`cannot run ${argv.join(' ')} in pod ${ref.pod}: ${e.message}`, { cause: e }));
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), exitCode, signal, timedOut });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input ?? '');
  });
}

// The sandbox's container runtime for the kubelet: pods as network
// namespaces on routed veths to the node with addresses from the node's pod
// CIDRs, cgroups in the kubelet's layout, and containers as host processes
// (each in its own cgroup below the pod's, as runc places them) with
// containerd's default capabilities less what their securityContext drops
// (../capabilities.ts) and a PID namespace each (the host's for a hostPID
// pod), whose PID 1 is tini (../proc.ts), built from the same pieces as the sandbox's own pods
// (../pods.ts). The recorded pid is the container's main process (tini's
// child) as the host sees it; an exec joins its PID and mount namespaces.
// The kubelet materialises each pod's volumes in a directory of the node's
// (podVolumesDir, laid out as kubelet's root dir: kubelet/pods/<uid>/volumes/
// <volume>, removed with the pod's sandbox), and each container binds them
// at its mount paths in a /run of its own (../proc.ts planContainerRun).
// What it must remember across a restart (addresses, container instances)
// is in a state file under the node's run dir, so a restarted kubelet adopts
// what runs.
//
// Exits: a container this runtime instance started is its child (the
// launcher that waits for the PID namespace's init), so its exit code comes
// from waitpid: tini's, which is the main process's, or 128 + n when signal
// n killed it (read back as that signal, as a shell's status is: an exit
// code of that value reads the same); a signal only when the whole container
// was SIGKILLed. A container adopted after a restart is not: the runtime
// polls whether its main process is still in its cgroup's cgroup.procs
// (immune to pid reuse) and reports the signal it sent when it stopped it,
// else exit code 255 with reason Unknown, as containerd does when it lost a
// task's status.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { constants } from 'node:os';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { listPodCgroups, podUidProblem } from '../../lib/cluster/cgroup-layout.ts';
import { SandboxError } from '../../lib/core/errors.ts';
import { silentLogger, type Logger } from '../../lib/core/log.ts';
import type { SandboxNodeInfo } from '../info.ts';
import { containerCapabilities, DEFAULT_CAPABILITIES } from '../capabilities.ts';
import { cgroupProcs, ensureCgroup, killCgroup, removeCgroup } from '../cgroup.ts';
import { allocatePodAddresses } from '../ipam.ts';
import { nodeAddresses, nodeHostPath, podCgroup, podNetns, REPO_ROOT } from '../layout.ts';
import { deleteNetns, netnsExists } from '../netns.ts';
import { containerEnv, createPodNetns, envProblem, podLogDir, SANDBOX_API_SERVER, spawnContainer, type ApiServerAddress } from '../pods.ts';
import { containerMainPid, findExecutable, planContainerRun, spawnIn, type ContainerRun, type NameFiles } from '../proc.ts';
import { runChainedPlugins } from './cni.ts';
import { ContainerLogError, type ContainerLog } from './container-log.ts';
import { inNetns, netnsDialer } from './netns-dialer.ts';
import { RuntimeStateFile, type StoredContainer, type StoredExit, type StoredPod } from './runtime-state.ts';
import type { ContainerExit, ContainerMount, ContainerStarted, ExecResult, PodRuntime, PodSandboxInfo, ProbeDialer, RuntimePod } from './runtime.ts';
import type { NodeHostPath } from './volume-sources.ts';

/** A pod or container the runtime cannot create or reach; the kubelet shows the message. */
export class PodRuntimeError extends SandboxError {}

/** What a container without a command runs: nothing, until it is stopped. */
export const IDLE_COMMAND: readonly string[] = ['sleep', 'infinity'];
/** How often adopted containers are checked for an exit. */
const ADOPTED_POLL_MS = 250;
const EXEC_OUTPUT_LIMIT = 10 * 1024;
/** containerd's exit code for a task whose status it lost. */
const UNKNOWN_EXIT_CODE = 255;
/** How long a started container's init may take to fork its main process. */
const MAIN_PROCESS_WAIT_MS = 5000;
const SIGNAL_NUMBERS = new Set<number>(Object.values(constants.signals));

export interface SandboxRuntimeOptions {
  /** The sandbox's name: it prefixes the pods' network namespaces. */
  sandbox: string;
  node: SandboxNodeInfo;
  /** The node's run dir: the state file and the containers' logs. */
  runDir: string;
  /** The files a pod of `namespace` sees as /etc/hosts and /etc/resolv.conf, when there are some (hosts.ts). */
  nameFiles?: (namespace: string) => NameFiles | undefined;
  /** Whether Pod Security runs `namespace` at the privileged level (pod-security.ts); absent: no namespace is. */
  privilegedNamespace?: (namespace: string) => Promise<boolean>;
  /** Where containers reach the API server (KUBERNETES_SERVICE_HOST/PORT); default: the sandbox's API server on the underlay. */
  apiServer?: ApiServerAddress;
  log?: Logger;
  adoptedPollMs?: number;
}

/** One container instance the runtime watches for its exit. */
interface Instance {
  uid: string;
  stored: StoredContainer;
  /** Set when this runtime started it. */
  child?: ChildProcess;
  exited: Promise<void>;
  resolveExited: () => void;
  done: boolean;
  /** When SIGKILL is due (ms since the epoch), once a stop began. */
  killAt?: number;
  killTimer?: NodeJS.Timeout;
  /** The signal the runtime sent last: an adopted container's exit is reported with it. */
  sentSignal?: number;
}

const signalNumber = (signal: NodeJS.Signals): number => constants.signals[signal];
const stateFile = (runDir: string): RuntimeStateFile => new RuntimeStateFile(join(runDir, 'runtime-state.json'));
/** The kubelet's files for pod `uid` (its volumes), as kubelet's root dir keeps them: <run dir>/kubelet/pods/<uid>. */
const kubeletPodDir = (runDir: string, uid: string): string => join(runDir, 'kubelet', 'pods', uid);
/** Where each container's /run is assembled in its own mount namespace before it is moved onto /run; always empty on the host. */
const containerRunStaging = (runDir: string): string => join(runDir, 'container-run');

/** A pod's container as the runtime of the node whose run dir is `runDir` recorded it, while it runs: what `meshlet sandbox exec` joins. */
export function runningContainer(runDir: string, uid: string, container: string): StoredContainer | undefined {
  const c = stateFile(runDir).read().get(uid)?.containers[container];
  return c && !c.exit ? c : undefined;
}

/** Kubernetes' $(VAR) expansion of command, args and env values: defined names are replaced, $$ escapes, anything else stays. */
export function expandVars(text: string, vars: Readonly<Record<string, string | undefined>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (name === undefined) return '$';
    return vars[name] ?? match;
  });
}

export class SandboxRuntime implements PodRuntime {
  readonly name = 'meshlet';
  readonly probeDialer?: ProbeDialer;
  readonly #o: SandboxRuntimeOptions;
  readonly #log: Logger;
  readonly #state: RuntimeStateFile;
  #pods = new Map<string, StoredPod>();
  readonly #instances = new Map<string, Instance>();
  readonly #listeners = new Set<(exit: ContainerExit) => void>();
  readonly #creating = new Map<string, Promise<PodSandboxInfo>>();
  readonly #removing = new Map<string, Promise<void>>();
  #loaded: Promise<void> | undefined;
  #poll: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SandboxRuntimeOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#state = stateFile(options.runDir);
    // A kubelet outside the node's namespace (a test) still probes from the node.
    if (!inNetns(options.node.netns)) this.probeDialer = netnsDialer(options.node.netns);
  }

  /** Where container logs go: `<run dir>/pods/<namespace>_<pod>_<uid>/<container>/<instance>.log`. */
  logFile(pod: Pick<StoredPod, 'namespace' | 'name' | 'uid'>, container: string, instance: number): string {
    return join(podLogDir(this.#o.runDir, pod.namespace, pod.name, pod.uid), container, `${instance}.log`);
  }

  podVolumesDir(pod: V1Pod): string {
    return join(kubeletPodDir(this.#o.runDir, pod.metadata?.uid ?? ''), 'volumes');
  }

  nodeHostPath(path: string): NodeHostPath {
    return nodeHostPath(this.#o.sandbox, this.#o.node, path);
  }

  /** Stops watching and reporting (the runtime's process goes away); containers keep running for the next runtime to adopt. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#poll);
    this.#poll = undefined;
    for (const inst of this.#instances.values()) {
      inst.child?.removeAllListeners('exit');
      clearTimeout(inst.killTimer);
    }
    this.#instances.clear();
    this.#listeners.clear();
  }

  onContainerExit(listener: (exit: ContainerExit) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async listPods(): Promise<RuntimePod[]> {
    await this.#load();
    const pods: RuntimePod[] = [...this.#pods.values()].map((p) => ({
      uid: p.uid,
      ips: p.ips,
      containers: Object.values(p.containers).map((c) => ({ name: c.name, id: c.id, startedAt: c.startedAt, ...(c.exit ? { exit: c.exit } : {}) })),
    }));
    // Pod cgroups the state does not know (it was lost): listed without containers, so the kubelet stops them.
    for (const cg of await listPodCgroups(this.#o.node.cgroup, this.#o.node.cgroupDriver)) {
      if (!this.#pods.has(cg.uid)) pods.push({ uid: cg.uid, ips: [], containers: [] });
    }
    return pods;
  }

  async runPodSandbox(pod: V1Pod): Promise<PodSandboxInfo> {
    await this.#load();
    const uid = pod.metadata?.uid ?? '';
    const problem = podUidProblem(uid);
    if (problem) throw new PodRuntimeError(`pod ${pod.metadata?.namespace}/${pod.metadata?.name}: ${problem}`);
    const existing = this.#pods.get(uid);
    if (existing) return { ips: existing.ips };
    const inFlight = this.#creating.get(uid);
    if (inFlight) return inFlight;
    const creating = this.#createSandbox(uid, pod).finally(() => this.#creating.delete(uid));
    this.#creating.set(uid, creating);
    return creating;
  }

  async #createSandbox(uid: string, pod: V1Pod): Promise<PodSandboxInfo> {
    const node = this.#o.node;
    const hostNetwork = pod.spec?.hostNetwork === true;
    const netns = hostNetwork ? node.netns : podNetns(this.#o.sandbox, uid);
    if (!hostNetwork && await netnsExists(netns)) throw new PodRuntimeError(`network namespace ${netns} of pod ${uid} exists but this runtime did not record it (a pod whose UID starts alike, or a leftover); remove it with \`ip netns delete ${netns}\``);
    // From here to recording the pod nothing awaits: pods created at once never draw the same address.
    let ips: string[];
    if (hostNetwork) {
      ips = nodeAddresses(node);
    } else {
      const used = new Set([...this.#pods.values()].filter((p) => p.ownNetns).flatMap((p) => p.ips));
      const addrs = allocatePodAddresses(node, used);
      if (!addrs) throw new PodRuntimeError(`node ${node.name} has no free pod address left in ${[node.podCidr, node.podCidr6].filter(Boolean).join(' and ')}; delete some pods`);
      ips = [addrs.ip, ...(addrs.ip6 ? [addrs.ip6] : [])];
    }
    const stored: StoredPod = {
      uid,
      namespace: pod.metadata?.namespace ?? 'default',
      name: pod.metadata?.name ?? '',
      ips,
      netns,
      ownNetns: !hostNetwork,
      cgroup: podCgroup(node, pod),
      containers: {},
    };
    // Recorded first: the addresses are taken, and a crash mid-way leaves something the next stop removes.
    this.#pods.set(uid, stored);
    this.#save();
    try {
      if (!hostNetwork) await createPodNetns(node, netns, uid, ips[0]!, ips[1]);
      await ensureCgroup(stored.cgroup);
      // A runtime calls CNI for pods of their own network only; the pod's cgroup exists by then, as the kubelet makes it first.
      if (!hostNetwork) await runChainedPlugins(this.#o.sandbox, node, containerRunStaging(this.#o.runDir), 'ADD', stored);
    } catch (err) {
      await this.#teardown(stored).catch(() => undefined);
      throw new PodRuntimeError(`cannot create the sandbox of pod ${stored.namespace}/${stored.name}: ${(err as Error).message}`, { cause: err });
    }
    this.#log.info('pod_sandbox_created', { pod: `${stored.namespace}/${stored.name}`, uid, ips, netns, cgroup: stored.cgroup });
    return { ips };
  }

  /** The container's /run with `mounts` in it; PodRuntimeError naming the mount the sandbox cannot make. */
  #containerRun(container: V1Container, mounts: readonly ContainerMount[]): ContainerRun {
    const staging = containerRunStaging(this.#o.runDir);
    mkdirSync(staging, { recursive: true });
    try {
      return planContainerRun(staging, mounts.map((m) => ({ source: m.hostPath, target: m.containerPath, readOnly: m.readOnly })));
    } catch (err) {
      throw new PodRuntimeError(`container "${container.name}": ${(err as Error).message}`, { cause: err });
    }
  }

  async startContainer(pod: V1Pod, container: V1Container, mounts: readonly ContainerMount[] = []): Promise<ContainerStarted> {
    await this.#load();
    const uid = pod.metadata?.uid ?? '';
    const stored = this.#pods.get(uid);
    if (!stored) throw new PodRuntimeError(`pod ${pod.metadata?.namespace}/${pod.metadata?.name} has no sandbox on this node (its state was lost); delete the pod`);
    const problem = envProblem(container);
    if (problem) throw new PodRuntimeError(problem);
    const caps = containerCapabilities(container, await this.#o.privilegedNamespace?.(stored.namespace) ?? false);
    if (caps.problem !== undefined) throw new PodRuntimeError(caps.problem);
    const previous = stored.containers[container.name];
    if (previous && !previous.exit) throw new PodRuntimeError(`container ${container.name} of pod ${stored.namespace}/${stored.name} still runs (${previous.id}); stop it first`);

    // status.podIP and hostIP as the pod will report them: the API object may not carry them yet.
    const withIps: V1Pod = {
      ...pod,
      status: { ...pod.status, podIP: stored.ips[0], podIPs: stored.ips.map((ip) => ({ ip })), hostIP: this.#o.node.nodeIp4, hostIPs: nodeAddresses(this.#o.node).map((ip) => ({ ip })) },
    };
    const run = this.#containerRun(container, mounts);
    const env = containerEnv(withIps, container, this.#o.apiServer ?? SANDBOX_API_SERVER);
    const declared: Record<string, string | undefined> = {};
    for (const e of container.env ?? []) {
      const value = env[e.name];
      if (value === undefined) continue;
      // Each value sees the ones declared before it, as kubelet expands them.
      env[e.name] = expandVars(value, declared);
      declared[e.name] = env[e.name];
    }
    const argv = container.command?.length ? [...container.command, ...(container.args ?? [])].map((a) => expandVars(a, declared)) : [...IDLE_COMMAND];
    const cwd = container.workingDir ?? REPO_ROOT;
    if (!findExecutable(argv[0]!, env.PATH, cwd)) throw new PodRuntimeError(`container "${container.name}": command "${argv[0]}" is not an executable on this host (PATH=${env.PATH}, workingDir ${cwd})`);

    const id = randomBytes(8).toString('hex');
    const instance = previous ? previous.instance + 1 : 0;
    const cgroup = join(stored.cgroup, this.#o.node.cgroupDriver === 'systemd' ? `meshlet-${id}.scope` : id);
    const logFile = this.logFile(stored, container.name, instance);
    mkdirSync(join(logFile, '..'), { recursive: true });
    await ensureCgroup(cgroup);
    const names = this.#o.nameFiles?.(stored.namespace);
    const hostPid = pod.spec?.hostPID === true;
    let child: ChildProcess;
    try {
      child = await spawnContainer({ cgroup, netns: stored.netns }, { argv, env, cwd, logFile, name: container.name, capabilities: caps.capabilities, run, hostPid, ...(names ? { names } : {}) });
    } catch (err) {
      await removeCgroup(cgroup).catch(() => undefined);
      throw new PodRuntimeError(`cannot start container ${container.name}: ${(err as Error).message}`, { cause: err });
    }
    if (child.pid === undefined) {
      await removeCgroup(cgroup).catch(() => undefined);
      throw new PodRuntimeError(`cannot start container ${container.name}: the process did not start (see ${logFile})`);
    }
    // The launcher if it ended already: its exit is reported below.
    const pid = (await containerMainPid(child, MAIN_PROCESS_WAIT_MS)) ?? child.pid;
    if (pid === child.pid && child.exitCode === null && child.signalCode === null) {
      await removeCgroup(cgroup).catch(() => undefined);
      throw new PodRuntimeError(`cannot start container ${container.name}: its init did not start the command within ${MAIN_PROCESS_WAIT_MS / 1000} s (see ${logFile})`);
    }
    const startedAt = Date.now();
    const record: StoredContainer = { name: container.name, id, pid, startedAt, instance, cgroup, env: env as Record<string, string>, cwd, capabilities: caps.capabilities, ...(hostPid ? { hostPid } : {}) };
    stored.containers[container.name] = record;
    this.#save();
    const inst = this.#watch(uid, record, child);
    // It may have ended while it was joining its cgroup.
    if (child.exitCode !== null || child.signalCode !== null) queueMicrotask(() => this.#childExited(inst, child.exitCode, child.signalCode));
    this.#log.info('container_started', { pod: `${stored.namespace}/${stored.name}`, container: container.name, id, pid, argv });
    return { id, startedAt };
  }

  async stopContainer(uid: string, container: string, gracePeriodSeconds: number): Promise<void> {
    await this.#load();
    const id = this.#pods.get(uid)?.containers[container]?.id;
    const inst = id === undefined ? undefined : this.#instances.get(id);
    if (!inst || inst.done) return;
    const killAt = Date.now() + Math.max(0, gracePeriodSeconds) * 1000;
    if (inst.killAt === undefined || killAt < inst.killAt) {
      const first = inst.killAt === undefined;
      inst.killAt = killAt;
      clearTimeout(inst.killTimer);
      if (gracePeriodSeconds <= 0) this.#kill(inst);
      else {
        if (first) this.#signalMain(inst, 'SIGTERM');
        inst.killTimer = setTimeout(() => this.#kill(inst), killAt - Date.now());
      }
    }
    await inst.exited;
  }

  async stopPodSandbox(uid: string, gracePeriodSeconds: number): Promise<void> {
    await this.#load();
    const stored = this.#pods.get(uid);
    if (stored) await Promise.all(Object.keys(stored.containers).map((name) => this.stopContainer(uid, name, gracePeriodSeconds)));
    const removing = this.#removing.get(uid);
    if (removing) return removing;
    const done = (stored ? this.#teardown(stored) : this.#removeUnrecorded(uid)).finally(() => this.#removing.delete(uid));
    this.#removing.set(uid, done);
    return done;
  }

  async exec(uid: string, container: string, argv: readonly string[], signal: AbortSignal): Promise<ExecResult> {
    await this.#load();
    const stored = this.#pods.get(uid);
    const c = stored?.containers[container];
    if (!stored || !c || c.exit) throw new PodRuntimeError(`container ${container} of pod ${uid} is not running`);
    if (argv.length === 0) throw new PodRuntimeError('exec needs a command');
    // With the container's own capabilities, in its PID and mount namespaces: an exec is the container's process.
    const capabilities = c.capabilities ?? DEFAULT_CAPABILITIES;
    const child = spawnIn({ cgroup: c.cgroup, netns: stored.netns }, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: c.env, cwd: c.cwd, capabilities, joinContainer: c.pid, ...(c.hostPid ? { hostPid: true } : {}) });
    return new Promise((resolve, reject) => {
      let output = '';
      const collect = (chunk: Buffer): void => {
        if (output.length < EXEC_OUTPUT_LIMIT) output += chunk.toString('utf8').slice(0, EXEC_OUTPUT_LIMIT - output.length);
      };
      const onAbort = (): void => void child.kill('SIGKILL');
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      child.on('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(new PodRuntimeError(`cannot run ${argv.join(' ')} in container ${container}: ${err.message}`, { cause: err }));
      });
      child.on('close', (code, sig) => {
        signal.removeEventListener('abort', onAbort);
        resolve({ exitCode: code ?? 128 + (sig ? signalNumber(sig) : 0), output });
      });
    });
  }

  /** The log of `container` of pod `namespace/name` on this node (its latest instance, or the one before with `previous`), for the kubelet's API. */
  async containerLog(namespace: string, name: string, container: string, previous: boolean): Promise<ContainerLog> {
    await this.#load();
    const pods = [...this.#pods.values()].filter((p) => p.namespace === namespace && p.name === name);
    if (pods.length === 0) throw new ContainerLogError(`pod ${namespace}/${name} does not run on node ${this.#o.node.name}`);
    // A name reused by a newer pod (a StatefulSet's, recreated): the latest instance wins.
    const found = pods.flatMap((pod) => (pod.containers[container] ? [{ pod, c: pod.containers[container] }] : [])).sort((a, b) => b.c.startedAt - a.c.startedAt)[0];
    if (!found) {
      const names = [...new Set(pods.flatMap((p) => Object.keys(p.containers)))];
      throw new ContainerLogError(`container ${container} is not valid for pod ${namespace}/${name}: choose one of ${names.join(', ') || '(none started yet)'}`);
    }
    const { pod, c } = found;
    if (previous) {
      if (c.instance === 0) throw new ContainerLogError(`previous terminated container ${container} in pod ${namespace}/${name} not found: it has not restarted`);
      return { file: this.logFile(pod, container, c.instance - 1), running: () => false };
    }
    const running = (): boolean => {
      const now = this.#pods.get(pod.uid)?.containers[container];
      return now?.id === c.id && !now.exit;
    };
    return { file: this.logFile(pod, container, c.instance), running };
  }

  /** Reads the state once: containers still running are watched again, those that ended meanwhile are recorded as exited. */
  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      this.#pods = this.#state.read();
      let changed = false;
      for (const pod of this.#pods.values()) {
        for (const c of Object.values(pod.containers)) {
          if (c.exit) continue;
          if ((await cgroupProcs(c.cgroup)).includes(c.pid)) this.#watch(pod.uid, c);
          else {
            c.exit = { exitCode: UNKNOWN_EXIT_CODE, finishedAt: Date.now(), reason: 'Unknown' };
            await removeCgroup(c.cgroup).catch((err: unknown) => this.#log.warn('container_cgroup_remove_failed', { cgroup: c.cgroup, error: err }));
            changed = true;
          }
        }
      }
      if (changed) this.#save();
    })();
    return this.#loaded;
  }

  #save(): void {
    if (!this.#closed) this.#state.write(this.#pods);
  }

  #watch(uid: string, stored: StoredContainer, child?: ChildProcess): Instance {
    let resolveExited!: () => void;
    const exited = new Promise<void>((r) => (resolveExited = r));
    const inst: Instance = { uid, stored, exited, resolveExited, done: false, ...(child ? { child } : {}) };
    this.#instances.set(stored.id, inst);
    if (child) child.once('exit', (code, signal) => this.#childExited(inst, code, signal));
    else this.#pollAdopted();
    return inst;
  }

  #childExited(inst: Instance, code: number | null, signal: NodeJS.Signals | null): void {
    // tini's 128 + n for a main process that signal n killed; the launcher's own signal when all was SIGKILLed.
    const n = signal ? signalNumber(signal) : code !== null && SIGNAL_NUMBERS.has(code - 128) ? code - 128 : undefined;
    this.#finished(inst, { exitCode: code ?? 128 + (n ?? 0), ...(n !== undefined ? { signal: n } : {}), finishedAt: Date.now() });
  }

  /** One timer for every adopted container, while there are any. */
  #pollAdopted(): void {
    if (this.#poll || this.#closed) return;
    this.#poll = setInterval(() => void this.#checkAdopted(), this.#o.adoptedPollMs ?? ADOPTED_POLL_MS);
    this.#poll.unref();
  }

  async #checkAdopted(): Promise<void> {
    const adopted = [...this.#instances.values()].filter((i) => !i.child && !i.done);
    if (adopted.length === 0) {
      clearInterval(this.#poll);
      this.#poll = undefined;
      return;
    }
    for (const inst of adopted) {
      let alive: boolean;
      try {
        alive = (await cgroupProcs(inst.stored.cgroup)).includes(inst.stored.pid);
      } catch (err) {
        this.#log.warn('container_check_failed', { id: inst.stored.id, cgroup: inst.stored.cgroup, error: err });
        continue;
      }
      if (alive || inst.done) continue;
      const s = inst.sentSignal;
      this.#finished(inst, s !== undefined ? { exitCode: 128 + s, signal: s, finishedAt: Date.now() } : { exitCode: UNKNOWN_EXIT_CODE, finishedAt: Date.now(), reason: 'Unknown' });
    }
  }

  /** An instance ended: recorded, what it left in its cgroup killed and the cgroup removed, then reported once. */
  #finished(inst: Instance, exit: StoredExit): void {
    if (inst.done || this.#closed) return;
    inst.done = true;
    clearTimeout(inst.killTimer);
    const { stored, uid } = inst;
    stored.exit = exit;
    this.#save();
    void removeCgroup(stored.cgroup)
      .catch((err: unknown) => this.#log.warn('container_cgroup_remove_failed', { cgroup: stored.cgroup, error: err }))
      .finally(() => {
        this.#instances.delete(stored.id);
        const event: ContainerExit = { uid, container: stored.name, id: stored.id, ...exit };
        for (const l of this.#listeners) l(event);
        inst.resolveExited();
      });
  }

  /**
   * Signals the container's main process, as containerd signals a task's
   * init (tini here, which forwards to its child, the main process): not
   * every process of the container, so a main process that stops its own
   * children in order on SIGTERM (the agent's bpftool readers) gets to.
   */
  #signalMain(inst: Instance, signal: NodeJS.Signals): void {
    inst.sentSignal = signalNumber(signal);
    try {
      process.kill(inst.stored.pid, signal);
    } catch {
      // exited meanwhile
    }
  }

  #kill(inst: Instance): void {
    if (inst.done) return;
    inst.sentSignal = signalNumber('SIGKILL');
    killCgroup(inst.stored.cgroup).catch((err: unknown) => this.#log.error('container_kill_failed', { id: inst.stored.id, cgroup: inst.stored.cgroup, error: err }));
  }

  /** Removes the pod's cgroup (with whatever still runs in it), namespace and volumes, and frees its addresses. */
  async #teardown(stored: StoredPod): Promise<void> {
    if (stored.ownNetns) {
      await runChainedPlugins(this.#o.sandbox, this.#o.node, containerRunStaging(this.#o.runDir), 'DEL', stored)
        .catch((err: unknown) => this.#log.warn('cni_del_failed', { pod: `${stored.namespace}/${stored.name}`, uid: stored.uid, error: (err as Error).message }));
    }
    await removeCgroup(stored.cgroup);
    if (stored.ownNetns) await deleteNetns(stored.netns);
    await rm(kubeletPodDir(this.#o.runDir, stored.uid), { recursive: true, force: true });
    this.#pods.delete(stored.uid);
    this.#save();
    this.#log.info('pod_sandbox_removed', { pod: `${stored.namespace}/${stored.name}`, uid: stored.uid, ips: stored.ips });
  }

  /** A pod cgroup (and namespace) the state does not record: removed all the same. */
  async #removeUnrecorded(uid: string): Promise<void> {
    for (const cg of await listPodCgroups(this.#o.node.cgroup, this.#o.node.cgroupDriver)) if (cg.uid === uid) await removeCgroup(cg.dir);
    // The name holds only the UID's start: never one a recorded pod uses.
    const netns = podNetns(this.#o.sandbox, uid);
    if (![...this.#pods.values()].some((p) => p.netns === netns)) await deleteNetns(netns);
    await rm(kubeletPodDir(this.#o.runDir, uid), { recursive: true, force: true });
  }
}

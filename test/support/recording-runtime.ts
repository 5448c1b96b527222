// An in-memory PodRuntime for the kubelet's tests: it records every call,
// hands out pod IPs from a CIDR, "runs" containers as entries that exit when
// the test says so (or when stopped), and answers exec from a handler the
// test sets. The kubelet's own logic is what these tests exercise; the real
// runtime is the sandbox's.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ContainerExit, ContainerStarted, ExecResult, PodRuntime, PodSandboxInfo, RuntimeContainer, RuntimePod } from '../../sandbox/kubelet/runtime.ts';

interface HeldPod {
  uid: string;
  name: string;
  ips: string[];
  containers: Map<string, RuntimeContainer>;
}

export type ExecHandler = (uid: string, container: string, argv: readonly string[]) => ExecResult | Promise<ExecResult>;

export class RecordingRuntime implements PodRuntime {
  readonly name = 'recording';
  /** Every call, e.g. "runPodSandbox default/web", "startContainer default/web/app", "stopPodSandbox default/web 30". */
  readonly calls: string[] = [];
  readonly #pods = new Map<string, HeldPod>();
  readonly #listeners = new Set<(exit: ContainerExit) => void>();
  readonly #now: () => number;
  readonly #ipBase: string;
  #nextHost = 2;
  #nextId = 0;
  /** Answers exec (probes); default: exit 0. */
  execHandler: ExecHandler = () => ({ exitCode: 0, output: '' });
  /** Containers (by name) whose start fails with this message. */
  readonly startFailures = new Map<string, string>();

  /** `ipBase` like "10.244.1": pods get .2, .3, … */
  constructor(options: { now?: () => number; ipBase?: string } = {}) {
    this.#now = options.now ?? Date.now;
    this.#ipBase = options.ipBase ?? '10.244.1';
  }

  /** Calls whose text starts with `prefix`. */
  callsOf(prefix: string): string[] {
    return this.calls.filter((c) => c.startsWith(prefix));
  }

  /** The pod as the runtime holds it, by its name. */
  podNamed(name: string): { uid: string; ips: string[]; containers: RuntimeContainer[] } | undefined {
    const held = [...this.#pods.values()].find((p) => p.name === name);
    return held && { uid: held.uid, ips: held.ips, containers: [...held.containers.values()] };
  }

  get podCount(): number {
    return this.#pods.size;
  }

  /** Makes a running container exit, as its process ending would. */
  exit(uid: string, container: string, exitCode: number, signal?: number): void {
    const c = this.#pods.get(uid)?.containers.get(container);
    if (!c || c.exit) throw new Error(`container ${container} of pod ${uid} is not running`);
    const finishedAt = this.#now();
    c.exit = { exitCode, finishedAt, ...(signal !== undefined ? { signal } : {}) };
    for (const l of this.#listeners) l({ uid, container, id: c.id, exitCode, finishedAt, ...(signal !== undefined ? { signal } : {}) });
  }

  /** Pretends a previous kubelet started `pod` (for adoption tests): its containers run. */
  seed(pod: RuntimePod, name: string): void {
    this.#pods.set(pod.uid, { uid: pod.uid, name, ips: pod.ips, containers: new Map(pod.containers.map((c) => [c.name, { ...c }])) });
  }

  async listPods(): Promise<RuntimePod[]> {
    this.calls.push('listPods');
    return [...this.#pods.values()].map((p) => ({ uid: p.uid, ips: p.ips, containers: [...p.containers.values()].map((c) => ({ ...c })) }));
  }

  async runPodSandbox(pod: V1Pod): Promise<PodSandboxInfo> {
    const uid = pod.metadata!.uid!;
    const name = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
    this.calls.push(`runPodSandbox ${name}`);
    let held = this.#pods.get(uid);
    if (!held) {
      held = { uid, name, ips: [`${this.#ipBase}.${this.#nextHost++}`], containers: new Map() };
      this.#pods.set(uid, held);
    }
    return { ips: held.ips };
  }

  async startContainer(pod: V1Pod, container: V1Container): Promise<ContainerStarted> {
    const uid = pod.metadata!.uid!;
    const held = this.#pods.get(uid);
    this.calls.push(`startContainer ${held?.name ?? uid}/${container.name}`);
    if (!held) throw new Error(`pod ${uid} has no sandbox`);
    const failure = this.startFailures.get(container.name);
    if (failure) throw new Error(failure);
    const started = { id: `c${++this.#nextId}`, startedAt: this.#now() };
    held.containers.set(container.name, { name: container.name, ...started });
    return started;
  }

  async stopContainer(uid: string, container: string, gracePeriodSeconds: number): Promise<void> {
    this.calls.push(`stopContainer ${this.#pods.get(uid)?.name ?? uid}/${container} ${gracePeriodSeconds}`);
    const c = this.#pods.get(uid)?.containers.get(container);
    if (c && !c.exit) this.exit(uid, container, 143, 15);
  }

  async stopPodSandbox(uid: string, gracePeriodSeconds: number): Promise<void> {
    const held = this.#pods.get(uid);
    this.calls.push(`stopPodSandbox ${held?.name ?? uid} ${gracePeriodSeconds}`);
    if (!held) return;
    for (const c of held.containers.values()) if (!c.exit) this.exit(uid, c.name, 143, 15);
    this.#pods.delete(uid);
  }

  async exec(uid: string, container: string, argv: readonly string[], signal: AbortSignal): Promise<ExecResult> {
    if (signal.aborted) return { exitCode: 137, output: 'aborted' };
    return this.execHandler(uid, container, argv);
  }

  onContainerExit(listener: (exit: ContainerExit) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

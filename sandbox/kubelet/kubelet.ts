// The sandbox's kubelet: registers its Node and keeps it Ready, watches the
// pods bound to it, runs each through a PodWorker on the injected runtime
// with the pod's volumes from its volume manager (volumes.ts),
// reports their status, and deletes a deleted pod's object once its
// containers stopped. Pods the runtime already runs when it starts (a
// kubelet restart) are adopted, not started again.
import { CoordinationV1Api, CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { ConfigError } from '../../lib/core/errors.ts';
import { silentLogger, type Logger } from '../../lib/core/log.ts';
import { podUidProblem } from '../../lib/cluster/cgroup-layout.ts';
import { RetryDelay } from './backoff.ts';
import { Timer } from './clock.ts';
import { realClock, type Clock } from '../../lib/core/clock.ts';
import { describeError, MERGE_PATCH, statusCodeOf } from '../../lib/cluster/sources/kube-client.ts';
import { checkNodeConfig, NodeRegistrar, type NodeConfig, type NodeHealth } from './node.ts';
import { NodePodInformer, type PodInformerHealth } from './pod-informer.ts';
import { buildPodStatus } from './pod-status.ts';
import { PodWorker, type PodWorkerDeps } from './pod-worker.ts';
import type { ContainerExit, PodRuntime, RuntimePod } from './runtime.ts';
import { VolumeManager } from './volumes.ts';

/** kubelet's minimum grace for a pod it finds running without an API object. */
const ORPHAN_GRACE_SECONDS = 2;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export interface KubeletOptions {
  /** The kubelet's own credentials (system:node:<name> in system:nodes), so that the Node authorizer applies. */
  kubeConfig: KubeConfig;
  runtime: PodRuntime;
  node: NodeConfig;
  clock?: Clock;
  log?: Logger;
  /** Probes leave from these node addresses (the node's side of the pod network); unset, the kernel picks. */
  probeSourceIp4?: string;
  probeSourceIp6?: string;
  leaseRenewIntervalMs?: number;
  statusCheckIntervalMs?: number;
  statusReportIntervalMs?: number;
  /** How often ConfigMap, Secret and downward API volumes are brought up to date (volumes.ts). */
  volumeResyncIntervalMs?: number;
}

export interface KubeletHealth {
  node: NodeHealth;
  pods: PodInformerHealth;
  /** Pods this kubelet runs or is stopping. */
  podCount: number;
}

/** Per pod: what was last sent, and the one patch in flight. */
interface StatusSync {
  sent?: string;
  inFlight: boolean;
  dirty: boolean;
  retry: Timer;
  retryDelay: RetryDelay;
  /** Stopped after a deletion: delete the object once the final status is out. */
  final: boolean;
  deleting: boolean;
}

const podKey = (pod: V1Pod): string => `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;

export class Kubelet {
  readonly #o: KubeletOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #core: CoreV1Api;
  readonly #registrar: NodeRegistrar;
  readonly #informer: NodePodInformer;
  /** Unset when the runtime has no place for volumes (the in-memory test runtime). */
  readonly #volumes: VolumeManager | undefined;
  readonly #workers = new Map<string, PodWorker>();
  /** namespace/name → UID of the pod the API holds under that name. */
  readonly #byName = new Map<string, string>();
  readonly #status = new Map<string, StatusSync>();
  /** Pods the runtime ran when this kubelet started, until the API shows them (or the first list shows they are gone). */
  readonly #adoptable = new Map<string, RuntimePod>();
  /** Exits of adoptable pods that arrived before their worker. */
  readonly #earlyExits = new Map<string, ContainerExit[]>();
  #unsubscribe: (() => void) | undefined;
  #synced = false;
  #onSynced: (() => void) | undefined;
  #stopped = false;

  constructor(options: KubeletOptions) {
    const problem = checkNodeConfig(options.node);
    if (problem) throw new ConfigError(`kubelet: ${problem}`);
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? silentLogger;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#registrar = new NodeRegistrar({
      core: this.#core,
      coordination: options.kubeConfig.makeApiClient(CoordinationV1Api),
      config: options.node,
      clock: this.#clock,
      log: this.#log,
      ...(options.leaseRenewIntervalMs !== undefined ? { leaseRenewIntervalMs: options.leaseRenewIntervalMs } : {}),
      ...(options.statusCheckIntervalMs !== undefined ? { statusCheckIntervalMs: options.statusCheckIntervalMs } : {}),
      ...(options.statusReportIntervalMs !== undefined ? { statusReportIntervalMs: options.statusReportIntervalMs } : {}),
    });
    const runtime = options.runtime;
    this.#volumes = runtime.podVolumesDir ? new VolumeManager({
      core: this.#core, clock: this.#clock, log: this.#log,
      dirOf: (pod) => runtime.podVolumesDir!(pod),
      ...(runtime.nodeHostPath ? { nodePaths: (path: string) => runtime.nodeHostPath!(path) } : {}),
      ...(options.volumeResyncIntervalMs !== undefined ? { resyncIntervalMs: options.volumeResyncIntervalMs } : {}),
    }) : undefined;
    this.#informer = new NodePodInformer(options.kubeConfig, options.node.name, {
      upsert: (pod) => this.#upsert(pod),
      remove: (pod) => this.#remove(pod),
      synced: () => this.#firstSync(),
    }, this.#log);
  }

  get health(): KubeletHealth {
    return { node: { ...this.#registrar.health }, pods: { ...this.#informer.health }, podCount: this.#workers.size };
  }

  /** Resolves once the Node is registered and the pods bound to it were listed and taken over. */
  async start(): Promise<void> {
    this.#unsubscribe = this.#o.runtime.onContainerExit((exit) => this.#exit(exit));
    for (const pod of await this.#o.runtime.listPods()) this.#adoptable.set(pod.uid, pod);
    await this.#registrar.start();
    if (this.#stopped) return;
    const synced = new Promise<void>((resolve) => (this.#onSynced = resolve));
    this.#informer.start();
    await synced;
  }

  /** Stops watching and reporting; the pods keep running (a restarted kubelet adopts them). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#onSynced?.();
    this.#unsubscribe?.();
    this.#registrar.stop();
    await this.#informer.stop();
    for (const w of this.#workers.values()) w.detach();
    this.#volumes?.stop();
    for (const s of this.#status.values()) s.retry.cancel();
  }

  #deps(): PodWorkerDeps {
    return {
      runtime: this.#o.runtime,
      ...(this.#volumes ? { volumes: this.#volumes } : {}),
      clock: this.#clock,
      log: this.#log,
      hostIps: this.#o.node.addresses,
      ...(this.#o.probeSourceIp4 ? { probeSourceIp4: this.#o.probeSourceIp4 } : {}),
      ...(this.#o.probeSourceIp6 ? { probeSourceIp6: this.#o.probeSourceIp6 } : {}),
      changed: (w: PodWorker) => this.#changed(w),
      stopped: (w: PodWorker) => this.#workerStopped(w),
    };
  }

  #upsert(pod: V1Pod): void {
    if (this.#stopped) return;
    const uid = pod.metadata?.uid ?? '';
    const problem = podUidProblem(uid);
    if (problem) {
      this.#log.warn('pod_refused', { pod: podKey(pod), reason: problem });
      return;
    }
    if (pod.spec?.nodeName !== this.#o.node.name) return;
    const key = podKey(pod);
    const previous = this.#byName.get(key);
    // Recreated under the same name while the watch missed the delete: the old one is gone.
    if (previous !== undefined && previous !== uid) this.#workers.get(previous)?.remove();
    this.#byName.set(key, uid);
    const existing = this.#workers.get(uid);
    if (existing) return existing.update(pod);
    const worker = new PodWorker(pod, this.#deps());
    this.#workers.set(uid, worker);
    const adopted = this.#adoptable.get(uid);
    this.#adoptable.delete(uid);
    if (adopted) this.#log.info('pod_adopted', { pod: key, uid });
    else if (!pod.metadata?.deletionTimestamp && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed') this.#log.info('pod_starting', { pod: key, uid });
    worker.start(adopted);
    for (const exit of this.#earlyExits.get(uid) ?? []) worker.exited(exit);
    this.#earlyExits.delete(uid);
  }

  #remove(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid === undefined) return;
    if (this.#byName.get(podKey(pod)) === uid) this.#byName.delete(podKey(pod));
    const worker = this.#workers.get(uid);
    if (!worker) return;
    worker.remove();
    if (worker.stopped) this.#forget(worker);
  }

  #firstSync(): void {
    if (this.#synced) return;
    this.#synced = true;
    // Running, but the API no longer holds it (deleted while no kubelet watched).
    for (const [uid, pod] of this.#adoptable) {
      this.#log.info('orphan_pod_stopping', { uid });
      this.#o.runtime.stopPodSandbox(pod.uid, ORPHAN_GRACE_SECONDS).catch((err: unknown) => this.#log.error('orphan_pod_stop_failed', { uid, error: err }));
    }
    this.#adoptable.clear();
    this.#earlyExits.clear();
    this.#onSynced?.();
  }

  #exit(exit: ContainerExit): void {
    const worker = this.#workers.get(exit.uid);
    if (worker) return worker.exited(exit);
    if (!this.#synced && this.#adoptable.has(exit.uid)) this.#earlyExits.set(exit.uid, [...(this.#earlyExits.get(exit.uid) ?? []), exit]);
  }

  #forget(worker: PodWorker): void {
    this.#workers.delete(worker.uid);
    this.#status.get(worker.uid)?.retry.cancel();
    this.#status.delete(worker.uid);
  }

  #sync(uid: string): StatusSync {
    let s = this.#status.get(uid);
    if (!s) {
      s = { inFlight: false, dirty: false, retry: new Timer(this.#clock), retryDelay: new RetryDelay(RETRY_MIN_MS, RETRY_MAX_MS), final: false, deleting: false };
      this.#status.set(uid, s);
    }
    return s;
  }

  #changed(worker: PodWorker): void {
    if (this.#stopped || worker.gone || worker.quiet) return;
    const s = this.#sync(worker.uid);
    if (s.deleting) return;
    s.dirty = true;
    if (!s.inFlight && !s.retry.armed) void this.#flush(worker, s);
  }

  #workerStopped(worker: PodWorker): void {
    if (worker.gone) return this.#forget(worker);
    const s = this.#sync(worker.uid);
    s.final = true;
    if (worker.quiet) return void this.#deletePod(worker, s);
    this.#changed(worker);
  }

  /** Sends the pod's status until what was sent is current; one patch at a time, retried with backoff. */
  async #flush(worker: PodWorker, s: StatusSync): Promise<void> {
    s.inFlight = true;
    while (s.dirty && !worker.gone && !this.#stopped) {
      s.dirty = false;
      const status = buildPodStatus(worker.view, this.#clock.now());
      const json = JSON.stringify(status);
      if (json === s.sent) continue;
      const { name, namespace } = worker.pod.metadata!;
      try {
        // The UID makes it a precondition: a pod recreated under the name is not touched.
        const pod = await this.#core.patchNamespacedPodStatus({ name: name!, namespace: namespace!, body: { metadata: { uid: worker.uid }, status } }, MERGE_PATCH);
        s.sent = json;
        s.retryDelay.reset();
        worker.update(pod);
      } catch (err) {
        const code = statusCodeOf(err);
        if (code === 404 || code === 409) {
          this.#log.info('pod_gone', { pod: `${namespace}/${name}`, uid: worker.uid });
          worker.remove();
          break;
        }
        this.#log.warn('pod_status_failed', { pod: `${namespace}/${name}`, uid: worker.uid, error: describeError(err), retryInMs: s.retryDelay.ms });
        s.dirty = true;
        s.retry.arm(() => void this.#flush(worker, s), s.retryDelay.next());
        break;
      }
    }
    s.inFlight = false;
    if (s.final && !s.dirty && !s.retry.armed && !worker.gone) void this.#deletePod(worker, s);
  }

  /** The last step of a deletion: remove the object now that nothing of it runs (grace 0, this UID only). */
  async #deletePod(worker: PodWorker, s: StatusSync): Promise<void> {
    if (s.deleting || this.#stopped) return;
    s.deleting = true;
    const { name, namespace } = worker.pod.metadata!;
    try {
      await this.#core.deleteNamespacedPod({ name: name!, namespace: namespace!, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: worker.uid } } });
      this.#log.info('pod_deleted', { pod: `${namespace}/${name}`, uid: worker.uid });
    } catch (err) {
      const code = statusCodeOf(err);
      if (code !== 404 && code !== 409) {
        this.#log.warn('pod_delete_failed', { pod: `${namespace}/${name}`, uid: worker.uid, error: describeError(err), retryInMs: s.retryDelay.ms });
        s.deleting = false;
        s.retry.arm(() => void this.#deletePod(worker, s), s.retryDelay.next());
        return;
      }
    }
    // Nothing more to report; the informer's delete event forgets the worker.
    worker.gone = true;
  }
}

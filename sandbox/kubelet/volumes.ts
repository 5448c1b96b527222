// The kubelet's volume manager: before a pod's containers start it
// materialises the pod's volumes in the directory the runtime gives it
// (volume-sources.ts says what each kind is), then keeps their content
// current for as long as the pod runs: ServiceAccount tokens are requested
// again when due (service-account-token.ts), and ConfigMaps, Secrets and the
// downward API are read again on a period, as kubelet's TTL-based ConfigMap
// manager does (one GET per referenced object and period, so the load is
// bounded by the pods on the node). Each volume is rewritten only when its
// content changed, atomically (atomic-writer.ts). It also turns a
// container's volumeMounts into the runtime's mounts.
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreV1Api, V1ConfigMap, V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { Clock } from '../../lib/core/clock.ts';
import type { Logger } from '../../lib/core/log.ts';
import { describeError, statusCodeOf } from '../../lib/cluster/sources/kube-client.ts';
import { writePayload } from './atomic-writer.ts';
import { RetryDelay } from './backoff.ts';
import { Timer } from './clock.ts';
import type { ContainerMount } from './runtime.ts';
import { requestBoundToken, type BoundToken, type BoundTokenRequest } from './service-account-token.ts';
import { planVolume, VolumeError, type NodePaths, type SourceReader, type VolumePlan } from './volume-sources.ts';

/** kubelet's --sync-frequency: how often ConfigMap, Secret and downward API volumes are brought up to date. */
export const VOLUME_RESYNC_INTERVAL_MS = 60_000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

/** What a PodWorker asks of the volume manager. */
export interface PodVolumes {
  /** Materialises the pod's volumes and keeps them current; idempotent; rejects with what is wrong (retried by the caller). */
  setUp(pod: V1Pod): Promise<void>;
  /** A newer version of the pod: the downward API files follow it on the next resync. */
  update(pod: V1Pod): void;
  /** The runtime's mounts for `container`, once setUp resolved; throws VolumeError for a volumeMount the sandbox cannot make. */
  mountsFor(pod: V1Pod, container: V1Container): ContainerMount[];
  /** Stops keeping the pod's volumes current (its sandbox, which holds them, is gone). */
  tearDown(uid: string): void;
}

export interface VolumeManagerOptions {
  /** With the node's credentials. */
  core: CoreV1Api;
  clock: Clock;
  log: Logger;
  /** The runtime's directory for the pod's volumes (PodRuntime.podVolumesDir). */
  dirOf: (pod: V1Pod) => string;
  /** Where the node's own paths are (PodRuntime.nodeHostPath); absent: hostPath volumes are refused. */
  nodePaths?: NodePaths;
  resyncIntervalMs?: number;
}

const podRef = (pod: V1Pod): string => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

/** Undefined for a 404: the sources' `optional` decides what that means. */
async function readOptional<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (statusCodeOf(err) === 404) return undefined;
    throw err;
  }
}

/** One pod's volumes, kept current by one timer. */
class PodVolumeSet {
  pod: V1Pod;
  readonly plans: ReadonlyMap<string, VolumePlan>;
  ready: Promise<void> = Promise.resolve();
  readonly #o: VolumeManagerOptions;
  readonly #timer: Timer;
  readonly #retry = new RetryDelay(RETRY_MIN_MS, RETRY_MAX_MS);
  readonly #tokens = new Map<string, BoundToken>();
  #stopped = false;

  /** Throws VolumeError for a volume the sandbox cannot set up. */
  constructor(pod: V1Pod, o: VolumeManagerOptions) {
    this.pod = pod;
    this.#o = o;
    this.#timer = new Timer(o.clock);
    const dir = o.dirOf(pod);
    this.plans = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, planVolume(v, join(dir, v.name), o.nodePaths)]));
  }

  /** Makes every directory and writes every volume; rejects with the first failure. */
  async start(): Promise<void> {
    for (const plan of this.plans.values()) {
      if (plan.prepare) {
        await plan.prepare();
        continue;
      }
      await mkdir(plan.hostPath, { recursive: true, mode: 0o755 });
      if (plan.worldWritable) await chmod(plan.hostPath, 0o777);
    }
    await this.#sync();
    this.#schedule(false);
  }

  stop(): void {
    this.#stopped = true;
    this.#timer.cancel();
  }

  readonly #reader: SourceReader = {
    configMap: (namespace, name) => readOptional<V1ConfigMap>(() => this.#o.core.readNamespacedConfigMap({ namespace, name })),
    secret: (namespace, name) => readOptional<V1Secret>(() => this.#o.core.readNamespacedSecret({ namespace, name })),
    token: async (key, request) => this.#token(key, request),
  };

  async #token(key: string, request: BoundTokenRequest): Promise<string> {
    const now = this.#o.clock.now();
    const held = this.#tokens.get(key);
    if (held && held.refreshAt > now) return held.token;
    let fresh: BoundToken;
    try {
      fresh = await requestBoundToken(this.#o.core, request, now);
    } catch (err) {
      throw new VolumeError(`cannot get a token for ServiceAccount ${request.namespace}/${request.serviceAccount}: ${describeError(err)}`, { cause: err });
    }
    this.#tokens.set(key, fresh);
    return fresh.token;
  }

  /** Writes every volume whose content changed; each failure is named with its volume. */
  async #sync(): Promise<void> {
    for (const plan of this.plans.values()) {
      if (!plan.content || this.#stopped) continue;
      try {
        const payload = await plan.content(this.pod, this.#reader);
        if (!this.#stopped) await writePayload(plan.hostPath, payload, new Date(this.#o.clock.now()));
      } catch (err) {
        const reason = err instanceof VolumeError ? err.message : describeError(err);
        throw new VolumeError(`MountVolume.SetUp failed for volume "${plan.name}" (${plan.kind}): ${reason}`, { cause: err });
      }
    }
  }

  /** The next resync, or an earlier token refresh; after a failure, the retry's delay alone (a token past due would make it none). */
  #schedule(failed: boolean): void {
    if (this.#stopped || ![...this.plans.values()].some((p) => p.content)) return;
    if (failed) return this.#timer.arm(() => void this.#resync(), this.#retry.next());
    this.#retry.reset();
    const now = this.#o.clock.now();
    let next = this.#o.resyncIntervalMs ?? VOLUME_RESYNC_INTERVAL_MS;
    for (const t of this.#tokens.values()) next = Math.min(next, t.refreshAt - now);
    this.#timer.arm(() => void this.#resync(), next);
  }

  async #resync(): Promise<void> {
    let failed = false;
    try {
      await this.#sync();
    } catch (err) {
      failed = true;
      if (!this.#stopped) this.#o.log.warn('volume_refresh_failed', { pod: podRef(this.pod), error: (err as Error).message, retryInMs: this.#retry.ms });
    }
    this.#schedule(failed);
  }
}

export class VolumeManager implements PodVolumes {
  readonly #o: VolumeManagerOptions;
  readonly #pods = new Map<string, PodVolumeSet>();

  constructor(options: VolumeManagerOptions) {
    this.#o = options;
  }

  setUp(pod: V1Pod): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const held = this.#pods.get(uid);
    if (held) return held.ready;
    let set: PodVolumeSet;
    try {
      set = new PodVolumeSet(pod, this.#o);
    } catch (err) {
      return Promise.reject(err);
    }
    this.#pods.set(uid, set);
    set.ready = set.start().catch((err: unknown) => {
      // The next setUp starts over.
      set.stop();
      if (this.#pods.get(uid) === set) this.#pods.delete(uid);
      throw err;
    });
    return set.ready;
  }

  update(pod: V1Pod): void {
    const set = this.#pods.get(pod.metadata?.uid ?? '');
    if (set) set.pod = pod;
  }

  mountsFor(pod: V1Pod, container: V1Container): ContainerMount[] {
    const set = this.#pods.get(pod.metadata?.uid ?? '');
    const where = `container "${container.name}"`;
    const mounts: ContainerMount[] = [];
    for (const m of container.volumeMounts ?? []) {
      const at = `volumeMount "${m.name}" at ${m.mountPath}`;
      if (m.subPath || m.subPathExpr) throw new VolumeError(`${where}: ${at} uses subPath, which the sandbox does not support (it binds whole volumes); mount the volume and use the path inside it`);
      if (m.mountPropagation && m.mountPropagation !== 'None') throw new VolumeError(`${where}: ${at} asks for mountPropagation ${m.mountPropagation}; sandbox containers have private mount namespaces (None) only`);
      const plan = set?.plans.get(m.name);
      if (!plan) throw new VolumeError(`${where}: ${at} names a volume the pod's volumes were not set up with; delete the pod`);
      mounts.push({ containerPath: m.mountPath, hostPath: plan.hostPath, readOnly: plan.readOnly || m.readOnly === true });
    }
    return mounts;
  }

  tearDown(uid: string): void {
    this.#pods.get(uid)?.stop();
    this.#pods.delete(uid);
  }

  /** Stops keeping every pod's volumes current (the kubelet stops; the files stay for the next one). */
  stop(): void {
    for (const set of this.#pods.values()) set.stop();
    this.#pods.clear();
  }
}

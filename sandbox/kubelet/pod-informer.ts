// The pods bound to this node, as upserts and removals by UID: a
// KubeSource (lib/cluster/sources) that watches pods with the field selector
// `spec.nodeName=<node>` on list and watch alike (the Node authorizer refuses
// a node's unselected pod list), supervised and resumed as every meshlet
// watch is; this turns its whole-list updates into per-pod events.
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/core/log.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { KubeSource } from '../../lib/cluster/sources/kube.ts';
import { PODS } from '../../lib/cluster/sources/kube-kinds.ts';
import type { InformerStatus } from '../../lib/cluster/sources/source.ts';

export interface PodInformerEvents {
  /** A pod was added or changed (a pod recreated under the same name arrives here with a new UID). */
  upsert(pod: V1Pod): void;
  /** A pod left the API (its final state as last seen). */
  remove(pod: V1Pod): void;
  /** The first list was delivered. */
  synced(): void;
}

export type PodInformerHealth = Pick<InformerStatus, 'synced' | 'restarts' | 'lastError'>;

// The source hands over the API's objects as client-node decoded them: pods.
const asPod = (obj: KubeObject): V1Pod => obj as V1Pod;

export class NodePodInformer {
  readonly #source: KubeSource;
  readonly #events: PodInformerEvents;
  readonly #log: Logger;
  /** By UID: the last version delivered. */
  #known = new Map<string, V1Pod>();
  #synced = false;

  constructor(kubeConfig: KubeConfig, nodeName: string, events: PodInformerEvents, log: Logger) {
    this.#events = events;
    this.#log = log;
    this.#source = new KubeSource({ kubeconfig: kubeConfig, kinds: [PODS], podFieldSelector: `spec.nodeName=${nodeName}`, log });
  }

  get health(): PodInformerHealth {
    const informer = this.#source.status().informers?.[0];
    return { synced: this.#synced, restarts: informer?.restarts ?? 0, ...(informer?.lastError ? { lastError: informer.lastError } : {}) };
  }

  start(): void {
    this.#source.start(({ objects }) => this.#update(objects.map(asPod))).catch((err: unknown) => this.#log.error('pod_informer_failed', { error: err }));
  }

  async stop(): Promise<void> {
    this.#source.stop();
  }

  #update(pods: readonly V1Pod[]): void {
    const next = new Map<string, V1Pod>();
    for (const pod of pods) if (pod.metadata?.uid) next.set(pod.metadata.uid, pod);
    const previous = this.#known;
    this.#known = next;
    for (const [uid, pod] of previous) if (!next.has(uid)) this.#deliver(() => this.#events.remove(pod));
    for (const [uid, pod] of next) {
      if (previous.get(uid)?.metadata?.resourceVersion !== pod.metadata?.resourceVersion) this.#deliver(() => this.#events.upsert(pod));
    }
    if (!this.#synced) {
      this.#synced = true;
      this.#events.synced();
    }
  }

  #deliver(event: () => void): void {
    try {
      event();
    } catch (err) {
      // One bad pod must not stop the others' events.
      this.#log.error('pod_event_failed', { error: err });
    }
  }
}

// Where a caller's pod is now: the pod a ztunnel's token is bound to must
// still exist as the same pod (UID), not be terminating, and run on the node
// the token names; a waypoint's must also carry the controller's labels.
// Read from the pods the CA already watches (its cluster source's updates);
// a pod the watch does not hold as that UID, newer than the watch or since
// recreated, is read from the API server instead.
import type { KubeConfig } from '@kubernetes/client-node';
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { podNamesProblem } from '../lib/cluster/names.ts';
import { listCollection } from '../lib/cluster/sources/kube-client.ts';

export interface PodPlacement {
  uid: string;
  /** Undefined while the pod is not scheduled. */
  nodeName: string | undefined;
  /** spec.serviceAccountName, "default" when unset (as the API server defaults it). */
  serviceAccount: string;
  /** Why the pod no longer counts as running, or undefined: deletionTimestamp set, or phase Succeeded/Failed. */
  terminated: string | undefined;
  /** metadata.labels as the source holds them (shared, not copied: read, never written); absent: none. */
  labels?: Readonly<Record<string, unknown>>;
}

export interface PodLookup {
  /** The pod named `namespace/name` as it is now, or undefined when there is none; `uid` is the one the caller expects, for a cache to tell whether it is current. */
  find(namespace: string, name: string, uid: string): Promise<PodPlacement | undefined>;
}

const FINISHED_PHASES = new Set(['Succeeded', 'Failed']);

/** A raw Pod's placement, or undefined when its names cannot stand for an identity (the agent and the ztunnel refuse such a pod too). */
export function podPlacement(pod: KubeObject): { namespace: string; name: string; placement: PodPlacement } | undefined {
  const meta = isRecord(pod.metadata) ? pod.metadata : {};
  const spec = isRecord(pod.spec) ? pod.spec : {};
  const status = isRecord(pod.status) ? pod.status : {};
  const { namespace, name, uid } = meta;
  if (typeof namespace !== 'string' || typeof name !== 'string' || typeof uid !== 'string') return undefined;
  const terminated = typeof meta.deletionTimestamp === 'string' ? `terminating since ${meta.deletionTimestamp}`
    : typeof status.phase === 'string' && FINISHED_PHASES.has(status.phase) ? `finished (phase ${status.phase})`
      : undefined;
  const nodeName = typeof spec.nodeName === 'string' && spec.nodeName !== '' ? spec.nodeName : undefined;
  const serviceAccount = typeof spec.serviceAccountName === 'string' && spec.serviceAccountName !== '' ? spec.serviceAccountName : 'default';
  if (podNamesProblem({ namespace, name, serviceAccount, uid }) !== undefined) return undefined;
  const labels = isRecord(meta.labels) ? meta.labels : {};
  return { namespace, name, placement: { uid, nodeName, serviceAccount, terminated, labels } };
}

/** Asks the API server each time. A list by name, not a get: the CA's ClusterRole grants list and watch on pods, and nothing more. */
export class ApiPodLookup implements PodLookup {
  readonly #kc: KubeConfig;
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, timeoutMs = 10_000) {
    this.#kc = kc;
    this.#timeoutMs = timeoutMs;
  }

  async find(namespace: string, name: string): Promise<PodPlacement | undefined> {
    const listed = await listCollection(this.#kc, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`, {
      fieldSelector: `metadata.name=${name}`, maxObjects: 1, signal: AbortSignal.timeout(this.#timeoutMs),
    });
    const pod = listed.items[0];
    return pod === undefined ? undefined : podPlacement(pod)?.placement;
  }
}

/** The pods of the CA's cluster updates, asking `fallback` for any it does not hold as the expected UID. */
export class WatchedPodLookup implements PodLookup {
  readonly #fallback: PodLookup;
  #pods = new Map<string, PodPlacement>();

  constructor(fallback: PodLookup) {
    this.#fallback = fallback;
  }

  /** Every object the source holds (a full snapshot, as each ClusterUpdate is). */
  update(objects: readonly KubeObject[]): void {
    const pods = new Map<string, PodPlacement>();
    for (const obj of objects) {
      if (obj.kind !== 'Pod') continue;
      const found = podPlacement(obj);
      if (found) pods.set(`${found.namespace}/${found.name}`, found.placement);
    }
    this.#pods = pods;
  }

  async find(namespace: string, name: string, uid: string): Promise<PodPlacement | undefined> {
    const watched = this.#pods.get(`${namespace}/${name}`);
    return watched?.uid === uid ? watched : this.#fallback.find(namespace, name, uid);
  }
}

// Where raw cluster objects come from, for every process that reads them (the
// node agent, the CA, the sandbox's kubelets): the Kubernetes API through
// informers (kube.ts); unit tests hand in their own. Consumers convert and
// validate what a source hands them (ClusterState) and never see how it was
// read.
import type { KubeObject } from '../objects.ts';

/** Something the source could not turn into an object: rejected alone, the rest still applies. */
export interface UnreadableObject {
  /** Names it for the operator, e.g. "v1 Pod demo/web". */
  object: string;
  reason: string;
}

/**
 * Every object the source holds now, not only what changed: consumers diff
 * the converted result (ClusterState, the control protocol's deltas), so a
 * source never has to, and a consumer that missed an update loses nothing.
 */
export interface ClusterUpdate {
  objects: KubeObject[];
  unreadable: UnreadableObject[];
  /** When the newest change was made at the source (epoch ms), to tell how long it took to apply; absent when unknown. */
  changedAtMs?: number;
}

/** The health of one kind's list+watch (the Kubernetes source). */
export interface InformerStatus {
  /** apiVersion and kind, unique across groups: "v1 Pod", "security.istio.io/v1 AuthorizationPolicy". */
  kind: string;
  /** Listed at least once: its objects are in every update since. */
  synced: boolean;
  /** The API server does not serve the kind (404: its CRD is not installed); polled slowly, and does not hold back the source's sync. */
  missing?: true;
  /** Where the watch resumes after a cut; '' before the first list. */
  resourceVersion: string;
  /** What is wrong now; cleared once a list or watch goes through again. */
  lastError?: string;
  /** Times the list+watch started over: after an error, 410 Gone, or the server closing the watch (an API server restart, or its routine end of a watch every 30-60 min). Not client-node's own 30 s inactivity cut. */
  restarts: number;
  /** Full lists made: the first, and one per 410 Gone or fresh start. Climbing fast means a relist storm. */
  lists: number;
  /** Watch connections the server accepted: each resume after a cut is one. */
  watches: number;
  objects: number;
  /** e.g. "spec.hostNetwork=false" for the agent's pods, "spec.nodeName=node-1" for a kubelet's. */
  fieldSelector?: string;
}

/** What `status` shows of a source. A source with parts (one informer per kind) adds their health beside it. */
export interface ClusterSourceStatus {
  /** What it reads, as an operator would name it: "kubernetes". */
  name: string;
  synced: boolean;
  /** The API server's URL (the Kubernetes source). */
  server?: string;
  /** One per watched kind (the Kubernetes source). */
  informers?: InformerStatus[];
}

/**
 * Delivers a full snapshot, then one update per change (bursts may be
 * coalesced into one), until stop(). Updates are delivered one at a time, in
 * order; the consumer keeps the latest.
 */
export interface ClusterSource {
  /**
   * Settles once the source has made its first attempt: it has delivered the
   * initial snapshot (synced), or found nothing to read yet and delivers when
   * there is. Rejects only on a setup error that retrying cannot fix.
   */
  start(onUpdate: (update: ClusterUpdate) => void): Promise<void>;
  /** No update is delivered afterwards. */
  stop(): void;
  /** The initial snapshot has been delivered: from here on consumers see the whole cluster. */
  readonly synced: boolean;
  status(): ClusterSourceStatus;
}

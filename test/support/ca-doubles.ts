// In-memory stand-ins for the CA's Kubernetes parts, for unit tests of the
// CA's own logic (what it signs, for whom, how it answers) through serveCa:
// callers known by their token, and a cluster source of pods the test sets.
import type { KubeObject } from '../../lib/cluster/objects.ts';
import type { ClusterSource, ClusterSourceStatus, ClusterUpdate } from '../../lib/cluster/sources/source.ts';
import { refusal, type Caller, type CallerAuthenticator, type Refusal } from '../../ca/caller.ts';

/** Callers by bearer token: the node each token speaks for; any other token is refused as invalid. */
export class TokenCallers implements CallerAuthenticator {
  readonly #nodes: Map<string, string>;
  /** Every token presented, in order. */
  readonly seen: string[] = [];

  constructor(nodeByToken: Record<string, string>) {
    this.#nodes = new Map(Object.entries(nodeByToken));
  }

  async authenticate(bearer: string): Promise<Caller | Refusal> {
    this.seen.push(bearer);
    const node = this.#nodes.get(bearer);
    return node === undefined ? refusal('invalid-token', 'the test knows no such token') : { node };
  }
}

/** Delivers its pods on start and on every set(), each a full snapshot as a real source sends. */
export class PodsSource implements ClusterSource {
  synced = false;
  #objects: KubeObject[];
  #onUpdate: ((update: ClusterUpdate) => void) | undefined;

  constructor(objects: KubeObject[]) {
    this.#objects = objects;
  }

  async start(onUpdate: (update: ClusterUpdate) => void): Promise<void> {
    this.#onUpdate = onUpdate;
    this.#deliver();
  }

  stop(): void {
    this.#onUpdate = undefined;
  }

  status(): ClusterSourceStatus {
    return { name: 'pods of the test', synced: this.synced };
  }

  set(objects: KubeObject[]): void {
    this.#objects = objects;
    this.#deliver();
  }

  #deliver(): void {
    if (!this.#onUpdate) return;
    this.synced = true;
    this.#onUpdate({ objects: this.#objects, unreadable: [] });
  }
}

/** A running pod of `serviceAccount` on `node`. */
export function runningPod(name: string, namespace: string, serviceAccount: string, node: string, ip: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, uid: `uid-${name}` },
    spec: { nodeName: node, serviceAccountName: serviceAccount, containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: ip },
  };
}

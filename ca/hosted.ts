// Which service accounts each node hosts, from the pods the CA watches: the
// CA signs an identity only for a node that runs a non-terminated pod of that
// namespace and service account (scheduled there, running or about to; as
// istiod's node authorization does), enrolled in the mesh or not.
import type { KubeObject } from '../lib/cluster/objects.ts';
import { podPlacement } from './caller-pods.ts';

export class HostedIdentities {
  #byNode: Map<string, Set<string>> | undefined;

  /** False until the first pods arrive. */
  get ready(): boolean {
    return this.#byNode !== undefined;
  }

  /** Every object the source holds (a full snapshot, as each ClusterUpdate is); only Pods count. */
  update(objects: readonly KubeObject[]): void {
    const byNode = new Map<string, Set<string>>();
    for (const obj of objects) {
      if (obj.kind !== 'Pod') continue;
      const found = podPlacement(obj);
      const node = found?.placement.nodeName;
      if (found === undefined || node === undefined || found.placement.terminated !== undefined) continue;
      let set = byNode.get(node);
      if (!set) byNode.set(node, (set = new Set()));
      set.add(`${found.namespace}/${found.placement.serviceAccount}`);
    }
    this.#byNode = byNode;
  }

  hosts(node: string, namespace: string, serviceAccount: string): boolean {
    return this.#byNode?.get(node)?.has(`${namespace}/${serviceAccount}`) ?? false;
  }
}

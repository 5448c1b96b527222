// Which service accounts each node hosts, from cluster state: the CA signs an
// identity only for a node that runs a pod with that namespace and service
// account (any running pod, enrolled or not, as the state file lists it).
import type { MeshState } from '../lib/mesh/kinds.ts';

export class HostedIdentities {
  #byNode: Map<string, Set<string>> | undefined;

  /** False until the first cluster state arrives. */
  get ready(): boolean {
    return this.#byNode !== undefined;
  }

  update(state: MeshState): void {
    const byNode = new Map<string, Set<string>>();
    for (const w of state.workloads) {
      let set = byNode.get(w.node);
      if (!set) byNode.set(w.node, (set = new Set()));
      set.add(`${w.namespace}/${w.serviceAccount}`);
    }
    this.#byNode = byNode;
  }

  hosts(node: string, namespace: string, serviceAccount: string): boolean {
    return this.#byNode?.get(node)?.has(`${namespace}/${serviceAccount}`) ?? false;
  }
}

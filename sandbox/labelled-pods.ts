// The sandbox's pods that a label selector picks, as the API server holds
// them, with where each lives on this host (its node and network
// namespace): how the CLI finds the pods whose loopback it reads (the
// waypoints' admin APIs).
import { openCluster } from './cluster-client.ts';
import { placePod } from './pods.ts';

export interface SandboxPodPlace {
  namespace: string;
  name: string;
  node: string;
  /** Its network namespace (`ip netns`). */
  netns: string;
  labels: Record<string, string>;
  /** Kubernetes' pod phase: Pending, Running, … */
  phase?: string;
}

/** Terminated pods run nothing; their namespace is gone or going. */
const DONE = new Set(['Succeeded', 'Failed']);

/** Scheduled, not terminated pods that `labelSelector` (the API server's syntax) selects, in every namespace. */
export async function podsByLabel(sandbox: string, labelSelector: string): Promise<SandboxPodPlace[]> {
  const cluster = await openCluster(sandbox);
  const list = await cluster.core.listPodForAllNamespaces({ labelSelector });
  const pods: SandboxPodPlace[] = [];
  for (const pod of list.items) {
    const node = cluster.info.nodes.find((n) => n.name === pod.spec?.nodeName);
    const meta = pod.metadata;
    if (!node || !meta?.uid || !meta.name || DONE.has(pod.status?.phase ?? '')) continue;
    pods.push({
      namespace: meta.namespace ?? 'default',
      name: meta.name,
      node: node.name,
      netns: placePod(sandbox, node, pod).netns,
      labels: meta.labels ?? {},
      ...(pod.status?.phase ? { phase: pod.status.phase } : {}),
    });
  }
  return pods.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

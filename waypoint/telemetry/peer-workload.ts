// A mesh workload as request telemetry names it, with Istio's fallbacks for
// the canonical service and revision, so the labels match what an Istio
// waypoint reports for the same pod.
import { identityOf } from '../../lib/identity/mesh-identity.ts';
import { formatSpiffeId } from '../../lib/identity/spiffe.ts';
import type { Workload } from '../../lib/mesh/model.ts';
import type { PeerWorkload } from './request-record.ts';

/** Istio's default cluster ID. */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';

/** Istio's order: its own label, then the Kubernetes recommended one, then the plain one. */
const firstLabel = (labels: Record<string, string>, names: readonly string[]): string | undefined => {
  for (const n of names) {
    const v = labels[n];
    if (v) return v;
  }
  return undefined;
};

/**
 * Per workload snapshot (a changed pod is a new Workload object), so a
 * request does not rebuild its peers' names: made once, shared read-only by
 * every request's record.
 */
const made = new WeakMap<Workload, { trustDomain: string; cluster: string; peer: PeerWorkload }>();

export function peerWorkloadOf(w: Workload, trustDomain: string, cluster = DEFAULT_CLUSTER_ID): PeerWorkload {
  const hit = made.get(w);
  if (hit && hit.trustDomain === trustDomain && hit.cluster === cluster) return hit.peer;
  const peer = makePeerWorkload(w, trustDomain, cluster);
  made.set(w, { trustDomain, cluster, peer });
  return peer;
}

function makePeerWorkload(w: Workload, trustDomain: string, cluster: string): PeerWorkload {
  const app = w.labels.app;
  const version = w.labels.version;
  return {
    workload: w.name,
    namespace: w.namespace,
    principal: formatSpiffeId(identityOf(w, trustDomain)),
    ...(app ? { app } : {}),
    ...(version ? { version } : {}),
    canonicalService: firstLabel(w.labels, ['service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app']) ?? w.name,
    canonicalRevision: firstLabel(w.labels, ['service.istio.io/canonical-revision', 'app.kubernetes.io/version', 'version']) ?? 'latest',
    cluster,
  };
}

// The ztunnel's side of workload identity: which SPIFFE IDs this node must
// hold certificates for, and how a workload maps to its ID.
import { formatSpiffeId, workloadIdentity, type SpiffeId } from './spiffe.ts';
import type { CertificateStore } from './store.ts';
import type { Workload } from '../mesh/model.ts';
import type { StateView } from '../mesh/state.ts';

export interface MeshIdentity {
  trustDomain: string;
  certs: CertificateStore;
}

export const identityOf = (w: Workload, trustDomain: string): SpiffeId => workloadIdentity(w, trustDomain);

/** Identities of the enrolled pods on `node`: the certificates the node needs, requested ahead of their traffic. */
export function localIdentities(view: StateView, node: string, trustDomain: string): SpiffeId[] {
  const ids = new Map<string, SpiffeId>();
  for (const w of view.workloads.values()) {
    if (w.node === node && w.enrolled) ids.set(formatSpiffeId(identityOf(w, trustDomain)), identityOf(w, trustDomain));
  }
  return [...ids.values()];
}

// L4 authorization of one connection at the destination ztunnel, in Istio's
// order: a matching DENY denies; with no ALLOW policy on the workload the
// connection is allowed; a matching ALLOW allows; anything else is denied.
import { ipFamily, parseIdentity, stripSpiffe, type Connection } from './match.ts';
import type { PolicyStore } from './store.ts';
import type { AuthzDecision, AuthzRequest, WorkloadRef } from './types.ts';

export function authorize(store: PolicyStore, request: AuthzRequest): AuthzDecision {
  const c = connectionOf(request);
  if (typeof c === 'string') return { allowed: false, verdict: 'deny', reason: c };
  const { namespace, labels } = request.destination.workload;
  const { deny, allow } = store.authzFor(namespace);
  for (const p of deny) {
    if (!p.selects(labels) || !p.matches(c)) continue;
    const reason = p.failClosed === undefined ? `denied by DENY policy ${p.key}` : `denied by AuthorizationPolicy ${p.key}, which fails closed: it was ${p.failClosed}`;
    return { allowed: false, verdict: 'deny', policy: p.key, reason };
  }
  let selected = false;
  for (const p of allow) {
    if (!p.selects(labels)) continue;
    selected = true;
    if (p.matches(c)) return { allowed: true, verdict: 'allow', policy: p.key, reason: `allowed by ALLOW policy ${p.key}` };
  }
  return selected
    ? { allowed: false, verdict: 'deny', reason: 'no ALLOW policy for this workload matched' }
    : { allowed: true, verdict: 'allow', reason: 'no ALLOW policy applies to this workload' };
}

/** Whether any AuthorizationPolicy, ALLOW or DENY, applies to the workload; plaintext is admitted only when none does. */
export function selectsWorkload(store: PolicyStore, workload: WorkloadRef): boolean {
  const { deny, allow } = store.authzFor(workload.namespace);
  return deny.some((p) => p.selects(workload.labels)) || allow.some((p) => p.selects(workload.labels));
}

/** The rejected policies whose stand-ins apply to the workload (denying it, or making it STRICT), as "Kind namespace/name". */
export function failClosedFor(store: PolicyStore, workload: WorkloadRef): string[] {
  const found: string[] = [];
  for (const p of store.authzFor(workload.namespace).deny) if (p.failClosed !== undefined && p.selects(workload.labels)) found.push(`AuthorizationPolicy ${p.key}`);
  // The PeerAuthentication that decides the workload's mode, in effectiveMtlsMode's order (a stand-in is never UNSET).
  const { mesh, namespace, workloads } = store.peerAuthFor(workload.namespace);
  const decider = [workloads.find((p) => p.selects(workload.labels)), namespace, mesh].find((p) => p !== undefined && p.mode !== 'UNSET');
  if (decider?.failClosed !== undefined) found.push(`PeerAuthentication ${decider.key}`);
  return found;
}

/** Returns the reason to deny when the request cannot be checked at all. */
function connectionOf(request: AuthzRequest): Connection | string {
  const { source, destination } = request;
  const srcFamily = ipFamily(source.ip);
  const dstFamily = ipFamily(destination.ip);
  if (srcFamily === null) return `source address "${source.ip}" is not an IP address`;
  if (dstFamily === null) return `destination address "${destination.ip}" is not an IP address`;
  const principal = source.principal ? stripSpiffe(source.principal) : undefined;
  // The namespace counts only with an authenticated identity, as in Istio
  // (source namespaces "require mutual TLS"); the identity's own wins.
  const id = principal === undefined ? null : parseIdentity(principal);
  const namespace = principal === undefined ? undefined : (id?.namespace ?? source.namespace);
  return {
    srcIp: source.ip,
    srcFamily,
    dstIp: destination.ip,
    dstFamily,
    port: destination.port,
    principal,
    namespace,
    serviceAccount: id ? `${id.namespace}/${id.serviceAccount}` : undefined,
  };
}

// What a security policy meshlet rejected turns into: never nothing, which
// would widen access (a dropped ALLOW leaves its workloads allow-all, a
// dropped STRICT lets plaintext in). A rejected AuthorizationPolicy becomes a
// DENY of everything it would have covered, a rejected PeerAuthentication a
// STRICT one. What they cover is read from whatever of the object can still
// be read: its selector, else its whole namespace, else (in the root
// namespace, or with no readable namespace) the mesh.
import { isRecord, type KubeObject } from '../cluster/objects.ts';
import { objectNameProblem } from '../cluster/names.ts';
import { InvalidObjectError } from '../core/errors.ts';
import { bindsTargetRefs } from './authz-convert.ts';
import type { ConvertedPolicy } from './build.ts';
import { SECURITY_GROUP, selectorOf } from './fields.ts';
import { DEFAULT_ROOT_NAMESPACE, type PolicyOptions } from './types.ts';

/** Names a stand-in whose object has no usable name: the API server never sends one, but a stand-in must still have a key. */
const NO_NAME = '<no name>';
const NO_NAMESPACE = '<no namespace>';

const POLICY_KINDS = new Set(['AuthorizationPolicy', 'PeerAuthentication']);

/** Whether the object claims to be one of Istio's security policies, whatever else is wrong with it. */
export function isSecurityPolicy(obj: KubeObject): boolean {
  return typeof obj.apiVersion === 'string' && obj.apiVersion.startsWith(`${SECURITY_GROUP}/`) && typeof obj.kind === 'string' && POLICY_KINDS.has(obj.kind);
}

/** The selector's labels; undefined when it cannot be read (then the policy covers its whole namespace). */
function readableSelector(spec: unknown): Record<string, string> | null | undefined {
  if (spec === undefined || spec === null) return null;
  if (!isRecord(spec)) return undefined;
  try {
    return selectorOf(spec.selector, 'spec.selector', (reason) => {
      throw new InvalidObjectError('', reason);
    });
  } catch (err) {
    if (err instanceof InvalidObjectError) return undefined;
    throw err;
  }
}

function createdAtOf(meta: Record<string, unknown>): number {
  const t = typeof meta.creationTimestamp === 'string' ? Date.parse(meta.creationTimestamp) : NaN;
  return Number.isNaN(t) ? 0 : t;
}

/**
 * The stand-in for security policy `obj`, rejected for `reason`; null for an
 * object that is not a security policy, for an AUDIT policy, which only
 * marks requests and never decides one, so it has nothing to fail closed on,
 * and for a policy bound by targetRefs, whose stand-in is the waypoint's.
 *
 * Why a rejected (or unreadable) targetRefs policy still never widens access
 * without an L4 stand-in here: it is replaced by lib/l7's stand-in
 * (l7FailClosedPolicy), a DENY of every request to what can still be read of
 * its targets, else to every waypoint and service of its namespace (of the
 * mesh, from the root namespace). The waypoints deny every request through
 * them that it covers. The agent sends the same stand-in to the ztunnels as a
 * waypoint policy, so each workload behind a covered target that is bound to
 * a waypoint takes mesh traffic from that waypoint alone (waypoint_bypass,
 * lib/mesh/waypoints.ts) and no plaintext (the kernel's STRICT): no path
 * around the denying waypoint is left. A target no waypoint serves was
 * enforced nowhere even by the valid policy (Istio's semantics), so there is
 * nothing to widen. The L4 stand-in it had before, a DENY of its whole
 * namespace, denied what the policy never covered: every connection to every
 * workload there, for one waypoint's policy.
 */
export function failClosedPolicy(obj: KubeObject, reason: string, options: PolicyOptions = {}): ConvertedPolicy | null {
  if (!isSecurityPolicy(obj) || bindsTargetRefs(obj)) return null;
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const spec = obj.spec;
  if (obj.kind === 'AuthorizationPolicy' && isRecord(spec) && spec.action === 'AUDIT') return null;
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const rawNs = meta.namespace ?? 'default';
  const nsKnown = typeof rawNs === 'string' && objectNameProblem(rawNs, 'namespace') === undefined;
  const namespace = nsKnown ? rawNs : NO_NAMESPACE;
  const name = objectNameProblem(meta.name, 'name') === undefined ? (meta.name as string) : NO_NAME;
  const selector = readableSelector(spec);
  const matchLabels = selector ?? null;
  const meshWide = !nsKnown || namespace === root;
  const key = `${namespace}/${name}`;
  const why = `rejected: ${reason}`;
  if (obj.kind === 'AuthorizationPolicy') {
    return {
      kind: 'authorizationPolicies',
      // One rule without clauses matches every connection.
      value: { key, namespace, name, action: 'DENY', scope: { namespace: meshWide ? null : namespace, matchLabels }, rules: [{ clauses: [] }], warnings: [], failClosed: why },
    };
  }
  // Workload-level policies are per namespace: without a readable one, only the mesh level covers them all.
  const labels = nsKnown ? matchLabels : null;
  const level = labels ? 'workload' : meshWide ? 'mesh' : 'namespace';
  return {
    kind: 'peerAuthentications',
    value: { key, namespace, name, level, matchLabels: labels, mode: 'STRICT', portLevelMtls: [], createdAt: createdAtOf(meta), failClosed: why },
  };
}

/** What a stand-in does in place of its policy, for status. */
export function failClosedEffect(p: ConvertedPolicy): string {
  const scope = (ns: string | null, labels: Readonly<Record<string, string>> | null): string => {
    const who = labels ? `workloads labelled ${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')}` : 'every workload';
    return ns === null ? `${who} in every namespace` : `${who} in namespace ${ns}`;
  };
  if (p.kind === 'authorizationPolicies') {
    return `fails closed: denies every connection to ${scope(p.value.scope.namespace, p.value.scope.matchLabels)}`;
  }
  const v = p.value;
  const ns = v.level === 'mesh' ? null : v.namespace;
  return `fails closed: counts as STRICT for ${scope(ns, v.matchLabels)}`;
}

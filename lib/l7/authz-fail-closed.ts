// What a waypoint policy meshlet rejected turns into, as lib/policy/fail-closed.ts
// does for L4: never nothing. The stand-in DENYs every request to what the
// policy targeted, so a rejected ALLOW denies everything for its targets (a
// dropped ALLOW would leave them allow-all) and a rejected DENY everything it
// could have denied. Its targets are what can still be read of targetRefs;
// when they cannot be read, the whole namespace (its waypoints and
// services), or the mesh from the root namespace or without a namespace.
import { isRecord, type KubeObject } from '../cluster/objects.ts';
import { objectNameProblem } from '../cluster/names.ts';
import { InvalidObjectError } from '../core/errors.ts';
import { isSecurityPolicy } from '../policy/fail-closed.ts';
import { DEFAULT_ROOT_NAMESPACE, type PolicyOptions } from '../policy/types.ts';
import { targetOf, targetRefsOf } from './authz-convert.ts';
import type { L7AuthzPolicy, L7Target } from './authz-types.ts';

const NO_NAME = '<no name>';
const NO_NAMESPACE = '<no namespace>';

/** The readable targets; undefined when targetRefs cannot be read; null when the policy has none (it is the ztunnel's). */
function readableTargets(spec: unknown, namespace: string, root: string): L7Target[] | null | undefined {
  if (!isRecord(spec)) return spec === undefined || spec === null ? null : undefined;
  const fail = (reason: string): never => {
    throw new InvalidObjectError('', reason);
  };
  try {
    const refs = targetRefsOf(spec, fail);
    if (refs === null) return null;
    const targets: L7Target[] = [];
    for (const [i, ref] of refs.entries()) {
      try {
        targets.push(...targetOf(ref, `spec.targetRefs[${i}]`, namespace, root, fail));
      } catch (err) {
        // A ServiceEntry target is no request's through meshlet: nothing to cover. Any other unreadable target: cover the namespace.
        if (!(err instanceof InvalidObjectError)) throw err;
        if (!(ref.kind === 'ServiceEntry' && ref.group === 'networking.istio.io')) return undefined;
      }
    }
    return targets;
  } catch (err) {
    if (err instanceof InvalidObjectError) return undefined;
    throw err;
  }
}

/**
 * The stand-in for the waypoint policy `obj`, rejected for `reason`; null
 * when the object is not an AuthorizationPolicy, is an AUDIT policy (it
 * decides nothing), or binds no targetRefs (the ztunnel's stand-in covers it).
 */
export function l7FailClosedPolicy(obj: KubeObject, reason: string, options: PolicyOptions = {}): L7AuthzPolicy | null {
  if (!isSecurityPolicy(obj) || obj.kind !== 'AuthorizationPolicy') return null;
  const spec = obj.spec;
  if (isRecord(spec) && spec.action === 'AUDIT') return null;
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const rawNs = meta.namespace ?? 'default';
  const nsKnown = typeof rawNs === 'string' && objectNameProblem(rawNs, 'namespace') === undefined;
  const namespace = nsKnown ? rawNs : NO_NAMESPACE;
  const name = objectNameProblem(meta.name, 'name') === undefined ? (meta.name as string) : NO_NAME;
  const readable = readableTargets(spec, namespace, root);
  if (readable === null) return null;
  const targets: L7Target[] = readable ?? (!nsKnown || namespace === root ? [{ kind: 'mesh' }] : [{ kind: 'namespace', namespace }]);
  // One rule without clauses matches every request.
  return { key: `${namespace}/${name}`, namespace, name, action: 'DENY', targets, rules: [{ clauses: [] }], warnings: [], failClosed: `rejected: ${reason}` };
}

/** What a stand-in does in its policy's place, for status. */
export function l7FailClosedEffect(p: L7AuthzPolicy): string {
  const what = p.targets.map((t) => {
    switch (t.kind) {
      case 'gateway':
        return `through waypoint ${t.namespace}/${t.name}`;
      case 'service':
        return `to service ${t.namespace}/${t.name}`;
      case 'gateway_class':
        return `through every waypoint of class ${t.name}`;
      case 'namespace':
        return `through every waypoint and to every service in namespace ${t.namespace}`;
      case 'mesh':
        return 'through every waypoint';
    }
  });
  return what.length === 0 ? 'fails closed: it targets nothing meshlet serves' : `fails closed: denies every request ${what.join(', ')}`;
}

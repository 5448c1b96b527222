// Both phases of a policy update from raw cluster objects: convert each
// policy on its own (a bad one is rejected alone, with its reason), then
// index the good ones into a fresh store for the caller to swap in.
import { InvalidObjectError } from '../core/errors.ts';
import type { KubeObject } from '../cluster/objects.ts';
import { bindsTargetRefs, convertAuthorizationPolicy } from './authz-convert.ts';
import { SECURITY_GROUP } from './fields.ts';
import { convertPeerAuthentication } from './peerauth.ts';
import { PolicyStore } from './store.ts';
import type { AuthzPolicy, PeerAuthPolicy, PolicyOptions } from './types.ts';

/** Named by their mesh-state kind (lib/mesh/kinds.ts). */
export type ConvertedPolicy =
  | { kind: 'authorizationPolicies'; value: AuthzPolicy }
  | { kind: 'peerAuthentications'; value: PeerAuthPolicy };

export interface PolicyUpdate {
  store: PolicyStore;
  rejected: InvalidObjectError[];
}

/**
 * null for objects that are not Istio security policies the L4 engine
 * enforces: other objects, and AuthorizationPolicies bound by targetRefs,
 * which are the waypoint's. Throws InvalidObjectError for bad ones.
 */
export function convertPolicyObject(obj: KubeObject, options: PolicyOptions = {}): ConvertedPolicy | null {
  if (typeof obj.apiVersion !== 'string' || !obj.apiVersion.startsWith(`${SECURITY_GROUP}/`)) return null;
  if (obj.kind === 'AuthorizationPolicy') return bindsTargetRefs(obj) ? null : { kind: 'authorizationPolicies', value: convertAuthorizationPolicy(obj, options) };
  if (obj.kind === 'PeerAuthentication') return { kind: 'peerAuthentications', value: convertPeerAuthentication(obj, options) };
  return null;
}

/**
 * The policy engine on its own: rejected policies are reported and left out.
 * The agent's state (cluster/cluster-state.ts) puts a fail-closed stand-in in
 * their place instead (fail-closed.ts), so there they never widen access.
 */
export function compilePolicies(objects: readonly KubeObject[], options: PolicyOptions = {}): PolicyUpdate {
  const authz: AuthzPolicy[] = [];
  const peerAuth: PeerAuthPolicy[] = [];
  const rejected: InvalidObjectError[] = [];
  for (const obj of objects) {
    try {
      const converted = convertPolicyObject(obj, options);
      if (converted?.kind === 'authorizationPolicies') authz.push(converted.value);
      else if (converted?.kind === 'peerAuthentications') peerAuth.push(converted.value);
    } catch (err) {
      if (!(err instanceof InvalidObjectError)) throw err;
      rejected.push(err);
    }
  }
  return { store: new PolicyStore(authz, peerAuth), rejected };
}

// The L4 policy engine: Istio AuthorizationPolicy and PeerAuthentication,
// converted and indexed once per state change, checked per connection.
export { authorize, failClosedFor, selectsWorkload } from './authz-eval.ts';
export { bindsTargetRefs, convertAuthorizationPolicy } from './authz-convert.ts';
export { compilePolicies, convertPolicyObject, type ConvertedPolicy, type PolicyUpdate } from './build.ts';
export { convertPeerAuthentication, effectiveMtlsMode } from './peerauth.ts';
export { PolicyStore } from './store.ts';
export {
  DEFAULT_ROOT_NAMESPACE,
  type AuthzAction,
  type AuthzDecision,
  type AuthzPolicy,
  type AuthzRequest,
  type AuthzRule,
  type L4Match,
  type MtlsMode,
  type MtlsSetting,
  type PeerAuthPolicy,
  type PolicyOptions,
  type PolicyScope,
  type WorkloadRef,
} from './types.ts';
export { failClosedEffect, failClosedPolicy, isSecurityPolicy } from './fail-closed.ts';

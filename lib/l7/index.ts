// The waypoint's route side, pure: Istio and Gateway API resources converted
// one by one (convert.ts), compiled into a route table, DestinationRule
// policies and L7 authorization, then consulted per request. No I/O, no
// timers; chance comes from an injected random.
export { convertL7Object, convertL7Objects, type L7Config, type L7ConvertOptions, type L7Rejection, type L7Update } from './convert.ts';
export { convertVirtualService, type RouteConvertOptions } from './virtual-service.ts';
export { convertGRPCRoute, convertHTTPRoute } from './gateway-route.ts';
export { convertDestinationRule, OUTLIER_DEFAULTS, type ConvertedDestinationRule, type DestinationSubset, type PolicyLevel, type TrafficPolicyParts } from './destination-rule.ts';
export { DestinationRuleIndex, type DestinationRuleOptions } from './destination-rules.ts';
export { convertL7AuthorizationPolicy } from './authz-convert.ts';
export { l7FailClosedEffect, l7FailClosedPolicy } from './authz-fail-closed.ts';
export { evaluateL7Authz, L7AuthzSet } from './authz-eval.ts';
export type { HeaderRequirement, L7AuthzOptions, L7AuthzPolicy, L7Match, L7Rule, L7Target } from './authz-types.ts';
export { RouteTable, type CompiledEntry, type HostRoutes, type RouteRef, type RouteTableOptions, type TableNote } from './route-table.ts';
export { pickDestination, selectRoute, type FaultDecision, type NoRouteResult, type Random, type ResolvedBackend, type RouteMatchResult, type RouteSelection, type SelectedAction } from './select.ts';
export { applyRewrite, redirectLocation, rewritePath, shadowAuthority, type BoundPathRewrite, type BoundRedirect, type BoundRewrite } from './rewrite.ts';
export { applyHeaderOps, type HeaderMap } from './header-ops.ts';
export { authorityOf, isGrpc, normalizePath, parseQuery, type L7Request } from './request.ts';
export { defaultRetryPolicy } from './retry.ts';
export { FAULT_ABORT_BODY, NO_ROUTE_STATUS, RBAC_DENIED_BODY, RBAC_DENIED_STATUS } from './local-replies.ts';
export { DEFAULT_DOMAIN, serviceHost, serviceOfHost } from './hosts.ts';
export * from './types.ts';
export * from './cluster-policy.ts';

// The bodies and statuses of the answers the route side decides on, as
// Envoy words them, so users' runbooks and tests keep matching.

/** Body of a fault-injection abort. */
export const FAULT_ABORT_BODY = 'fault filter abort';

/** Status and body of an L7 authorization denial. */
export const RBAC_DENIED_STATUS = 403;
export const RBAC_DENIED_BODY = 'RBAC: access denied';

/** No route matched (response flag NR); Envoy sends no body. */
export const NO_ROUTE_STATUS = 404;

// Envoy's response flags, as the waypoint sets them on a request: the short
// names Envoy's access log and Istio's `response_flags` metric label print,
// so runbooks and dashboards written for Istio's waypoints keep matching.

/**
 * The flags a waypoint can set (Envoy's long names after each). Envoy sets no
 * flag for an RBAC denial (the access log says rbac_access_denied_… in
 * response_code_details instead), so neither does the waypoint.
 */
export type ResponseFlag =
  /** NoRouteFound: no route matched (404). */
  | 'NR'
  /** NoHealthyUpstream: no endpoint to send to (503). */
  | 'UH'
  /** UpstreamConnectionFailure (503). */
  | 'UF'
  /** UpstreamConnectionTermination (503). */
  | 'UC'
  /** UpstreamRemoteReset (503). */
  | 'UR'
  /** LocalReset: the waypoint reset the upstream stream (503). */
  | 'LR'
  /** UpstreamRequestTimeout (504). */
  | 'UT'
  /** UpstreamOverflow: a connection-pool limit (circuit breaker) was reached (503). */
  | 'UO'
  /** UpstreamRetryLimitExceeded. */
  | 'URX'
  /** UpstreamProtocolError (502). */
  | 'UPE'
  /** FaultInjected: a fault abort answered. */
  | 'FI'
  /** DelayInjected: a fault delay held the request. */
  | 'DI'
  /** DownstreamConnectionTermination: the client went away before the response completed. */
  | 'DC'
  /** DownstreamProtocolError: the client's request could not be parsed. */
  | 'DPE'
  /** StreamIdleTimeout: the request or response moved no byte for the stream idle timeout. */
  | 'SI';

/** What Envoy prints when no flag is set. */
export const NO_RESPONSE_FLAGS = '-';

/** Comma-separated, in the order they were set (as Envoy prints them since its flags became a list), or '-'. */
export const formatResponseFlags = (flags: readonly ResponseFlag[]): string => (flags.length === 0 ? NO_RESPONSE_FLAGS : flags.join(','));

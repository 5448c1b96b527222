// The words the waypoint's listener uses for what it refused, in its logs and
// its metrics' reason labels; like lib/telemetry/reasons.ts, they never change
// once dashboards match on them.

/** Why a CONNECT stream was refused before anything was served on it (meshlet_waypoint_tunnels_refused_total). */
export type TunnelRefusal =
  /** The stream's method is not CONNECT (answered 400). */
  | 'not_connect'
  /** `:authority` is not an `ip:port` (answered 400). */
  | 'bad_authority'
  /** No Service VIP:port or workload IP:port the waypoint knows has that address (answered 503). */
  | 'unknown_authority'
  /** The address is known, but this waypoint is not the one bound to it (istio.io/use-waypoint), so it does not serve it (answered 503). */
  | 'not_served'
  /** The session proved no client identity in the mesh's trust domain (answered 401). */
  | 'unauthenticated';

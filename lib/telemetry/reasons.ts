// The words a flow record ends with: why it closed, what policy decided, how
// it was secured. Flows, the access log, metrics labels and `meshlet flows`
// all use these spellings; operators' dashboards and alerts match on them, so
// they never change, and a misspelt one fails to compile.

/** How a relayed connection ended: who half-closed first, or who reset it. */
export type RelayEnd =
  /** The application's client half-closed first (FIN / END_STREAM), then both sides finished. */
  | 'client_closed'
  /** The server half-closed first. */
  | 'server_closed'
  /** The client reset the connection or went away before the upstream was up. */
  | 'client_reset'
  /** The server, or the tunnel towards it, reset the connection. */
  | 'upstream_reset'
  /** No byte moved either way for the idle timeout (--idle-timeout); both sides were reset. */
  | 'idle_timeout';

/** Why a client HBONE session failed; its streams' flows close with it. */
export type SessionFailure =
  /** The peer's certificate is not the SPIFFE ID asked for in SNI. */
  | 'peer_identity_mismatch'
  /** The peer's certificate has expired. */
  | 'peer_certificate_expired'
  /** Any other TLS failure (chain, alert, protocol). */
  | 'tls_failed'
  /** The TLS handshake did not finish in time (--hbone-handshake-timeout), at either end. */
  | 'handshake_timeout'
  /** The session failed for a reason other than TLS (refused, reset, unreachable). */
  | 'tunnel_failed';

/** Why an HBONE handshake failed, at either end (the `reason` label of meshlet_hbone_handshake_failures_total). */
export type HandshakeFailure =
  | SessionFailure
  /** Inbound: the client's chain does not lead to the mesh root. */
  | 'peer_untrusted'
  /** Inbound: the client's certificate failed verification otherwise. */
  | 'peer_certificate_invalid';

/** OpenSSL's verification error code for a refused client certificate, as flows and metrics name the refusal. */
export function certificateRefusal(code: string): HandshakeFailure {
  if (code === 'CERT_HAS_EXPIRED') return 'peer_certificate_expired';
  if (code === 'UNABLE_TO_GET_ISSUER_CERT' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') return 'peer_untrusted';
  return 'peer_certificate_invalid';
}

/** Why the upstream side of a connection could not be set up (a ForwardError's reason). */
export type UpstreamFailure =
  | SessionFailure
  /** TCP connect to the pod failed, or the destination ztunnel answered 503. */
  | 'upstream_connect_failed'
  /** The TCP connect to the destination, or the tunnel's answer to the CONNECT, did not come within --connect-timeout. */
  | 'connect_timeout'
  /** Anything else that failed while setting up the upstream. */
  | 'upstream_failed'
  /** The destination ztunnel answered 401: its policy denied the connection. */
  | 'denied'
  /** The destination ztunnel answered something other than 200, 401 or 503. */
  | 'tunnel_rejected'
  /** No certificate could be had for the source workload's identity. */
  | 'no_certificate';

/** Why a connection was refused before any upstream was tried. */
export type Refusal =
  /** No mesh state from the agent yet. */
  | 'not_ready'
  /**
   * Captured from a pod address the ztunnel's state has no workload for (a
   * pod enrolled in the kernel before the ztunnel heard of it): with no
   * identity to carry it under, it is refused, never sent around the mesh.
   */
  | 'unknown_source'
  /** Addressed to a capture listener itself: it was not redirected, and would loop. */
  | 'loop'
  /** A Service VIP:port with no endpoints. */
  | 'no_endpoint'
  /** An enrolled pod whose node has no known address: only its ztunnel may reach it (fail closed). */
  | 'no_route'
  /** This ztunnel's authorization policy denied it (same-node or inbound). */
  | 'denied'
  /** The source pod already had as many connections open as --max-connections-per-pod allows. */
  | 'connection_limit'
  /**
   * The kernel's capture record says the connection's source address is not
   * the connecting pod's own (it bound another pod's address, or a foreign
   * one): it is carried under no identity. The flow's claimedSource is that
   * address, its source the pod the kernel saw connect.
   */
  | 'source_mismatch'
  /**
   * Its destination (a Service VIP, or a pod's own address) is bound to a
   * waypoint (istio.io/use-waypoint) that is missing or has no ready pod:
   * refused, never sent around the waypoint. `meshlet status` names the
   * binding and what is wrong with the waypoint.
   */
  | 'waypoint_unavailable'
  /**
   * Its destination is under an L7 AuthorizationPolicy through its waypoint,
   * and the connection did not come from that waypoint: the peer's identity
   * is not one of the waypoint's (or it has none, in plaintext).
   */
  | 'waypoint_bypass';

/** Why a flow record closed. */
export type CloseReason =
  | RelayEnd
  | UpstreamFailure
  | Refusal
  /** The ztunnel shut down with the connection still open. */
  | 'shutdown'
  /** A policy change denied a connection that was already open; it was torn down. */
  | 'policy_denied'
  /** The kernel's STRICT ingress hook dropped it (the agent's drop log). */
  | 'dropped';

/** Why an HBONE session was drained: told (GOAWAY) to take no new streams, and closed once its streams end. */
export type SessionDrain =
  /** Its own or its peer's certificate reached notAfter; the next stream opens a session with current certificates. */
  | 'certificate_expiry'
  /** Inbound: it carried no stream for --hbone-idle-timeout. */
  | 'idle_timeout';

/** Why a listener refused a connection at accept, before any handshake or plan (meshlet_connections_refused_total). */
export type ListenerRefusal =
  /** 15008: the peer address already held --hbone-max-sessions-per-peer connections. */
  | 'peer_session_limit'
  /** 15001: the source pod already held --max-connections-per-pod connections. */
  | 'connection_limit';

/** Why the inbound HBONE listener refused a CONNECT stream before any plan (meshlet_hbone_streams_refused_total). */
export type StreamRefusal =
  /** Its session already carried --hbone-max-streams streams: answered RST_STREAM(REFUSED_STREAM), which a client may retry. */
  | 'stream_limit';

/** The destination's authorization decision. */
export type Verdict = 'allow' | 'deny';

/** How a meshed connection travelled between the ztunnels: mutual TLS, or cleartext (no CA configured, or a drop). */
export type ConnectionSecurity = 'mutual_tls' | 'plaintext';

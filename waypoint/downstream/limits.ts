// The downstream side's bounds: the HBONE listener's (as the ztunnel's
// inbound, lib/config/ztunnel.ts) and the HTTP servers' inside the tunnels
// (as Envoy's HTTP connection manager defaults, which Istio keeps). Seconds
// and counts, like the ztunnel's flags.
import { MAX_STREAMS_PER_SESSION } from '../../lib/hbone/h2-settings.ts';

export interface DownstreamLimits {
  /** Seconds a TLS handshake on 15008 may take. */
  handshakeTimeout: number;
  /** Seconds an HBONE session may carry no stream before it is drained. */
  sessionIdleTimeout: number;
  /** Concurrent CONNECT streams per HBONE session (advertised and enforced). */
  maxStreamsPerSession: number;
  /** Connections (sessions and handshakes) one source address may hold. */
  maxSessionsPerPeer: number;
  /** Seconds waited for the first bytes on a port that declares no protocol, before carrying it as TCP. */
  sniffTimeout: number;
  /** Seconds a request's head may take to arrive. */
  requestHeadersTimeout: number;
  /** Bytes of request head (request line and headers, or HTTP/2's header list). */
  maxRequestHeadersBytes: number;
  /** Seconds a request or response may move no byte (a connection with a request in flight, for HTTP/1). */
  streamIdleTimeout: number;
  /** Seconds an HTTP connection inside a tunnel may wait for its next request. */
  connectionIdleTimeout: number;
  /** Concurrent requests per HTTP/2 connection inside a tunnel. */
  maxConcurrentStreams: number;
}

/**
 * Why these: the handshake timeout, session idle time, streams and sessions
 * per peer are the ztunnel's inbound defaults (the same peers dial both).
 * The sniff timeout is short enough that a server-first protocol (SMTP,
 * MySQL) on an undeclared port is answered within half a second, and long
 * enough that a client which writes at once is never taken for TCP on a busy
 * node. Headers: 60 s and 60 KiB (Node's headersTimeout; Envoy's
 * max_request_headers_kb); stream idle 5 min and connection idle 1 h (Envoy's
 * stream_idle_timeout and idle_timeout); 100 streams per HTTP/2 connection,
 * as per HBONE session.
 */
export const DOWNSTREAM_LIMIT_DEFAULTS: DownstreamLimits = {
  handshakeTimeout: 10,
  sessionIdleTimeout: 120,
  maxStreamsPerSession: MAX_STREAMS_PER_SESSION,
  maxSessionsPerPeer: 1024,
  sniffTimeout: 0.5,
  requestHeadersTimeout: 60,
  maxRequestHeadersBytes: 60 * 1024,
  streamIdleTimeout: 300,
  connectionIdleTimeout: 3600,
  maxConcurrentStreams: 100,
};

export const downstreamLimits = (given: Partial<DownstreamLimits> = {}): DownstreamLimits => ({ ...DOWNSTREAM_LIMIT_DEFAULTS, ...withoutUndefined(given) });

function withoutUndefined(given: Partial<DownstreamLimits>): Partial<DownstreamLimits> {
  return Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as Partial<DownstreamLimits>;
}

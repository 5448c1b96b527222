// Every way an upstream request can fail, typed, with the Envoy response flag
// and local reply it stands for (the downstream's local replies word them),
// so access logs, metrics and users' runbooks read as they do for an Envoy
// waypoint. undici's errors are classified here and nowhere else.
import { constants as h2 } from 'node:http2';
import { errors } from 'undici';
import { ConnectionClosedError, UpstreamConnectError, UpstreamTimeoutError, type TunnelFailure } from './errors.ts';
import type { LocalReply } from '../downstream/local-reply.ts';
import type { UpstreamOutcome } from './outlier-detector.ts';

export type ClusterFailure =
  /** No endpoint to send to: none at all, or all ejected (UH). */
  | { kind: 'no_healthy_upstream' }
  /** A circuit breaker refused the request (UO). */
  | { kind: 'overflow'; limit: 'pending' | 'requests' }
  /** Hop 2's tunnel did not come up (UF). */
  | { kind: 'connect_failure'; reason: TunnelFailure; message: string }
  /** The connection closed before the response was complete (UC). */
  | { kind: 'connection_termination'; message: string }
  /** The HTTP/2 upstream reset the stream (UR); `refused`: with REFUSED_STREAM, which retryOn refused-stream retries. */
  | { kind: 'remote_reset'; refused: boolean; message: string }
  /** The upstream's response was not valid HTTP (UPE). */
  | { kind: 'protocol_error'; message: string }
  /** The caller aborted with its timeout (UpstreamTimeoutError, or AbortSignal.timeout's reason) (UT). */
  | { kind: 'timeout' }
  /** The caller aborted for another reason, such as the downstream going away (DC). */
  | { kind: 'cancelled'; reason: unknown }
  /** Anything else that ended the request on this side (LR). */
  | { kind: 'local_reset'; message: string };

export type ResponseFlag = 'UH' | 'UO' | 'UF' | 'UC' | 'UR' | 'UPE' | 'UT' | 'DC' | 'LR';

export function responseFlag(f: ClusterFailure): ResponseFlag {
  switch (f.kind) {
    case 'no_healthy_upstream': return 'UH';
    case 'overflow': return 'UO';
    case 'connect_failure': return 'UF';
    case 'connection_termination': return 'UC';
    case 'remote_reset': return 'UR';
    case 'protocol_error': return 'UPE';
    case 'timeout': return 'UT';
    case 'cancelled': return 'DC';
    case 'local_reset': return 'LR';
  }
}

/**
 * The local reply Envoy answers the downstream with for `f`, in the one
 * wording the downstream's local replies keep (local-reply.ts, current
 * Envoy's); undefined for a cancelled request (nobody to answer). `retried`:
 * earlier tries failed too ("retried and the latest reset reason").
 */
export function localReplyOf(f: ClusterFailure, retried = false): LocalReply | undefined {
  switch (f.kind) {
    case 'cancelled': return undefined;
    case 'no_healthy_upstream': return { kind: 'no_healthy_upstream' };
    case 'timeout': return { kind: 'upstream_timeout' };
    case 'overflow': return { kind: 'overflow', retried };
    case 'connect_failure':
      return f.reason === 'connect_timeout'
        ? { kind: 'upstream_reset', reason: 'connection timeout', retried }
        : { kind: 'upstream_reset', reason: 'remote connection failure', retried, transportFailureReason: f.reason };
    case 'connection_termination': return { kind: 'upstream_reset', reason: 'connection termination', retried };
    case 'remote_reset': return { kind: 'upstream_reset', reason: f.refused ? 'remote refused stream reset' : 'remote reset', retried };
    case 'protocol_error': return { kind: 'upstream_reset', reason: 'protocol error', retried };
    case 'local_reset': return { kind: 'upstream_reset', reason: 'local reset', retried };
  }
}

/** What outlier detection counts for `f` (Envoy: a reset as 503, a timeout as 504); undefined: not the endpoint's doing. */
export function outcomeOf(f: ClusterFailure): UpstreamOutcome | undefined {
  switch (f.kind) {
    case 'connect_failure': return 'connect_failure';
    case 'connection_termination':
    case 'remote_reset':
    case 'protocol_error': return 'reset';
    case 'timeout': return 'timeout';
    default: return undefined;
  }
}

const isTimeoutReason = (reason: unknown): boolean => reason instanceof UpstreamTimeoutError || (reason instanceof Error && reason.name === 'TimeoutError');

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** undici's (and Node's) codes for a connection that went away under a request. */
const TERMINATION_CODES = new Set(['UND_ERR_SOCKET', 'UND_ERR_INFO', 'UND_ERR_CLOSED', 'ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);
const PROTOCOL_CODES = new Set(['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE']);

/** Classifies what a request through undici rejected with; an aborted `signal` decides first. */
export function failureOf(err: unknown, signal?: AbortSignal): ClusterFailure {
  if (signal?.aborted) return isTimeoutReason(signal.reason) ? { kind: 'timeout' } : { kind: 'cancelled', reason: signal.reason };
  if (err instanceof UpstreamConnectError) return { kind: 'connect_failure', reason: err.reason, message: err.message };
  if (err instanceof ConnectionClosedError) return { kind: 'connection_termination', message: err.message };
  if (isTimeoutReason(err)) return { kind: 'timeout' };
  const { code, http2ErrorCode } = (err ?? {}) as { code?: unknown; http2ErrorCode?: unknown };
  const message = messageOf(err);
  if (typeof http2ErrorCode === 'number' && http2ErrorCode !== h2.NGHTTP2_NO_ERROR) {
    return { kind: 'remote_reset', refused: http2ErrorCode === h2.NGHTTP2_REFUSED_STREAM, message };
  }
  if (err instanceof errors.HTTPParserError) return { kind: 'protocol_error', message };
  if (typeof code !== 'string') return { kind: 'local_reset', message };
  // undici's own headers/body timers stand in for Envoy's stream idle timeout.
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return { kind: 'timeout' };
  if (TERMINATION_CODES.has(code)) return { kind: 'connection_termination', message };
  if (PROTOCOL_CODES.has(code)) return { kind: 'protocol_error', message };
  return { kind: 'local_reset', message };
}

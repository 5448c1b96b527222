// The responses the waypoint makes up itself, byte for byte as Envoy's
// router, fault, RBAC and direct-response code make them (status, body,
// text/plain, response flag, response code details), so users' runbooks and
// alerts keep matching. A gRPC request gets what Envoy sends it: a
// trailers-only 200 whose grpc-status maps the HTTP status (gRPC's
// http-grpc-status-mapping, as Grpc::Utility::httpToGrpcStatus) and whose
// grpc-message is the body, percent-encoded.
import type { ResponseFlag } from '../telemetry/response-flags.ts';
import type { HttpExchange } from './exchange.ts';
import type { OutgoingHttpHeaders } from './headers.ts';
import type { TunnelDestination } from './tunnel.ts';

/** Envoy's reset reasons as its local replies spell them (Http::Utility::resetReasonToString). */
export type UpstreamResetReason =
  | 'local connection failure'
  | 'remote connection failure'
  | 'connection timeout'
  | 'connection termination'
  | 'local reset'
  | 'local refused stream reset'
  | 'overflow'
  | 'remote reset'
  | 'remote refused stream reset'
  | 'remote error with CONNECT request'
  | 'protocol error';

export type LocalReply =
  /** No route matched: 404, empty body (NR). */
  | { kind: 'no_route' }
  /** No endpoint to send to: 503 `no healthy upstream` (UH). */
  | { kind: 'no_healthy_upstream' }
  /**
   * The upstream failed before its response head: 503 (502 for a protocol
   * error), flag by reason (UF, UC, UR, LR, UO, UPE). `retried`: the body says
   * "retried and the latest reset reason". Reason overflow (a pool limit)
   * also sends x-envoy-overloaded: true.
   */
  | { kind: 'upstream_reset'; reason: UpstreamResetReason; retried?: boolean; transportFailureReason?: string }
  /** A connection-pool limit (circuit breaker) refused the request: the overflow reset (UO, x-envoy-overloaded). */
  | { kind: 'overflow'; retried?: boolean }
  /** The route timeout (or the last per-try timeout) expired: 504 `upstream request timeout` (UT). */
  | { kind: 'upstream_timeout'; perTry?: boolean }
  /** A fault abort: its status, body `fault filter abort` (FI); `grpcStatus` overrides the mapped one. */
  | { kind: 'fault_abort'; status: number; grpcStatus?: number }
  /** An L7 AuthorizationPolicy denied it: 403 `RBAC: access denied`; `policy` names it in the details (Envoy sets no flag). */
  | { kind: 'rbac_denied'; policy?: string }
  /** A route's direct response (VirtualService directResponse, redirects, HTTPRoute's 500 for no backends); `grpcStatus`: what a gRPC request gets (GRPCRoute's UNAVAILABLE). */
  | { kind: 'direct_response'; status: number; body?: string; headers?: OutgoingHttpHeaders; grpcStatus?: number }
  /** The waypoint itself failed to handle the request. */
  | { kind: 'internal_error' };

/** A local reply, made: what is sent and what the access log says. */
export interface BuiltReply {
  status: number;
  headers: OutgoingHttpHeaders;
  /** Empty for a gRPC request (the text is in grpc-message) and for HEAD. */
  body: string;
  flag?: ResponseFlag;
  details: string;
}

const RESET_FLAGS: Readonly<Record<UpstreamResetReason, ResponseFlag>> = {
  'local connection failure': 'UF',
  'remote connection failure': 'UF',
  'connection timeout': 'UF',
  'connection termination': 'UC',
  'local reset': 'LR',
  'local refused stream reset': 'LR',
  overflow: 'UO',
  'remote reset': 'UR',
  'remote refused stream reset': 'UR',
  'remote error with CONNECT request': 'UR',
  'protocol error': 'UPE',
};

/** gRPC's mapping of HTTP statuses, as Envoy applies it to local replies. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** gRPC's grpc-message encoding: bytes outside printable ASCII, and '%', as %XX of their UTF-8. */
export function percentEncodeGrpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

interface Reply {
  status: number;
  body: string;
  flag?: ResponseFlag;
  details: string;
  headers?: OutgoingHttpHeaders;
  grpcStatus?: number;
}

function resetReply(reason: UpstreamResetReason, retried: boolean, transportFailureReason: string | undefined): Reply {
  const body = `upstream connect error or disconnect/reset before headers. ${retried ? 'retried and the latest ' : ''}reset reason: ${reason}${transportFailureReason ? `, transport failure reason: ${transportFailureReason}` : ''}`;
  // Envoy's details replace every space with '_'.
  const details = `upstream_reset_before_response_started{${reason}${transportFailureReason ? `|${transportFailureReason}` : ''}}`.replace(/\s/g, '_');
  return {
    status: reason === 'protocol error' ? 502 : 503,
    body,
    flag: RESET_FLAGS[reason],
    details,
    ...(reason === 'overflow' ? { headers: { 'x-envoy-overloaded': 'true' } } : {}),
  };
}

function replyOf(reply: LocalReply): Reply {
  switch (reply.kind) {
    case 'no_route':
      return { status: 404, body: '', flag: 'NR', details: 'route_not_found' };
    case 'no_healthy_upstream':
      return { status: 503, body: 'no healthy upstream', flag: 'UH', details: 'no_healthy_upstream' };
    case 'upstream_reset':
      return resetReply(reply.reason, reply.retried ?? false, reply.transportFailureReason);
    case 'overflow':
      return resetReply('overflow', reply.retried ?? false, undefined);
    case 'upstream_timeout':
      return { status: 504, body: 'upstream request timeout', flag: 'UT', details: reply.perTry ? 'upstream_per_try_timeout' : 'response_timeout' };
    case 'fault_abort':
      return { status: reply.status, body: 'fault filter abort', flag: 'FI', details: 'fault_filter_abort', ...(reply.grpcStatus !== undefined ? { grpcStatus: reply.grpcStatus } : {}) };
    case 'rbac_denied':
      return { status: 403, body: 'RBAC: access denied', details: `rbac_access_denied_matched_policy[${reply.policy ?? 'none'}]` };
    case 'direct_response':
      return { status: reply.status, body: reply.body ?? '', details: 'direct_response', ...(reply.headers ? { headers: reply.headers } : {}), ...(reply.grpcStatus !== undefined ? { grpcStatus: reply.grpcStatus } : {}) };
    case 'internal_error':
      return { status: 500, body: '', details: 'waypoint_internal_error' };
  }
}

/** The reply for `request` (gRPC: trailers-only; HEAD: the head alone, with the length the body would have had). */
export function buildLocalReply(reply: LocalReply, request: { grpc: boolean; method: string }): BuiltReply {
  const r = replyOf(reply);
  const flag = r.flag ? { flag: r.flag } : {};
  if (request.grpc) {
    const headers: OutgoingHttpHeaders = {
      ...r.headers,
      'content-type': 'application/grpc',
      'grpc-status': String(r.grpcStatus ?? grpcStatusForHttp(r.status)),
      ...(r.body !== '' && request.method !== 'HEAD' ? { 'grpc-message': percentEncodeGrpcMessage(r.body) } : {}),
    };
    return { status: 200, headers, body: '', ...flag, details: r.details };
  }
  const headers: OutgoingHttpHeaders = { ...r.headers };
  if (r.body !== '') {
    headers['content-length'] = String(Buffer.byteLength(r.body));
    if (reply.kind !== 'direct_response' || headers['content-type'] === undefined) headers['content-type'] = 'text/plain';
  }
  return { status: r.status, headers, body: request.method === 'HEAD' ? '' : r.body, ...flag, details: r.details };
}

/**
 * Answers the exchange with `reply`, setting its flag and details. A response
 * already started cannot be replaced: it is reset instead, as Envoy does.
 */
export function sendLocalReply<D extends TunnelDestination>(exchange: Pick<HttpExchange<D>, 'request' | 'response' | 'info'>, reply: LocalReply): void {
  const built = buildLocalReply(reply, exchange.request);
  if (built.flag) exchange.info.flag(built.flag);
  exchange.info.responseCodeDetails = built.details;
  const { response } = exchange;
  if (response.headersSent) return response.reset();
  if (built.body === '') return response.respond(built.status, built.headers, { endStream: true });
  response.respond(built.status, built.headers, { trailers: false });
  response.write(built.body);
  response.end();
}

// The request headers a tunnel carries about its source (as Istio's HBONE
// does): the client's address (RFC 7239 Forwarded), the source workload
// (W3C Baggage), and a fresh W3C trace context naming the connection.
import { randomFillSync } from 'node:crypto';
import type { Workload } from '../mesh/model.ts';
import type { Endpoint } from '../telemetry/flow.ts';
import { hostPort, parseHostPort } from '../core/ip.ts';

/** The request headers the receiving end of a tunnel reads. */
export interface TunnelRequest {
  method: string | undefined;
  authority: string | undefined;
  forwarded: string | undefined;
  traceparent: string | undefined;
}

/** A header that must appear once: absent, repeated (an array) or not text reads as undefined. */
const single = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The headers of a received CONNECT request that matter, from any header set (HTTP/2's IncomingHttpHeaders). */
export function tunnelRequestOf(headers: Readonly<Record<string, unknown>>): TunnelRequest {
  return { method: single(headers[':method']), authority: single(headers[':authority']), forwarded: single(headers.forwarded), traceparent: single(headers.traceparent) };
}

/** `for="ip:port"`: quoted, since a port (and an IPv6 literal) is not an RFC 7239 token. */
export const forwardedFor = (src: Endpoint): string => `for="${hostPort(src.ip, src.port)}"`;

/** The client endpoint from the first `for=` of a Forwarded header. */
export function parseForwardedFor(value: string | undefined): Endpoint | undefined {
  const m = value === undefined ? null : /(?:^|[;,\s])for="?([^";,]+)"?/i.exec(value);
  return m ? parseHostPort(m[1]) : undefined;
}

/** Source workload metadata, keys after OpenTelemetry's k8s semantic conventions. */
export function baggage(w: Workload): string {
  const members: [string, string][] = [
    ['k8s.namespace.name', w.namespace],
    ['k8s.pod.name', w.name],
    ['k8s.node.name', w.node],
    ['k8s.serviceaccount.name', w.serviceAccount],
  ];
  // toWellFormed: encodeURIComponent throws on a lone surrogate, and a name must never fail the connection.
  return members.map(([k, v]) => `${k}=${encodeURIComponent(v.toWellFormed())}`).join(',');
}

export interface TraceContext {
  traceId: string;
  traceparent: string;
}

/**
 * Trace ids must be unique, not secret: they are cut from a pool refilled by
 * one randomFillSync per 170 of them (as Node's randomUUID buffers its
 * entropy), not a call into the crypto library per request.
 */
const TRACE_ID_BYTES = 24;
const traceIdPool = Buffer.alloc(TRACE_ID_BYTES * 170);
let traceIdOffset = traceIdPool.length;

function randomTraceIdHex(): string {
  if (traceIdOffset === traceIdPool.length) {
    randomFillSync(traceIdPool);
    traceIdOffset = 0;
  }
  const hex = traceIdPool.toString('hex', traceIdOffset, traceIdOffset + TRACE_ID_BYTES);
  traceIdOffset += TRACE_ID_BYTES;
  return hex;
}

/** A new W3C traceparent (version 00, not sampled). */
export function newTraceContext(): TraceContext {
  const ids = randomTraceIdHex();
  const traceId = ids.slice(0, 32);
  return { traceId, traceparent: `00-${traceId}-${ids.slice(32)}-00` };
}

export function traceIdOf(traceparent: string | undefined): string | undefined {
  const m = traceparent === undefined ? null : /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim());
  return m ? m[1] : undefined;
}

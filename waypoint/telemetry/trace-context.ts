// The request's trace headers, as Envoy treats them: x-request-id and a W3C
// trace context (traceparent, tracestate) are passed on as the client sent
// them, and created when absent, so every request the waypoint carries can be
// found in the access log, the recent-requests ring and the upstream's logs
// by the same ids.
import { randomUUID } from 'node:crypto';
import { newTraceContext } from '../../lib/hbone/headers.ts';

export interface RequestTrace {
  requestId: string;
  traceparent: string;
  /** Only with the client's own traceparent: a tracestate belongs to the trace it came with. */
  tracestate?: string;
  /** Which ids the waypoint made up (the client sent none, or an invalid one). */
  created: { requestId: boolean; traceparent: boolean };
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/** Longer ids are not kept: an id is for finding a request, not for carrying data. */
const MAX_REQUEST_ID = 256;

const single = (v: string | string[] | undefined): string | undefined => (typeof v === 'string' ? v.trim() : undefined);

/**
 * W3C Trace Context §3.2: a version other than ff; for version 00 exactly
 * the four fields; trace-id and parent-id not all zeros. A later version may
 * append fields after a dash, which a 00 parser accepts.
 */
export function isValidTraceparent(value: string): boolean {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(value);
  if (!m) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff') return false;
  if (version === '00' && rest !== undefined) return false;
  return !/^0+$/.test(traceId!) && !/^0+$/.test(parentId!);
}

export function requestTrace(headers: Headers): RequestTrace {
  const givenId = single(headers['x-request-id']);
  const keepId = givenId !== undefined && givenId !== '' && givenId.length <= MAX_REQUEST_ID;
  const givenParent = single(headers.traceparent);
  const keepParent = givenParent !== undefined && isValidTraceparent(givenParent);
  const state = headers.tracestate;
  const tracestate = keepParent && state !== undefined ? (Array.isArray(state) ? state.join(',') : state) : undefined;
  return {
    requestId: keepId ? givenId : randomUUID(),
    traceparent: keepParent ? givenParent : newTraceContext().traceparent,
    ...(tracestate ? { tracestate } : {}),
    created: { requestId: !keepId, traceparent: !keepParent },
  };
}

/** The headers the upstream request carries for `trace`. */
export function traceHeaders(trace: RequestTrace): Record<string, string> {
  return {
    'x-request-id': trace.requestId,
    traceparent: trace.traceparent,
    ...(trace.tracestate ? { tracestate: trace.tracestate } : {}),
  };
}

// Header rules every response the waypoint writes follows, whichever side
// made it (the upstream or a local reply), as Istio's Envoy applies them:
// connection-specific fields never cross a hop (RFC 9110 §7.6.1; HTTP/2
// forbids them outright, RFC 9113 §8.2.2), and `server` is overwritten with
// istio-envoy (Istio's ServerHeaderTransformation OVERWRITE).
import type { OutgoingHttpHeader, OutgoingHttpHeaders } from 'node:http';

export type { OutgoingHttpHeaders };

/** What Istio's waypoints (and sidecars' inbound) answer in `server`. */
export const SERVER_NAME = 'istio-envoy';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** The names a Connection header lists: those fields are for this hop only. */
function connectionOptions(value: OutgoingHttpHeaders[string]): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : String(value);
  return text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
}

/**
 * The headers to send for `headers`: names lower-cased, pseudo-headers and
 * hop-by-hop fields removed, `server` set. `keepUpgrade`: a 101 answer to an
 * upgrade keeps `connection` and `upgrade` (they are what it is about).
 */
export function responseHeaders(headers: OutgoingHttpHeaders, keepUpgrade = false): OutgoingHttpHeaders {
  const out: Record<string, OutgoingHttpHeader> = {};
  const listed = new Set(connectionOptions(headers.connection ?? headers.Connection));
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (lower.startsWith(':')) continue;
    if (keepUpgrade && (lower === 'connection' || lower === 'upgrade')) {
      out[lower] = value;
      continue;
    }
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    out[lower] = value;
  }
  out.server = SERVER_NAME;
  return out;
}

/** Envoy's rule (Grpc::Common::hasGrpcContentType): application/grpc, alone or followed by '+' or ';'. */
export function isGrpcContentType(contentType: string | undefined): boolean {
  if (contentType === undefined || !contentType.startsWith('application/grpc')) return false;
  const next = contentType.charAt('application/grpc'.length);
  return next === '' || next === '+' || next === ';';
}

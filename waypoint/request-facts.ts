// What the router reads of one request, worked out once: the route side's
// L7Request (the service from the tunnel's :authority, the path normalised,
// the source from the HBONE identity), the balancer's view, and the headers
// that go upstream.
import { normalizePath, type L7Request } from '../lib/l7/index.ts';
import type { HttpExchange, RequestHeaders } from './downstream/exchange.ts';
import type { TunnelContext } from './downstream/tunnel.ts';
import { addressOf, hostOf, type WaypointDestination } from './destination.ts';
import { traceHeaders } from './telemetry/trace-context.ts';
import type { RequestView as BalanceView } from './upstream/endpoint.ts';

/** The client as policy sees it: its proven identity, and its address as far as it is known (the believed claim, else the source ztunnel). */
export function sourceOf(tunnel: TunnelContext<WaypointDestination>): L7Request['source'] {
  const ip = tunnel.sourceAddress?.ip ?? tunnel.peer?.ip ?? '';
  return { ip, ...(tunnel.identity ? { principal: tunnel.identity } : {}), ...(tunnel.source.namespace ? { namespace: tunnel.source.namespace } : {}) };
}

export function serviceOf(d: WaypointDestination): L7Request['service'] {
  return { host: hostOf(d), port: d.port.port, address: addressOf(d) };
}

/** Lower-case names, repeated headers joined with ","; `host` is the Host / :authority as sent. */
function joinedHeaders(headers: RequestHeaders, host: string): Record<string, string> {
  // No prototype: a header named __proto__ stays a header.
  const out = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name] = Array.isArray(value) ? value.join(',') : value;
  }
  out.host = host;
  return out;
}

export function l7RequestOf(exchange: Pick<HttpExchange<WaypointDestination>, 'request' | 'tunnel'>): L7Request {
  const { request, tunnel } = exchange;
  const { path, query } = normalizePath(request.path);
  return {
    method: request.method,
    scheme: request.scheme,
    service: serviceOf(tunnel.destination),
    path,
    query,
    headers: joinedHeaders(request.headers, request.host),
    source: sourceOf(tunnel),
  };
}

/** What consistent hashing reads. */
export function balanceViewOf(exchange: Pick<HttpExchange<WaypointDestination>, 'request' | 'tunnel'>): BalanceView {
  const { request, tunnel } = exchange;
  const source = tunnel.sourceAddress ?? tunnel.peer;
  return { headers: request.headers, path: request.path, sourceIp: source?.ip ?? '', ...(source ? { sourcePort: source.port } : {}) };
}

/**
 * Connection-specific fields never cross a hop (RFC 9110 §7.6.1), and undici
 * refuses to send them; `te` stays only as `trailers` (gRPC needs it).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect']);

/**
 * The request's headers as they go upstream, before the route's header
 * operations: hop-by-hop fields removed (an upgrade's are undici's to set),
 * `host` the (rewritten) authority,
 * the trace headers (as received or created), and x-forwarded-proto as Envoy
 * sets it.
 */
export function upstreamHeadersOf(exchange: Pick<HttpExchange<WaypointDestination>, 'request'>, authority: string): Record<string, string | string[]> {
  const { request } = exchange;
  const listed = new Set(String(request.headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''));
  const out = Object.create(null) as Record<string, string | string[]>;
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name) || listed.has(name)) continue;
    if (name === 'te' && value !== 'trailers') continue;
    out[name] = value;
  }
  out.host = authority;
  out['x-forwarded-proto'] = request.scheme;
  Object.assign(out, traceHeaders(request.trace));
  return out;
}

// A finished request's record, as the downstream side makes one, for the
// telemetry tests to vary.
import type { RequestRecord } from '../../waypoint/telemetry/request-record.ts';

/** A 200 from web-v2 to client over mutual TLS; `over` changes what a test is about. */
export function record(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    startTime: '2026-01-01T00:00:00.000Z',
    durationMs: 12.4,
    method: 'GET',
    path: '/cart/items/42?secret=1',
    host: 'web.shop',
    protocol: 'HTTP/1.1',
    grpc: false,
    responseCode: 200,
    responseFlags: [],
    responseCodeDetails: 'via_upstream',
    bytesReceived: 0,
    bytesSent: 512,
    requestId: 'r-1',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    downstreamLocalAddress: { ip: '10.96.0.10', port: 80 },
    source: { workload: 'client-7d9', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/client', app: 'client', version: 'v1', canonicalService: 'client', canonicalRevision: 'v1', cluster: 'Kubernetes' },
    service: { namespace: 'shop', name: 'web' },
    destination: { workload: 'web-v2-5f6', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', app: 'web', version: 'v2', canonicalService: 'web', canonicalRevision: 'v2', cluster: 'Kubernetes' },
    connectionSecurity: 'mutual_tls',
    ...over,
  };
}

// The waypoint's request metrics as Prometheus sees them: Istio's names,
// reporter="waypoint", Istio's label set (no path), Envoy's default buckets,
// gRPC status and response flags as labels, and the listener's counters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ListenerEvents } from '../../waypoint/downstream/hbone-listener.ts';
import { REQUEST_LABELS, requestLabels, requestSeriesKey } from '../../waypoint/telemetry/labels.ts';
import { ENVOY_DEFAULT_BUCKETS, WaypointMetrics } from '../../waypoint/telemetry/metrics.ts';
import { peerWorkloadOf } from '../../waypoint/telemetry/peer-workload.ts';
import { record } from '../waypoint/telemetry-fixtures.ts';

test('Istio\'s label set, reporter waypoint, and nothing from the path', () => {
  const labels = requestLabels(record());
  assert.deepEqual(Object.keys(labels).sort(), [...REQUEST_LABELS].sort());
  assert.equal(labels.reporter, 'waypoint');
  assert.equal(labels.destination_service, 'web.shop.svc.cluster.local');
  assert.equal(labels.destination_version, 'v2');
  assert.equal(labels.request_protocol, 'http');
  assert.equal(labels.response_flags, '-');
  assert.equal(labels.grpc_response_status, '');
  assert.equal(labels.connection_security_policy, 'mutual_tls');
  assert.ok(!Object.values(labels).some((v) => v.includes('/cart')), 'no path in any label');
});

test('the series key is equal exactly when the labels are', () => {
  const peer = (workload: string, version?: string) => ({ workload, namespace: 'shop', principal: `spiffe://cluster.local/ns/shop/sa/${workload}`, ...(version ? { version } : {}) });
  const variants = [
    record(),
    record({ source: peer('client') }),
    record({ source: peer('client', 'v2') }),
    record({ destination: peer('web', 'v1') }),
    record({ destination: {} }),
    record({ service: undefined }),
    record({ service: { namespace: 'other', name: 'web' } }),
    record({ responseCode: 503 }),
    record({ responseCode: 0 }),
    record({ responseFlags: ['UF'] }),
    record({ responseFlags: ['UF', 'URX'] }),
    record({ grpc: true, grpcStatus: '14' }),
    record({ grpc: true, grpcStatus: '99' }),
    record({ grpc: true, grpcStatus: '98' }),
    record({ connectionSecurity: 'plaintext' }),
    record({ path: '/other', durationMs: 99, requestId: 'r-2' }),
  ];
  for (const a of variants) {
    for (const b of variants) {
      const sameLabels = JSON.stringify(requestLabels(a)) === JSON.stringify(requestLabels(b));
      assert.equal(requestSeriesKey(a) === requestSeriesKey(b), sameLabels, `${JSON.stringify(requestLabels(a))} vs ${JSON.stringify(requestLabels(b))}`);
    }
  }
});

test('unknowns are "unknown"; gRPC statuses outside 0-16 are one value', () => {
  const labels = requestLabels(record({ source: {}, destination: {}, service: undefined, connectionSecurity: 'plaintext', grpc: true, grpcStatus: '99' }));
  assert.equal(labels.source_workload, 'unknown');
  assert.equal(labels.destination_service, 'unknown');
  assert.equal(labels.connection_security_policy, 'none');
  assert.equal(labels.request_protocol, 'grpc');
  assert.equal(labels.grpc_response_status, 'unknown');
  assert.equal(requestLabels(record({ grpc: true, grpcStatus: '14' })).grpc_response_status, '14');
});

test('the four request metrics, with Envoy\'s default buckets', async () => {
  const metrics = new WaypointMetrics();
  metrics.request(record());
  metrics.request(record({ durationMs: 700, responseCode: 503, responseFlags: ['URX', 'UF'], bytesSent: 91 }));
  const text = await metrics.text();
  const line = (name: string, match: string) => text.split('\n').find((l) => l.startsWith(name) && l.includes(match));
  assert.match(line('istio_requests_total{', 'response_code="200"') ?? '', / 1$/);
  assert.match(line('istio_requests_total{', 'response_code="503"') ?? '', /response_flags="URX,UF"/);
  const buckets = text.split('\n').filter((l) => l.startsWith('istio_request_duration_milliseconds_bucket{') && l.includes('response_code="200"')).map((l) => /le="([^"]+)"/.exec(l)![1]);
  assert.deepEqual(buckets, [...ENVOY_DEFAULT_BUCKETS.map(String), '+Inf']);
  assert.match(line('istio_request_duration_milliseconds_bucket{le="25",', 'response_code="200"') ?? '', / 1$/, 'the 12 ms request is under 25 ms');
  assert.match(line('istio_request_duration_milliseconds_bucket{le="500",', 'response_code="503"') ?? '', / 0$/, 'the 700 ms one is not under 500 ms');
  assert.match(line('istio_response_bytes_sum{', 'response_code="503"') ?? '', / 91$/);
  assert.match(line('istio_request_bytes_count{', 'response_code="200"') ?? '', / 1$/);
  assert.ok(!text.includes('/cart'), 'no path anywhere');
});

test('TCP passthrough and the listener\'s counters', async () => {
  const metrics = new WaypointMetrics();
  const r = record();
  metrics.tcpOpened({ source: r.source, destination: r.destination, service: r.service, connectionSecurity: 'mutual_tls', responseFlags: [], bytesReceived: 0, bytesSent: 0 });
  metrics.tcpClosed({ source: r.source, destination: r.destination, service: r.service, connectionSecurity: 'mutual_tls', responseFlags: [], bytesReceived: 10, bytesSent: 20 });
  metrics.handshakeFailed('peer_untrusted');
  metrics.connectionRefused('peer_session_limit');
  metrics.tunnelRefused('unknown_authority');
  metrics.sessionDrained('idle_timeout');
  metrics.accessLogDropped();
  // What the HBONE listener reports to: the metrics are its events.
  const events: ListenerEvents = metrics;
  events.tunnelRefused('not_served');
  const text = await metrics.text();
  assert.match(text, /istio_tcp_received_bytes_total\{reporter="waypoint",[^}]*\} 10/);
  assert.match(text, /istio_tcp_sent_bytes_total\{reporter="waypoint",[^}]*\} 20/);
  assert.match(text, /meshlet_hbone_handshake_failures_total\{direction="inbound",reason="peer_untrusted"\} 1/);
  assert.match(text, /meshlet_connections_refused_total\{listener="hbone",reason="peer_session_limit"\} 1/);
  assert.match(text, /meshlet_waypoint_tunnels_refused_total\{reason="unknown_authority"\} 1/);
  assert.match(text, /meshlet_waypoint_tunnels_refused_total\{reason="not_served"\} 1/);
  assert.match(text, /meshlet_hbone_sessions_drained_total\{direction="inbound",reason="idle_timeout"\} 1/);
  assert.match(text, /meshlet_waypoint_access_log_dropped_total 1/);
});

test('a workload as telemetry names it, with Istio\'s canonical fallbacks', () => {
  const base = { uid: 'u', name: 'web-v2-5f6', namespace: 'shop', serviceAccount: 'web', node: 'n1', ips: ['10.0.0.1'], enrolled: true, excludeOutboundPorts: [] };
  assert.deepEqual(peerWorkloadOf({ ...base, labels: { app: 'web', version: 'v2' } }, 'cluster.local'), {
    workload: 'web-v2-5f6', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', app: 'web', version: 'v2', canonicalService: 'web', canonicalRevision: 'v2', cluster: 'Kubernetes',
  });
  const canonical = peerWorkloadOf({ ...base, labels: { 'service.istio.io/canonical-name': 'storefront', 'app.kubernetes.io/name': 'web', 'app.kubernetes.io/version': '1.4' } }, 'cluster.local');
  assert.equal(canonical.canonicalService, 'storefront');
  assert.equal(canonical.canonicalRevision, '1.4');
  const bare = peerWorkloadOf({ ...base, labels: {} }, 'cluster.local');
  assert.equal(bare.canonicalService, 'web-v2-5f6');
  assert.equal(bare.canonicalRevision, 'latest');
  assert.equal(bare.app, undefined);
});

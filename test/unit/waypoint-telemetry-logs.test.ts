// One JSON access-log line per request in Istio's default JSON format, a
// bounded log backlog that drops rather than grows, the bounded
// recent-requests ring behind `meshlet flows`, the trace headers passed on
// or created, and the fan-out of a finished request to all three.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { AccessLog, accessLogEntry } from '../../waypoint/telemetry/access-log.ts';
import { WaypointMetrics } from '../../waypoint/telemetry/metrics.ts';
import { RecentRequests, type RequestSummary } from '../../waypoint/telemetry/recent-requests.ts';
import { RequestTelemetry } from '../../waypoint/telemetry/request-telemetry.ts';
import { isValidTraceparent, requestTrace, traceHeaders } from '../../waypoint/telemetry/trace-context.ts';
import { record } from '../waypoint/telemetry-fixtures.ts';

test('an access-log entry has Istio\'s JSON fields, numbers as numbers and unknowns as null', () => {
  const entry = accessLogEntry(record({
    responseCode: 503, responseFlags: ['UF'], responseCodeDetails: 'upstream_reset_before_response_started{remote_connection_failure}',
    upstreamServiceTimeMs: 4, upstreamHost: '10.244.2.9:8080', upstreamCluster: 'inbound-vip|80|http|web.shop.svc.cluster.local', routeName: 'shop/web-canary',
    userAgent: 'curl/8.5', downstreamRemoteAddress: { ip: '10.244.0.5', port: 40000 }, durationMs: 12.6,
  }));
  assert.deepEqual(entry, {
    start_time: '2026-01-01T00:00:00.000Z',
    route_name: 'shop/web-canary',
    method: 'GET',
    path: '/cart/items/42?secret=1',
    protocol: 'HTTP/1.1',
    response_code: 503,
    response_flags: 'UF',
    response_code_details: 'upstream_reset_before_response_started{remote_connection_failure}',
    upstream_transport_failure_reason: null,
    bytes_received: 0,
    bytes_sent: 512,
    duration: 13,
    upstream_service_time: '4',
    x_forwarded_for: null,
    user_agent: 'curl/8.5',
    request_id: 'r-1',
    authority: 'web.shop',
    upstream_host: '10.244.2.9:8080',
    upstream_cluster: 'inbound-vip|80|http|web.shop.svc.cluster.local',
    downstream_local_address: '10.96.0.10:80',
    downstream_remote_address: '10.244.0.5:40000',
    requested_server_name: null,
    downstream_peer_principal: 'spiffe://cluster.local/ns/shop/sa/client',
    grpc_status: null,
    trace_id: '0af7651916cd43dd8448eb211c80319c',
  });
});

/** A log output that takes nothing until released: its backlog only grows. */
class Stuck extends Writable {
  lines: string[] = [];
  // Never calls back: the first write stays pending, the rest queue up behind it.
  override _write(chunk: Buffer, _encoding: BufferEncoding, _done: () => void): void {
    this.lines.push(String(chunk));
  }
}

test('the access log writes one line per request, in batches, and drops (counted) once its output backs up', async () => {
  const out = new Stuck({ highWaterMark: 16 });
  let dropped = 0;
  const log = new AccessLog(out, { maxBufferedBytes: 2000, onDropped: () => dropped++, flushIntervalMs: 0 });
  for (let i = 0; i < 50; i++) log.write(record({ requestId: `r-${i}` }));
  assert.equal(out.lines.length, 0, 'the lines wait for the end of the turn');
  await setImmediate();
  assert.equal(out.lines.length, 1, 'the lines of the turn went out in one write');
  const written = out.lines[0]!.split('\n').slice(0, -1);
  assert.deepEqual(written.map((l) => JSON.parse(l).request_id), written.map((_, i) => `r-${i}`), 'one line per request, in order');
  const line = Buffer.byteLength(written[0]!) + 1;
  assert.ok(out.writableLength > 2000 - line && out.writableLength <= 2000 + line, 'the backlog filled to its bound, and no further');
  assert.equal(dropped, 50 - written.length, 'every line past it was dropped');
  log.write(record({ requestId: 'r-late' }));
  await setImmediate();
  assert.equal(dropped, 51 - written.length, 'a backlog left in the output counts toward the bound');
  assert.equal(out.lines.length, 1);
});

test('by default a batch waits out the flush interval, not the turn; flush() writes it at once', async () => {
  const lines: string[] = [];
  const out = new Writable({ write: (chunk, _encoding, done) => void (lines.push(String(chunk)), done()) });
  const log = new AccessLog(out, { flushIntervalMs: 30 });
  log.write(record({ requestId: 'a' }));
  await setImmediate();
  log.write(record({ requestId: 'b' }));
  assert.equal(lines.length, 0, 'still waiting after a turn');
  await sleep(80);
  assert.equal(lines.length, 1, 'both lines in one write');
  assert.deepEqual(lines[0]!.split('\n').slice(0, -1).map((l) => JSON.parse(l).request_id), ['a', 'b']);
  log.write(record({ requestId: 'c' }));
  log.flush();
  assert.equal(lines.length, 2, 'flush() did not wait');
  await sleep(80);
  assert.equal(lines.length, 2, 'nothing left for the timer');
});

test('the recent-requests ring keeps the newest, oldest first, and tells followers', () => {
  const ring = new RecentRequests('waypoint-0', 3);
  const followed: RequestSummary[] = [];
  const stop = ring.subscribe((s) => followed.push(s));
  for (let i = 0; i < 5; i++) ring.add(record({ path: `/p${i}` }));
  stop();
  ring.add(record({ path: '/after' }));
  assert.equal(ring.size, 3);
  assert.deepEqual(ring.list().map((s) => s.path), ['/p3', '/p4', '/after']);
  assert.deepEqual(ring.list().map((s) => s.id), ['waypoint-0-4', 'waypoint-0-5', 'waypoint-0-6']);
  assert.equal(followed.length, 5);
});

test('a summary has what `meshlet flows` shows, and long paths are cut', () => {
  const ring = new RecentRequests('waypoint-0', 10);
  const s = ring.add(record({ path: `/${'x'.repeat(5000)}`, responseFlags: ['UO'], routeName: 'shop/web', grpc: true, grpcStatus: '14', upstreamHost: '10.244.2.9:8080', tunnelTraceId: 'ab'.repeat(16) }));
  assert.equal(s.method, 'GET');
  assert.equal(s.authority, 'web.shop');
  assert.equal(s.status, 200);
  assert.equal(s.flags, 'UO');
  assert.equal(s.route, 'shop/web');
  assert.equal(s.grpcStatus, '14');
  assert.deepEqual(s.source, { namespace: 'shop', workload: 'client-7d9', principal: 'spiffe://cluster.local/ns/shop/sa/client' });
  assert.equal(s.traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.equal(s.tunnelTraceId, 'ab'.repeat(16));
  assert.ok(s.path.length <= 1025);
});

test('trace headers: a valid context and request id pass through unchanged', () => {
  const trace = requestTrace({ 'x-request-id': 'abc', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: ['congo=t61rcWkgMzE', 'rojo=00f067aa0ba902b7'] });
  assert.deepEqual(trace, {
    requestId: 'abc',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
    created: { requestId: false, traceparent: false },
  });
  assert.deepEqual(traceHeaders(trace), { 'x-request-id': 'abc', traceparent: trace.traceparent, tracestate: trace.tracestate });
});

test('trace headers: absent or invalid ones are created, and a tracestate without its traceparent is dropped', () => {
  const none = requestTrace({});
  assert.match(none.requestId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(isValidTraceparent(none.traceparent));
  assert.deepEqual(none.created, { requestId: true, traceparent: true });
  const invalid = requestTrace({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01', tracestate: 'rojo=1', 'x-request-id': ['a', 'b'] });
  assert.notEqual(invalid.traceparent, '00-00000000000000000000000000000000-b7ad6b7169203331-01');
  assert.equal(invalid.tracestate, undefined);
  assert.deepEqual(invalid.created, { requestId: true, traceparent: true });
  assert.equal(traceHeaders(invalid).tracestate, undefined);
});

test('traceparent validation follows W3C Trace Context', () => {
  assert.equal(isValidTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), true);
  assert.equal(isValidTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra'), true, 'a later version may add fields');
  assert.equal(isValidTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra'), false);
  assert.equal(isValidTraceparent('ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), false);
  assert.equal(isValidTraceparent('00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01'), false);
  assert.equal(isValidTraceparent('00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01'), false, 'lower-case hex only');
});

test('a finished request goes to the metrics, the ring and the access log, once each', async () => {
  const metrics = new WaypointMetrics();
  const recent = new RecentRequests('waypoint-0', 10);
  const lines: string[] = [];
  const out = new Writable({ write: (chunk, _encoding, done) => void (lines.push(String(chunk)), done()) });
  const telemetry = new RequestTelemetry({ metrics, recent, log: new AccessLog(out, { flushIntervalMs: 0 }) });
  telemetry.record(record({ responseCode: 404, responseFlags: ['NR'] }));
  await setImmediate();
  assert.match(await metrics.text(), /istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"[^}]*\} 1/);
  assert.deepEqual(recent.list().map((s) => [s.status, s.flags]), [[404, 'NR']]);
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]!).response_flags, 'NR');
});

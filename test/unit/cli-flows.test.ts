// `meshlet flows`' L7 side: a waypoint's recent request (the summary its
// admin API serves) as a hubble-like row and as a JSON record that says it is
// L7, beside the ztunnels' L4 records, which keep their shape.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { formatList } from '../../cli/flows.ts';
import { L7_HEADER, L7_WIDE_HEADER, l7Record, l7Row, matchesL7, type WaypointPodRef } from '../../cli/l7-flows.ts';
import { REPO_ROOT } from '../../lib/core/repo.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { summaryOf } from '../../waypoint/telemetry/recent-requests.ts';
import { record } from '../waypoint/telemetry-fixtures.ts';

const WAYPOINT: WaypointPodRef = { namespace: 'shop', name: 'waypoint', pod: 'waypoint-6c9f-x2k', node: 'node-2' };

const l7 = (over: Parameters<typeof record>[0] = {}) => l7Record(WAYPOINT, summaryOf('waypoint-6c9f-x2k-1', record({ upstreamHost: '10.244.2.7:8080', routeName: 'shop.web.0', ...over })));

const l4: FlowRecord = {
  id: 'f-1', node: 'node-1', direction: 'outbound',
  source: { ip: '10.244.1.5', port: 40_000, workload: { namespace: 'shop', name: 'client-7d9' } },
  originalDestination: { ip: '10.96.0.10', port: 80 },
  service: { namespace: 'shop', name: 'web' },
  bytesSent: 100, bytesReceived: 2048, state: 'closed', startedAt: '2026-01-01T00:00:01.000Z',
};

test('an L7 row reads like hubble\'s: time, waypoint@node, source, destination, method, authority, path, status, duration, route, flags', () => {
  assert.deepEqual(l7Row(l7(), false), ['00:00:00.000', 'shop/waypoint@node-2', 'shop/client-7d9', 'shop/web-v2-5f6', 'GET', 'web.shop', '/cart/items/42?secret=1', '200', '12ms', 'shop.web.0', '-']);
  assert.equal(l7Row(l7(), false).length, L7_HEADER.length);
  // Wide: where it went, and the ids to find it by in logs and traces.
  const wide = l7Row(l7(), true);
  assert.equal(wide.length, L7_WIDE_HEADER.length);
  assert.deepEqual(wide.slice(L7_HEADER.length), ['10.244.2.7:8080', 'r-1', '0af7651916cd43dd8448eb211c80319c']);
});

test('an L7 row falls back to principals and the Service, shows no response as "-", gRPC\'s status and Envoy\'s flags', () => {
  const noWorkloads = l7({ source: { principal: 'spiffe://cluster.local/ns/shop/sa/client' }, destination: {}, responseCode: 0, responseFlags: ['DC'], durationMs: 3.25 });
  const row = l7Row(noWorkloads, false);
  assert.deepEqual([row[2], row[3], row[7], row[8], row[10]], ['spiffe://cluster.local/ns/shop/sa/client', 'shop/web', '-', '3.3ms', 'DC']);
  const unrouted = l7Row(l7({ service: undefined, destination: {}, responseCode: 404, responseFlags: ['NR'], routeName: undefined, upstreamHost: undefined, traceparent: '' }), true);
  assert.deepEqual([unrouted[3], unrouted[7], unrouted[9], unrouted[10], unrouted[11], unrouted[13]], ['-', '404', '-', 'NR', '-', '-']);
  const grpc = l7Row(l7({ grpc: true, grpcStatus: '14', responseCode: 200, protocol: 'HTTP/2' }), false);
  assert.equal(grpc[7], '200 grpc=14');
});

test('what a client sent reaches the terminal escaped, never as control sequences', () => {
  const row = l7Row(l7({ path: '/\u001b[2Jx\u0007', host: 'web\u009b.shop' }), false);
  assert.deepEqual([row[5], row[6]], ['web\\x9b.shop', '/\\x1b[2Jx\\x07']);
});

test('--namespace keeps requests from, to or for a Service of the namespace', () => {
  const r = l7({ source: { namespace: 'a', workload: 'c' }, destination: { namespace: 'b', workload: 'w' }, service: { namespace: 'c', name: 's' } });
  assert.deepEqual(['a', 'b', 'c', 'd', undefined].map((ns) => matchesL7(r, ns)), [true, true, true, false, true]);
});

test('-o json: L4 records unchanged under "flows", L7 ones under "requests", each with "type": "l7" and its waypoint pod; --type picks one', () => {
  const request = l7();
  const both = JSON.parse(formatList([l4], [request], { output: 'json' }, true)) as { flows: unknown[]; requests: Record<string, unknown>[] };
  assert.deepEqual(both.flows, [l4]);
  assert.equal(both.requests.length, 1);
  const [json] = both.requests;
  assert.equal(json!.type, 'l7');
  assert.deepEqual(json!.waypoint, WAYPOINT);
  assert.deepEqual(
    (({ method, authority, path, status, route, flags, requestId, traceId, upstreamHost, durationMs }) => ({ method, authority, path, status, route, flags, requestId, traceId, upstreamHost, durationMs }))(json!),
    { method: 'GET', authority: 'web.shop', path: '/cart/items/42?secret=1', status: 200, route: 'shop.web.0', flags: '-', requestId: 'r-1', traceId: '0af7651916cd43dd8448eb211c80319c', upstreamHost: '10.244.2.7:8080', durationMs: 12.4 },
  );
  assert.deepEqual(Object.keys(JSON.parse(formatList([l4], [], { output: 'json', type: 'l4' }, false)) as object), ['flows']);
  assert.deepEqual(Object.keys(JSON.parse(formatList([], [request], { output: 'json', type: 'l7' }, true)) as object), ['requests']);
});

test('tables: the L4 one alone without waypoints (as before), the L7 one after it, oldest first', () => {
  const alone = formatList([l4], [], { output: 'table' }, false);
  assert.equal(alone.trimEnd().split('\n').length, 2);
  assert.match(alone, /^TIME\s+NODE\s+DIR/);
  const later = l7({ startTime: '2026-01-01T00:00:09.000Z', path: '/later' });
  const both = formatList([l4], [later, l7()], { output: 'table' }, true);
  const [l4Table, l7Table] = both.trimEnd().split('\n\n');
  assert.match(l4Table!, /shop\/client-7d9\s+shop\/web/);
  const lines = l7Table!.split('\n');
  assert.match(lines[0]!, /^TIME\s+WAYPOINT\s+SOURCE\s+DESTINATION\s+METHOD\s+AUTHORITY\s+PATH\s+STATUS\s+DURATION\s+ROUTE\s+FLAGS$/);
  assert.match(lines[1]!, /^00:00:00\.000\s+shop\/waypoint@node-2\s+shop\/client-7d9\s+shop\/web-v2-5f6\s+GET\s+web\.shop\s+\/cart\/items\/42\?secret=1\s+200\s+12ms\s+shop\.web\.0\s+-$/);
  assert.match(lines[2]!, /^00:00:09\.000 .*\/later/);
  assert.match(formatList([], [l7()], { output: 'wide', type: 'l7' }, true), /UPSTREAM HOST\s+REQUEST ID\s+TRACE ID\n.*10\.244\.2\.7:8080\s+r-1\s+0af7651916cd43dd8448eb211c80319c/);
});

test('meshlet flows --help offers --type l4|l7', async () => {
  const child = spawn(process.execPath, ['cli/main.ts', 'flows', '--help'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);
  assert.match(out, /-t, --type <kind>.*\(choices: "l4", "l7"\)/s);
});

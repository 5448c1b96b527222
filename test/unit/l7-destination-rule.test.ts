// DestinationRules → the ClusterPolicy the upstream side enforces: Istio's
// defaults for what a rule leaves out, its levels (rule, port, subset,
// subset port), which rule applies to a host, and what is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import { convertDestinationRule, DEFAULT_CLUSTER_POLICY, DestinationRuleIndex, OUTLIER_DEFAULTS, type ClusterPolicy, type ConvertedDestinationRule } from '../../lib/l7/index.ts';

const HOST = 'reviews.demo.svc.cluster.local';
const dr = (spec: Record<string, unknown>, name = 'reviews', namespace = 'demo', extra: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace, ...extra }, spec: { host: 'reviews', ...spec },
});
const index = (...rules: ConvertedDestinationRule[]) => new DestinationRuleIndex(rules, { waypointNamespace: 'demo' });
const policyOf = (spec: Record<string, unknown>, port = 9080, subset?: string): ClusterPolicy => index(convertDestinationRule(dr(spec))).clusterPolicy(HOST, port, subset);

const CASES: { name: string; spec: Record<string, unknown>; port?: number; subset?: string; expect: ClusterPolicy }[] = [
  { name: 'no traffic policy: least request, no limits, no ejection', spec: {}, expect: DEFAULT_CLUSTER_POLICY },
  { name: 'LEAST_REQUEST', spec: { trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }, expect: { loadBalancer: { kind: 'least_request' }, connectionPool: {} } },
  { name: 'LEAST_CONN is LEAST_REQUEST', spec: { trafficPolicy: { loadBalancer: { simple: 'LEAST_CONN' } } }, expect: { loadBalancer: { kind: 'least_request' }, connectionPool: {} } },
  { name: 'RANDOM', spec: { trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }, expect: { loadBalancer: { kind: 'random' }, connectionPool: {} } },
  { name: 'consistentHash on a header', spec: { trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: 'X-User' } } } }, expect: { loadBalancer: { kind: 'consistent_hash', hashKey: { kind: 'header', name: 'x-user' } }, connectionPool: {} } },
  { name: 'consistentHash on a cookie with ttl', spec: { trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: 'session', ttl: '60s' } } } } }, expect: { loadBalancer: { kind: 'consistent_hash', hashKey: { kind: 'cookie', name: 'session', ttlMs: 60_000 } }, connectionPool: {} } },
  { name: 'consistentHash on the source IP', spec: { trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true } } } }, expect: { loadBalancer: { kind: 'consistent_hash', hashKey: { kind: 'source_ip' } }, connectionPool: {} } },
  { name: 'consistentHash on a query parameter', spec: { trafficPolicy: { loadBalancer: { consistentHash: { httpQueryParameterName: 'user' } } } }, expect: { loadBalancer: { kind: 'consistent_hash', hashKey: { kind: 'query_parameter', name: 'user' } }, connectionPool: {} } },
  {
    name: 'connection pool limits (0 is unset)',
    spec: { trafficPolicy: { connectionPool: { tcp: { maxConnections: 100 }, http: { http1MaxPendingRequests: 1, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 0 } } } },
    expect: { loadBalancer: { kind: 'least_request' }, connectionPool: { maxConnections: 100, http1MaxPendingRequests: 1, http2MaxRequests: 1000, maxRequestsPerConnection: 10 } },
  },
  {
    name: 'outlier detection: Istio\'s defaults for absent fields',
    spec: { trafficPolicy: { outlierDetection: {} } },
    expect: { loadBalancer: { kind: 'least_request' }, connectionPool: {}, outlierDetection: { consecutive5xxErrors: OUTLIER_DEFAULTS.consecutive5xxErrors, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0 } },
  },
  {
    name: 'outlier detection as written; consecutive5xxErrors 0 turns it off',
    spec: { trafficPolicy: { outlierDetection: { consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: '5m', baseEjectionTime: '15m', maxEjectionPercent: 50, minHealthPercent: 20 } } },
    expect: { loadBalancer: { kind: 'least_request' }, connectionPool: {}, outlierDetection: { consecutiveGatewayErrors: 3, intervalMs: 300_000, baseEjectionTimeMs: 900_000, maxEjectionPercent: 50, minHealthPercent: 20 } },
  },
  {
    name: 'port level settings replace the rule\'s for that port',
    spec: { trafficPolicy: { loadBalancer: { simple: 'RANDOM' }, connectionPool: { tcp: { maxConnections: 5 } }, portLevelSettings: [{ port: { number: 9080 }, loadBalancer: { simple: 'LEAST_REQUEST' } }] } },
    expect: { loadBalancer: { kind: 'least_request' }, connectionPool: { maxConnections: 5 } },
  },
  {
    name: 'another port keeps the rule\'s settings',
    spec: { trafficPolicy: { loadBalancer: { simple: 'RANDOM' }, portLevelSettings: [{ port: { number: 9080 }, loadBalancer: { simple: 'LEAST_REQUEST' } }] } },
    port: 9090,
    expect: { loadBalancer: { kind: 'random' }, connectionPool: {} },
  },
  {
    name: 'a subset\'s policy replaces the rule\'s parts it sets',
    spec: { trafficPolicy: { loadBalancer: { simple: 'RANDOM' }, connectionPool: { tcp: { maxConnections: 5 } } }, subsets: [{ name: 'v2', labels: { version: 'v2' }, trafficPolicy: { connectionPool: { http: { maxRetries: 3 } } } }] },
    subset: 'v2',
    expect: { loadBalancer: { kind: 'random' }, connectionPool: { maxRetries: 3 } },
  },
];

for (const c of CASES) {
  test(`DestinationRule: ${c.name}`, () => {
    assert.deepEqual(policyOf(c.spec, c.port, c.subset), c.expect);
  });
}

test('subsets give their labels; an unknown subset has none', () => {
  const idx = index(convertDestinationRule(dr({ subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2', track: 'canary' } }] })));
  assert.deepEqual(idx.subsetLabels(HOST, 'v2'), { version: 'v2', track: 'canary' });
  assert.equal(idx.subsetLabels(HOST, 'v9'), undefined);
  assert.deepEqual(idx.rulesFor(HOST), ['demo/reviews']);
});

test('rules for one host merge oldest first: the first traffic policy wins, subsets join', () => {
  const older = convertDestinationRule(dr({ trafficPolicy: { loadBalancer: { simple: 'RANDOM' } }, subsets: [{ name: 'v1', labels: { version: 'v1' } }] }, 'b-older', 'demo', { creationTimestamp: '2025-01-01T00:00:00Z' }));
  const newer = convertDestinationRule(dr({ trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } }, subsets: [{ name: 'v1', labels: { version: 'other' } }, { name: 'v2', labels: { version: 'v2' } }] }, 'a-newer', 'demo', { creationTimestamp: '2025-06-01T00:00:00Z' }));
  const idx = index(newer, older);
  assert.deepEqual(idx.clusterPolicy(HOST, 9080).loadBalancer, { kind: 'random' });
  assert.deepEqual(idx.subsetLabels(HOST, 'v1'), { version: 'v1' });
  assert.deepEqual(idx.subsetLabels(HOST, 'v2'), { version: 'v2' });
  assert.deepEqual(idx.rulesFor(HOST), ['demo/b-older', 'demo/a-newer']);
});

test('the waypoint\'s namespace wins over the service\'s, an exact host over a wildcard; hidden and sidecar-only rules do not apply', () => {
  const inService = convertDestinationRule(dr({ trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }));
  const wildcard = { ...convertDestinationRule(dr({ host: '*.demo.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }, 'wild')) };
  const inWaypointNs = convertDestinationRule(dr({ host: HOST, trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }, 'mine', 'mesh-gw'));
  const idx = new DestinationRuleIndex([inService, wildcard, inWaypointNs], { waypointNamespace: 'mesh-gw' });
  assert.deepEqual(idx.clusterPolicy(HOST, 9080).loadBalancer, { kind: 'least_request' });
  assert.deepEqual(index(inService, wildcard).clusterPolicy(HOST, 9080).loadBalancer, { kind: 'random' });
  assert.deepEqual(index(wildcard).clusterPolicy('ratings.demo.svc.cluster.local', 9080).loadBalancer, { kind: 'round_robin' });
  const hidden = convertDestinationRule(dr({ exportTo: ['.'], trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }));
  assert.deepEqual(new DestinationRuleIndex([hidden], { waypointNamespace: 'mesh-gw' }).rulesFor(HOST), []);
  const sidecarOnly = convertDestinationRule(dr({ workloadSelector: { matchLabels: { app: 'x' } }, trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }));
  assert.deepEqual(index(sidecarOnly).rulesFor(HOST), []);
  assert.match(sidecarOnly.warnings.join('\n'), /workloadSelector/);
});

const REJECTED: { name: string; spec: Record<string, unknown>; reason: RegExp }[] = [
  { name: 'PASSTHROUGH', spec: { trafficPolicy: { loadBalancer: { simple: 'PASSTHROUGH' } } }, reason: /^spec\.trafficPolicy\.loadBalancer\.simple PASSTHROUGH is not supported/ },
  { name: 'an unknown simple policy', spec: { trafficPolicy: { loadBalancer: { simple: 'FASTEST' } } }, reason: /loadBalancer\.simple "FASTEST" is not one of/ },
  { name: 'simple and consistentHash', spec: { trafficPolicy: { loadBalancer: { simple: 'RANDOM', consistentHash: { useSourceIp: true } } } }, reason: /sets simple and consistentHash/ },
  { name: 'two hash keys', spec: { trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, httpHeaderName: 'x' } } } }, reason: /exactly one of httpHeaderName/ },
  { name: 'TLS origination', spec: { trafficPolicy: { tls: { mode: 'SIMPLE' } } }, reason: /tls\.mode SIMPLE .* is not supported/ },
  { name: 'a negative limit', spec: { trafficPolicy: { connectionPool: { tcp: { maxConnections: -1 } } } }, reason: /maxConnections must be an integer from 0/ },
  { name: 'the deprecated consecutiveErrors', spec: { trafficPolicy: { outlierDetection: { consecutiveErrors: 5 } } }, reason: /consecutiveErrors is deprecated/ },
  { name: 'a bad interval', spec: { trafficPolicy: { outlierDetection: { interval: '10 seconds' } } }, reason: /interval "10 seconds" is not a duration/ },
  { name: 'a port set twice', spec: { trafficPolicy: { portLevelSettings: [{ port: { number: 80 } }, { port: { number: 80 } }] } }, reason: /sets port 80 twice/ },
  { name: 'a subset named twice', spec: { subsets: [{ name: 'v1' }, { name: 'v1' }] }, reason: /names "v1" twice/ },
  { name: 'a misspelt field', spec: { trafficPolicy: { loadBalancr: {} } }, reason: /spec\.trafficPolicy\.loadBalancr is not a field meshlet knows/ },
  { name: 'an IP host', spec: { host: '10.0.0.1' }, reason: /is an IP address/ },
];

for (const c of REJECTED) {
  test(`DestinationRule rejected: ${c.name}`, () => {
    assert.throws(() => convertDestinationRule(dr(c.spec)), (err: unknown) => err instanceof InvalidObjectError && err.object === 'DestinationRule demo/reviews' && c.reason.test(err.reason));
  });
}

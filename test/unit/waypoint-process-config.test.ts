// The waypoint's view of the cluster, without sockets: objects of the kinds
// it watches built into a config (endpoints with their nodes, identities and
// resolved target ports, ports served by appProtocol), rejected objects kept
// with their reasons while their last good form (or fail-closed stand-in)
// stays in effect, which tunnels the lookup serves, the L4 reading of L7
// policies, and Envoy's retry conditions.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { waypointArgs } from '../../ca/waypoint-objects.ts';
import { addFlags, configArgs } from '../../lib/config/flags.ts';
import { WAYPOINT_FLAGS, type WaypointConfig } from '../../lib/config/waypoint.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { kindName, WAYPOINT_KINDS } from '../../lib/cluster/sources/kube-kinds.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { defaultRetryPolicy, selectRoute, type L7AuthzPolicy, type RetryPolicy } from '../../lib/l7/index.ts';
import { WaypointConfigBuilder } from '../../waypoint/config.ts';
import { declaredProtocol, declaresHttp2 } from '../../waypoint/downstream/protocol.ts';
import { l4PolicyView } from '../../waypoint/l4-authz.ts';
import { waypointLookup } from '../../waypoint/lookup.ts';
import { backoffMs, retriesFailure, retriesResponse } from '../../waypoint/retry-rules.ts';
import { fixtureObjects, NS, WAYPOINT_NAME, type Backend, type ServiceSpec } from '../waypoint/router-fixtures.ts';

const SERVICES: ServiceSpec[] = [
  { name: 'reviews', ports: [9080], versions: ['v1', 'v2'] },
  { name: 'echo', ports: [50051], versions: ['v1'], protocol: 'grpc' },
  { name: 'elsewhere', ports: [80], versions: ['v1'], unbound: true },
];

function backends(): Map<string, Backend> {
  const out = new Map<string, Backend>();
  let n = 10;
  for (const s of SERVICES) for (const version of s.versions) out.set(`${s.name}-${version}`, { name: `${s.name}-${version}`, service: s.name, version, ip: `10.244.2.${n++}`, listening: new Map(), received: [] });
  return out;
}

const BASE = fixtureObjects(SERVICES, backends());
const builder = () => new WaypointConfigBuilder({ gateway: { namespace: NS, name: WAYPOINT_NAME }, trustDomain: 'cluster.local' });
const vs = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: NS }, spec });
const policy = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: NS }, spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: WAYPOINT_NAME }], ...spec } });
const request = (path = '/') => ({ method: 'GET', path, query: '', headers: { host: 'reviews' }, service: { host: `reviews.${NS}.svc.cluster.local`, port: 9080 }, source: { ip: '10.244.1.5' } });

test('the waypoint watches Services, EndpointSlices, Pods, Nodes, Namespaces, the routing resources, AuthorizationPolicies and Gateways', () => {
  assert.deepEqual(WAYPOINT_KINDS.map(kindName), [
    'v1 Service', 'discovery.k8s.io/v1 EndpointSlice', 'v1 Pod', 'v1 Node', 'v1 Namespace',
    'networking.istio.io/v1 VirtualService', 'networking.istio.io/v1 DestinationRule',
    'gateway.networking.k8s.io/v1 HTTPRoute', 'gateway.networking.k8s.io/v1 GRPCRoute',
    'security.istio.io/v1 AuthorizationPolicy', 'gateway.networking.k8s.io/v1 Gateway',
  ]);
});

test('a Service port\'s endpoints: the ready pods, their target port, their node\'s ztunnel, identity and labels; appProtocol declares the port', () => {
  const config = builder().build(BASE);
  assert.deepEqual(config.rejected, []);
  assert.ok(config.gateway, 'its own Gateway is in the state');
  const reviews = config.serviceByHost(`reviews.${NS}.svc.cluster.local`)!;
  const endpoints = config.endpointsOf(reviews, 9080).map((e) => e.endpoint);
  assert.deepEqual(endpoints.map((e) => [e.ip, e.port, e.node.address, e.identity, e.labels.version]), [
    ['10.244.2.10', 9080, '127.0.0.2', spiffeId(NS, 'reviews'), 'v1'],
    ['10.244.2.11', 9080, '127.0.0.2', spiffeId(NS, 'reviews'), 'v2'],
  ]);
  assert.deepEqual(config.endpointsOf(reviews, 1234), [], 'no such port');
  const echo = config.serviceByHost(`echo.${NS}.svc.cluster.local`)!;
  assert.equal(echo.ports[0]!.appProtocol, 'grpc');
  assert.equal(declaresHttp2(declaredProtocol(echo.ports[0]!)), true, 'upstream HTTP/2 for a gRPC port');
  assert.deepEqual(config.workloadPort('10.244.2.12', 50051), { name: 'grpc-50051', appProtocol: 'grpc' }, 'a pod\'s port is declared as the Service sending to it declares it');
});

test('a rejected route keeps its last good form in effect, and says so; a rejected policy\'s stand-in denies what it covered', () => {
  const b = builder();
  const good = vs('reviews', { hosts: ['reviews'], http: [{ match: [{ uri: { prefix: '/v2' } }], route: [{ destination: { host: 'reviews' } }] }] });
  const first = b.build([...BASE, good]);
  assert.equal(selectRoute(first.routes, request('/other')).kind, 'no_route');
  const broken = vs('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }], timeout: 'soon' }] });
  const typo = policy('typo', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] });
  const second = b.build([...BASE, broken, typo]);
  const vsRow = second.rejected.find((r) => r.object === `VirtualService ${NS}/reviews`)!;
  assert.match(vsRow.reason, /timeout "soon" is not a duration/);
  assert.equal(vsRow.lastGoodInEffect, true);
  assert.equal(selectRoute(second.routes, request('/other')).kind, 'no_route', 'the good form still routes');
  const apRow = second.rejected.find((r) => r.object === `AuthorizationPolicy ${NS}/typo`)!;
  assert.ok(apRow.failClosed, 'fails closed');
  assert.equal(second.authz.decide(request()).allowed, false);
  // Deleted, it is gone, last good form and all.
  const third = b.build(BASE);
  assert.deepEqual(third.rejected, []);
  assert.equal(selectRoute(third.routes, request('/other')).kind, 'route');
});

test('the lookup serves only what is bound to this waypoint, and believes a Forwarded claim only from the claimed pod\'s own node and identity', () => {
  const config = builder().build(BASE);
  const lookup = waypointLookup(() => config);
  const sleep = spiffeId('demo', 'sleep');
  const input = (authority: string, claimed?: string, peer = '127.0.0.1') => ({
    authority: { ip: authority.split(':')[0]!, port: Number(authority.split(':')[1]) },
    claimedSource: claimed ? { ip: claimed, port: 40000 } : undefined,
    peer: { ip: peer, port: 50000 },
    identity: sleep,
    baggage: undefined,
  });
  const served = lookup(input('10.96.0.10:9080', '10.244.1.5'));
  assert.equal(served.kind, 'accept');
  if (served.kind === 'accept') {
    assert.equal(served.destination.kind, 'service');
    assert.equal(served.source.workload, 'sleep-0');
    assert.deepEqual(served.sourceAddress, { ip: '10.244.1.5', port: 40000 });
  }
  const forged = lookup(input('10.96.0.10:9080', '10.244.2.10'));
  assert.ok(forged.kind === 'accept' && forged.sourceAddress === undefined && forged.source.workload === undefined, 'a pod on another node is not the peer\'s to claim');
  const wrongNode = lookup(input('10.96.0.10:9080', '10.244.1.5', '127.0.0.2'));
  assert.ok(wrongNode.kind === 'accept' && wrongNode.sourceAddress === undefined, 'the session must come from the claimed pod\'s node');
  assert.deepEqual(lookup(input('10.96.0.12:80')), { kind: 'refuse', reason: 'not_served', detail: `Service ${NS}/elsewhere is bound to no waypoint (istio.io/use-waypoint), so its traffic does not come through one` });
  const unknown = lookup(input('10.96.0.99:80'));
  assert.equal(unknown.kind === 'refuse' ? unknown.reason : unknown.kind, 'unknown_authority');
  assert.deepEqual(lookup(input('10.244.2.10:9080')).kind, 'refuse', 'a pod bound to no waypoint');
  const noGateway = builder().build(BASE.filter((o) => o.kind !== 'Gateway'));
  assert.equal(waypointLookup(() => noGateway)(input('10.96.0.10:9080')).kind, 'refuse', 'without its Gateway the waypoint serves nothing');
});

test('at L4 an ALLOW that needs an HTTP attribute never matches, a DENY applies without it; each policy says what it lost', () => {
  const allow: L7AuthzPolicy = { key: 'demo/get', namespace: 'demo', name: 'get', action: 'ALLOW', targets: [{ kind: 'mesh' }], warnings: [], rules: [{ clauses: [[{ methods: ['GET'] }]] }] };
  const deny: L7AuthzPolicy = { ...allow, key: 'demo/deny', name: 'deny', action: 'DENY', rules: [{ clauses: [[{ paths: ['/admin'], l4: { principals: ['cluster.local/ns/other/sa/curl'] } }]] }] };
  const view = l4PolicyView([allow, deny]);
  assert.equal(view.policies[0]!.rules[0]!.clauses[0]![0]!.never?.includes('methods'), true);
  assert.deepEqual(view.policies[1]!.rules[0]!.clauses[0]![0], { l4: { principals: ['cluster.local/ns/other/sa/curl'] } });
  assert.deepEqual(view.warnings.map((w) => w.object), ['AuthorizationPolicy demo/get', 'AuthorizationPolicy demo/deny']);
});

test('Envoy\'s retry conditions: resets count as 5xx, overflow and no healthy upstream never retry; backoff is jittered exponential', () => {
  const on = (...retryOn: RetryPolicy['retryOn']): RetryPolicy => ({ ...defaultRetryPolicy(), retryOn, retriableStatusCodes: [] });
  const connect = { kind: 'connect_failure', reason: 'upstream_connect_failed', message: '' } as const;
  assert.equal(retriesFailure(on('connect-failure'), connect), true);
  assert.equal(retriesFailure(on('5xx'), { kind: 'remote_reset', refused: false, message: '' }), true);
  assert.equal(retriesFailure(on('refused-stream'), { kind: 'remote_reset', refused: true, message: '' }), true);
  assert.equal(retriesFailure(on('refused-stream'), { kind: 'remote_reset', refused: false, message: '' }), false);
  assert.equal(retriesFailure(on('gateway-error'), { kind: 'timeout' }), true, 'a per-try timeout');
  assert.equal(retriesFailure(on('5xx', 'reset'), { kind: 'overflow', limit: 'pending' }), false);
  assert.equal(retriesFailure(on('5xx'), { kind: 'no_healthy_upstream' }), false);
  assert.equal(retriesResponse(on('gateway-error'), 500, {}), false);
  assert.equal(retriesResponse(on('gateway-error'), 503, {}), true);
  assert.equal(retriesResponse(on('5xx'), 500, {}), true);
  assert.equal(retriesResponse(on('retriable-4xx'), 409, {}), true);
  assert.equal(retriesResponse({ ...on('retriable-status-codes'), retriableStatusCodes: [418] }, 418, {}), true);
  assert.equal(retriesResponse(on('unavailable'), 200, { 'grpc-status': '14', 'content-type': 'application/grpc' }), true);
  assert.equal(retriesResponse(defaultRetryPolicy(), 503, {}), true, 'Istio\'s default retries 503');
  const p = defaultRetryPolicy();
  assert.equal(backoffMs(p, 1, () => 0.999), 24, 'first retry within [0, base)');
  assert.equal(backoffMs(p, 3, () => 0.5), 87, '(2^3 - 1) × 25 × 0.5');
  assert.equal(backoffMs(p, 20, () => 0.999), 249, 'capped at ten times the base');
});

const parseFlags = (args: string[]): WaypointConfig => {
  const command = addFlags(new Command('waypoint').exitOverride(), WAYPOINT_FLAGS);
  command.parse(args, { from: 'user' });
  return command.opts() as WaypointConfig;
};

test('the waypoint\'s flags: what a launcher renders is what it parses back; the controller\'s arguments are accepted as they are', () => {
  const config: WaypointConfig = {
    gateway: 'demo/waypoint', trustDomain: 'example.org', serviceAccount: 'wp', caUrl: 'https://10.200.0.2:15012', caBundle: '/ca.pem', caTokenFile: '/token',
    certTtl: 30, kubeconfig: '/kc', listen: '0.0.0.0:15008', readiness: '[::]:15021', admin: '127.0.0.1:15000', metrics: '127.0.0.1:0', hbonePort: 15008, logLevel: 'warn', drainSeconds: 2,
  };
  assert.deepEqual(parseFlags(configArgs(WAYPOINT_FLAGS, config)), config);
  const fromController = parseFlags(waypointArgs({ namespace: 'demo', name: 'waypoint' }, { image: 'meshlet', caUrl: 'https://ca:15012', trustDomain: 'cluster.local', tokenAudience: 'meshlet-ca' }));
  assert.deepEqual([fromController.gateway, fromController.caUrl, fromController.listen, fromController.readiness, fromController.admin, fromController.metrics, fromController.logLevel], ['demo/waypoint', 'https://ca:15012', '[::]:15008', '[::]:15021', '127.0.0.1:15000', '[::]:15020', 'info']);
  assert.throws(() => parseFlags(['--gateway', 'demo/waypoint', '--listen', '15008']), { code: 'MESHLET_CONFIG', message: /--listen must be an address ip:port/ });
  assert.throws(() => parseFlags(['--gateway', 'demo/Waypoint']), { code: 'MESHLET_CONFIG', message: /is not a Kubernetes name/ });
  assert.throws(() => parseFlags(['--gateway', 'demo/waypoint', '--log-level', 'debug']), { code: 'MESHLET_CONFIG', message: /--log-level must be one of info, warn, error/ });
});

// The converters one object at a time: what each refuses (naming the field
// and the rule), what it accepts with a warning, what it leaves to the
// ztunnel, and the stand-ins rejected waypoint policies become.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import {
  convertGRPCRoute, convertHTTPRoute, convertL7AuthorizationPolicy, convertL7Objects, convertVirtualService, evaluateL7Authz, l7FailClosedEffect,
  l7FailClosedPolicy, L7AuthzSet, RouteTable, selectRoute, type L7Request,
} from '../../lib/l7/index.ts';

const vs = (spec: unknown, namespace = 'demo'): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'r', namespace }, spec });
const hr = (spec: unknown): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo' }, spec });
const gr = (spec: unknown): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'r', namespace: 'demo' }, spec });
const ap = (spec: unknown, namespace = 'demo', extra: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace }, spec, ...extra });
const route = { route: [{ destination: { host: 'reviews' } }] };
const parent = { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }] };
const backend = { backendRefs: [{ name: 'reviews', port: 9080 }] };
const toGateway = { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }] };

function rejects(convert: () => unknown, object: string, reason: RegExp): void {
  assert.throws(convert, (err: unknown) => {
    assert.ok(err instanceof InvalidObjectError, `not an InvalidObjectError: ${String(err)}`);
    assert.equal(err.object, object);
    assert.match(err.reason, reason);
    return true;
  });
}

const VS_REJECTED: [string, unknown, RegExp][] = [
  ['no hosts', { http: [route] }, /spec\.hosts is empty/],
  ['a wrong apiVersion', null, /apiVersion/],
  ['a rule without an action', { hosts: ['reviews'], http: [{ match: [{ uri: { prefix: '/' } }] }] }, /spec\.http\[0\] has no action/],
  ['redirect with directResponse', { hosts: ['reviews'], http: [{ redirect: { uri: '/a' }, directResponse: { status: 200 } }] }, /sets redirect and directResponse/],
  ['rewrite on a redirect', { hosts: ['reviews'], http: [{ redirect: { uri: '/a' }, rewrite: { uri: '/b' } }] }, /rewrite applies only to a rule that forwards/],
  ['a string match with two kinds', { hosts: ['reviews'], http: [{ match: [{ uri: { exact: '/a', prefix: '/a' } }], ...route }] }, /sets exact and prefix/],
  ['rewrite.uri on a regex match', { hosts: ['reviews'], http: [{ match: [{ uri: { regex: '/a.*' } }], rewrite: { uri: '/b' }, ...route }] }, /cannot rewrite a path matched by a regex/],
  ['uri and uriRegexRewrite', { hosts: ['reviews'], http: [{ rewrite: { uri: '/b', uriRegexRewrite: { match: 'a', rewrite: 'b' } }, ...route }] }, /sets uri and uriRegexRewrite/],
  ['mirror and mirrors', { hosts: ['reviews'], http: [{ mirror: { host: 'm' }, mirrors: [{ destination: { host: 'm' } }], ...route }] }, /sets mirror and mirrors/],
  ['a mirror percentage over 100', { hosts: ['reviews'], http: [{ mirror: { host: 'm' }, mirrorPercentage: { value: 150 }, ...route }] }, /mirrorPercentage\.value must be a number from 0 to 100/],
  ['an unknown retry condition', { hosts: ['reviews'], http: [{ retries: { attempts: 2, retryOn: '5xx,sometimes' }, ...route }] }, /"sometimes", which is not a retry condition/],
  ['an abort status out of range', { hosts: ['reviews'], http: [{ fault: { abort: { httpStatus: 99, percentage: { value: 1 } } }, ...route }] }, /abort\.httpStatus must be an integer from 200 to 599/],
  ['an unknown gRPC status', { hosts: ['reviews'], http: [{ fault: { abort: { grpcStatus: 'BROKEN' } }, ...route }] }, /"BROKEN" is not a gRPC status/],
  ['a delay without fixedDelay', { hosts: ['reviews'], http: [{ fault: { delay: { percentage: { value: 10 } } }, ...route }] }, /delay needs fixedDelay/],
  ['a redirect code Envoy does not send', { hosts: ['reviews'], http: [{ redirect: { uri: '/x', redirectCode: 305 } }] }, /redirectCode 305 is not a redirect Envoy sends/],
  ['delegate', { hosts: ['reviews'], http: [{ delegate: { name: 'x' } }] }, /delegate is not supported/],
  ['corsPolicy', { hosts: ['reviews'], http: [{ corsPolicy: {}, ...route }] }, /corsPolicy is not supported/],
  ['a header value with a newline', { hosts: ['reviews'], http: [{ headers: { request: { set: { x: 'a\nb' } } }, ...route }] }, /holds a control character/],
  ['a header name that is no token', { hosts: ['reviews'], http: [{ headers: { request: { set: { 'bad name': 'v' } } }, ...route }] }, /is not an HTTP header name/],
  ['a bad exportTo', { hosts: ['reviews'], exportTo: ['Not A Namespace'], http: [route] }, /exportTo\[0\]/],
  ['a negative weight', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'a' }, weight: -1 }, { destination: { host: 'b' }, weight: 2 }] }] }, /weight must be an integer from 0/],
];

for (const [name, spec, reason] of VS_REJECTED) {
  test(`VirtualService rejected: ${name}`, () => {
    const obj = spec === null ? { ...vs({}), apiVersion: 'networking.istio.io/v2' } : vs(spec);
    rejects(() => convertVirtualService(obj), 'VirtualService demo/r', reason);
  });
}

test('VirtualService: hosts resolve in its namespace; what waypoints never apply is dropped with a warning', () => {
  const v = convertVirtualService(vs({
    hosts: ['reviews', 'ratings.other.svc.cluster.local', '*.example.com'],
    tcp: [{ route: [{ destination: { host: 'x' } }] }],
    http: [
      { match: [{ sourceLabels: { app: 'a' } }], ...route },
      { match: [{ gateways: ['ingress'] }], ...route },
      { match: [{ headers: { method: { exact: 'GET' } } }], ...route },
      route,
    ],
  }));
  assert.deepEqual(v.hosts, ['reviews.demo.svc.cluster.local', 'ratings.other.svc.cluster.local', '*.example.com']);
  // The source-label rule and the gateway-only rule are gone; the header rule lost its pseudo-header condition.
  assert.equal(v.rules.length, 2);
  assert.deepEqual(v.rules[0]!.matches[0]!.headers, []);
  const warnings = v.warnings.join('\n');
  assert.match(warnings, /spec\.tcp is not applied/);
  assert.match(warnings, /sourceLabels/);
  assert.match(warnings, /\["method"\] is ignored/);
  const gatewayOnly = convertVirtualService(vs({ hosts: ['reviews'], gateways: ['istio-system/ingress'], http: [route] }));
  assert.deepEqual(gatewayOnly.rules, []);
});

const HR_REJECTED: [string, unknown, RegExp][] = [
  ['a Service parent by sectionName', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', sectionName: 'http' }] }, /sectionName selects a Service port by name/],
  ['a path not starting with /', { ...parent, rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'api' } }], ...backend }] }, /must start with "\/"/],
  ['a path with //', { ...parent, rules: [{ matches: [{ path: { type: 'Exact', value: '/a//b' } }], ...backend }] }, /must not contain "\/\/"/],
  ['an unknown path type', { ...parent, rules: [{ matches: [{ path: { type: 'Glob', value: '/a' } }], ...backend }] }, /path\.type "Glob" is not one of/],
  ['an unknown method', { ...parent, rules: [{ matches: [{ method: 'BREW' }], ...backend }] }, /method "BREW" is not one of/],
  ['two RequestHeaderModifiers', { ...parent, rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: '1' }] } }, { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'b', value: '1' }] } }], ...backend }] }, /repeats a RequestHeaderModifier filter/],
  ['one header acted on twice', { ...parent, rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: '1' }], remove: ['A'] } }], ...backend }] }, /acts on header "a" more than once/],
  ['a filter type without its field', { ...parent, rules: [{ filters: [{ type: 'URLRewrite' }], ...backend }] }, /does not set urlRewrite/],
  ['CORS', { ...parent, rules: [{ filters: [{ type: 'CORS', cors: {} }], ...backend }] }, /CORS filter is not supported/],
  ['a redirect status outside the enum', { ...parent, rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }] }] }, /statusCode 304 is not one of/],
  ['backendRequest longer than request', { ...parent, rules: [{ timeouts: { request: '1s', backendRequest: '2s' }, ...backend }] }, /backendRequest is longer than timeouts\.request/],
  ['retry codes outside 400-599', { ...parent, rules: [{ retry: { codes: [302] }, ...backend }] }, /codes\[0\] must be an integer from 400 to 599/],
  ['mirror percent and fraction', { ...parent, rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 }, percent: 5, fraction: { numerator: 1 } } }], ...backend }] }, /sets percent and fraction/],
  ['a backendRef filter other than header modifiers', { ...parent, rules: [{ backendRefs: [{ name: 'reviews', port: 9080, filters: [{ type: 'RequestMirror', requestMirror: {} }] }] }] }, /takes only RequestHeaderModifier and ResponseHeaderModifier/],
];

for (const [name, spec, reason] of HR_REJECTED) {
  test(`HTTPRoute rejected: ${name}`, () => rejects(() => convertHTTPRoute(hr(spec)), 'HTTPRoute demo/r', reason));
}

test('HTTPRoute: unenforceable filters answer 500 rather than being skipped; foreign parents and mirrors are dropped with a warning', () => {
  const r = convertHTTPRoute(hr({
    parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }, { group: 'networking.istio.io', kind: 'ServiceEntry', name: 'ext' }],
    rules: [
      { matches: [{ path: { type: 'Exact', value: '/auth' } }], filters: [{ type: 'ExternalAuth', externalAuth: { protocol: 'HTTP' } }], ...backend },
      { filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { group: 'example.com', kind: 'Bucket', name: 'b' } } }], ...backend },
    ],
  }));
  assert.deepEqual(r.parents, [{ kind: 'service', namespace: 'demo', name: 'reviews' }]);
  assert.deepEqual(r.rules[0]!.action, { kind: 'direct', response: { status: 500 } });
  assert.equal(r.rules[1]!.action.kind === 'forward' && r.rules[1]!.action.mirrors.length, 0);
  const warnings = r.warnings.join('\n');
  assert.match(warnings, /ServiceEntry, which a waypoint does not route for/);
  assert.match(warnings, /ExternalAuth filter .* answers 500/);
  assert.match(warnings, /requestMirror is dropped: example\.com\/Bucket demo\/b is not a Service/);
});

test('HTTPRoute: defaults from the spec', () => {
  const r = convertHTTPRoute(hr({ ...parent, rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }, { name: 'ratings', namespace: 'other', port: 80, weight: 3 }] }] }));
  assert.deepEqual(r.rules[0]!.matches, [{ headers: [], withoutHeaders: [], queryParams: [], path: { kind: 'segment_prefix', value: '' } }]);
  const a = r.rules[0]!.action;
  assert.ok(a.kind === 'forward');
  assert.deepEqual(a.destinations.map((d) => ('backend' in d ? [d.backend.host, d.weight] : d.invalid)), [['reviews.demo.svc.cluster.local', 1], ['ratings.other.svc.cluster.local', 3]]);
  // No rules at all: one rule matching everything, without backends: 500.
  assert.deepEqual(convertHTTPRoute(hr(parent)).rules[0]!.action, { kind: 'direct', response: { status: 500 } });
});

test('GRPCRoute: a method match names a service or a method; exact names have gRPC\'s shape', () => {
  rejects(() => convertGRPCRoute(gr({ ...parent, rules: [{ matches: [{ method: { type: 'Exact' } }], ...backend }] })), 'GRPCRoute demo/r', /must set service or method/);
  rejects(() => convertGRPCRoute(gr({ ...parent, rules: [{ matches: [{ method: { service: 'a/b' } }], ...backend }] })), 'GRPCRoute demo/r', /is not a gRPC service name/);
  rejects(() => convertGRPCRoute(gr({ ...parent, rules: [{ timeouts: { request: '1s' }, ...backend }] })), 'GRPCRoute demo/r', /timeouts is not a field meshlet knows/);
});

const AP_REJECTED: [string, unknown, RegExp, string?][] = [
  ['selector and targetRefs', { ...toGateway, selector: { matchLabels: { app: 'a' } } }, /sets selector and targetRefs/],
  ['a target in another namespace', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews', namespace: 'other' }] }, /targets objects in its own namespace only/],
  ['a GatewayClass outside the root namespace', { targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }] }, /from the root namespace meshlet-system only/],
  ['a target of another kind', { targetRefs: [{ kind: 'Deployment', group: 'apps', name: 'x' }] }, /a waypoint policy targets a gateway\.networking\.k8s\.io Gateway or GatewayClass, or a Service/],
  ['CUSTOM', { ...toGateway, action: 'CUSTOM', provider: { name: 'x' } }, /action CUSTOM needs an external authorizer/],
  ['a DENY without rules', { ...toGateway, action: 'DENY' }, /DENY policy without rules never matches/],
  ['an unknown condition', { ...toGateway, rules: [{ when: [{ key: 'request.time', values: ['now'] }] }] }, /"request\.time" is not a condition/],
  ['a path template with ** not last', { ...toGateway, rules: [{ to: [{ operation: { paths: ['/{**}/x/{*}'] } }] }] }, /\{\*\*\} must be the last operator/],
  ['a path template with text beside an operator', { ...toGateway, rules: [{ to: [{ operation: { paths: ['/foo/{*}.txt'] } }] }] }, /appear only as a whole \{\*\} or \{\*\*\} segment/],
  ['a pattern with * in the middle', { ...toGateway, rules: [{ to: [{ operation: { methods: ['G*T'] } }] }] }, /puts \* in the middle/],
  ['serviceAccounts with principals', { ...toGateway, rules: [{ from: [{ source: { serviceAccounts: ['sleep'], principals: ['x'] } }] }] }, /serviceAccounts together with principals/],
];

for (const [name, spec, reason] of AP_REJECTED) {
  test(`waypoint AuthorizationPolicy rejected: ${name}`, () => rejects(() => convertL7AuthorizationPolicy(ap(spec)), 'AuthorizationPolicy demo/p', reason));
}

test('waypoint AuthorizationPolicy: selector, namespace-wide and AUDIT policies are not the waypoint\'s', () => {
  assert.equal(convertL7AuthorizationPolicy(ap({ selector: { matchLabels: { app: 'a' } }, rules: [{}] })), null);
  assert.equal(convertL7AuthorizationPolicy(ap({ rules: [{}] })), null);
  assert.equal(convertL7AuthorizationPolicy(ap({ ...toGateway, action: 'AUDIT', rules: [{}] })), null);
});

const request = (overrides: Partial<L7Request> = {}): L7Request => ({
  method: 'GET', service: { host: 'reviews.demo.svc.cluster.local', port: 9080, address: '10.96.0.10' }, path: '/', query: '', headers: { host: 'reviews' },
  source: { ip: '10.244.1.5', principal: 'spiffe://cluster.local/ns/demo/sa/sleep' }, ...overrides,
});
const decide = (spec: unknown, r: L7Request = request()) => {
  const policy = convertL7AuthorizationPolicy(ap(spec));
  assert.ok(policy);
  return { policy, decision: evaluateL7Authz(new L7AuthzSet([policy], { waypoint: { namespace: 'demo', name: 'waypoint' } }), r) };
};

test('waypoint AuthorizationPolicy: attributes no request has (JWTs, SNI) never match, and their negation always does', () => {
  const jwt = decide({ ...toGateway, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
  assert.equal(jwt.decision.allowed, false);
  assert.match(jwt.policy.warnings.join('\n'), /request principals come from JWTs/);
  assert.equal(decide({ ...toGateway, action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] }).decision.allowed, false, 'require-JWT DENY denies');
  assert.equal(decide({ ...toGateway, rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }).decision.allowed, false);
  assert.equal(decide({ ...toGateway, rules: [{ when: [{ key: 'request.auth.claims[iss]', notValues: ['x'] }] }] }).decision.allowed, true);
});

test('waypoint AuthorizationPolicy: L4 fields run on the client identity; a source that is no IP never gains access', () => {
  assert.equal(decide({ ...toGateway, rules: [{ from: [{ source: { serviceAccounts: ['sleep'] } }] }] }).decision.allowed, true);
  assert.equal(decide({ ...toGateway, rules: [{ to: [{ operation: { ports: ['9080'] } }] }] }).decision.allowed, true);
  assert.equal(decide({ ...toGateway, rules: [{ when: [{ key: 'destination.ip', values: ['10.96.0.0/16'] }] }] }).decision.allowed, true);
  const garbled = request({ source: { ip: 'not-an-ip', principal: 'spiffe://cluster.local/ns/demo/sa/sleep' } });
  assert.equal(decide({ ...toGateway, rules: [{ from: [{ source: { namespaces: ['demo'] } }] }] }, garbled).decision.allowed, false);
  assert.equal(decide({ ...toGateway, action: 'DENY', rules: [{ from: [{ source: { notNamespaces: ['demo'] } }] }] }, garbled).decision.allowed, false);
});

test('fail closed: a rejected waypoint policy DENYs what it targeted, its namespace when its targets cannot be read, the mesh from the root namespace', () => {
  const readable = l7FailClosedPolicy(ap({ ...toGateway, action: 'SOMETIMES' }), 'bad action');
  assert.deepEqual(readable?.targets, [{ kind: 'gateway', namespace: 'demo', name: 'waypoint' }]);
  assert.equal(readable?.action, 'DENY');
  assert.equal(l7FailClosedEffect(readable!), 'fails closed: denies every request through waypoint demo/waypoint');
  assert.deepEqual(l7FailClosedPolicy(ap({ targetRefs: 'reviews' }), 'x')?.targets, [{ kind: 'namespace', namespace: 'demo' }]);
  assert.deepEqual(l7FailClosedPolicy(ap({ targetRefs: [7] }, 'meshlet-system'), 'x')?.targets, [{ kind: 'mesh' }]);
  assert.deepEqual(l7FailClosedPolicy(ap({ targetRefs: 'x' }, undefined, { metadata: { name: 'p', namespace: '../x' } }), 'x')?.targets, [{ kind: 'mesh' }]);
  // Not the waypoint's: the ztunnel's stand-in covers them.
  assert.equal(l7FailClosedPolicy(ap({ selector: { matchLabels: { app: '*' } } }), 'x'), null);
  assert.equal(l7FailClosedPolicy(ap({ ...toGateway, action: 'AUDIT' }), 'x'), null);
  assert.equal(l7FailClosedPolicy(vs({}), 'x'), null);
});

test('convertL7Objects never throws, refuses a second object of one name, ignores other kinds', () => {
  const junk: KubeObject[] = [
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: 'nope', spec: 7 },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'x', namespace: 'demo' }, spec: { rules: 'all' } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } },
    vs({ hosts: ['reviews'], http: [route] }),
    vs({ hosts: ['ratings'], http: [route] }),
  ];
  const { config, rejected } = convertL7Objects(junk);
  assert.equal(config.routes.length, 1);
  assert.deepEqual(rejected.map((r) => r.object), ['VirtualService <no name>', 'HTTPRoute demo/x', 'VirtualService demo/r']);
  assert.ok(rejected.every((r) => r.reason.length > 0 && r.rule === 'invalid'));
});

test('the route table reports a VirtualService that Gateway API routes shadow', () => {
  const { config } = convertL7Objects([vs({ hosts: ['reviews'], http: [route] }), hr({ ...parent, rules: [backend] })]);
  const table = new RouteTable(config.routes, { waypoint: { namespace: 'demo', name: 'waypoint' } });
  assert.deepEqual(table.notes.map((n) => n.object), ['VirtualService demo/r']);
  assert.match(table.notes[0]!.message, /shadowed for reviews\.demo\.svc\.cluster\.local/);
});

test('a header condition on "constructor" sees the request\'s header, not Object.prototype\'s', () => {
  const { config } = convertL7Objects([vs({ hosts: ['reviews'], http: [{ match: [{ headers: { constructor: {} } }], route: [{ destination: { host: 'ratings' } }] }, route] })]);
  const table = new RouteTable(config.routes, { waypoint: { namespace: 'demo', name: 'waypoint' } });
  const pick = (headers: Record<string, string>) => {
    const s = selectRoute(table, request({ headers }));
    return s.kind === 'route' && s.action.kind === 'forward' ? s.action.backend.host : s.kind;
  };
  assert.equal(pick({}), 'reviews.demo.svc.cluster.local');
  assert.equal(pick({ constructor: 'x' }), 'ratings.demo.svc.cluster.local');
});

test('L7AuthzSet.governs: which services a waypoint policy covers (the ztunnel refuses bypass for them)', () => {
  const { config } = convertL7Objects([
    ap({ targetRefs: [{ kind: 'Service', group: '', name: 'ratings' }], rules: [{}] }),
  ]);
  const set = new L7AuthzSet(config.authorizationPolicies, { waypoint: { namespace: 'demo', name: 'waypoint' } });
  assert.equal(set.governs('ratings.demo.svc.cluster.local'), true);
  assert.equal(set.governs('reviews.demo.svc.cluster.local'), false);
  const all = new L7AuthzSet(convertL7Objects([ap({ ...toGateway, rules: [{}] })]).config.authorizationPolicies, { waypoint: { namespace: 'demo', name: 'waypoint' } });
  assert.equal(all.governs('reviews.demo.svc.cluster.local'), true);
});

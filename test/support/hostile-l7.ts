// fast-check arbitraries for routing objects a hostile or careless user could
// apply: VirtualServices, HTTPRoutes, GRPCRoutes, DestinationRules and
// waypoint AuthorizationPolicies shaped like the real thing, with wrong
// types, odd strings, RE2 and non-RE2 regexes, and junk where values belong.
import fc from 'fast-check';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { hostileString } from './hostile.ts';

const junk: fc.Arbitrary<unknown> = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(undefined, null, -1, 1e309, '', [], {}));
/** Mostly `usual`, sometimes anything. */
const maybe = <T>(usual: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 60, arbitrary: usual }, { weight: 1, arbitrary: junk });
/** Mostly `usual`, now and then `odd`: objects must get past the first checks to meet the later ones. */
const mostly = <T, U>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<U>): fc.Arbitrary<T | U> => fc.oneof({ weight: 15, arbitrary: usual }, { weight: 1, arbitrary: odd });
const some = <T>(a: fc.Arbitrary<T>, maxLength = 2) => maybe(fc.array(a, { maxLength }));
const opt = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T) => maybe(fc.record(fields, { requiredKeys: [] }));

const name = maybe(fc.constantFrom('reviews', 'ratings', 'web', 'waypoint', 'x'));
const namespace = maybe(fc.constantFrom('demo', 'other', 'meshlet-system'));
const meta = maybe(fc.record({ name, namespace, creationTimestamp: mostly(fc.constantFrom('2025-01-01T00:00:00Z', '2025-06-01T00:00:00Z', undefined), fc.constant('later')) }, { requiredKeys: ['name', 'namespace'] }));
const host = mostly(fc.constantFrom('reviews', 'ratings', 'ratings.demo.svc.cluster.local', '*.demo.svc.cluster.local'), fc.oneof(fc.constantFrom('*', '10.0.0.1', 'Bad_Host', 'a..b'), hostileString, junk));
const path = mostly(fc.constantFrom('/', '/api', '/api/', '/v2'), fc.oneof(fc.constantFrom('/items/{id}', 'nope', '//', '/a/../b', '/%2F'), hostileString, junk));
const regex = mostly(fc.constantFrom('/items/[0-9]+', '(?i).*x.*', '*', '(?P<n>a)', '/api/.*'), fc.oneof(fc.constantFrom('(?=a)', '(a)\\1', '[[:alpha:]]', '(unclosed', 'a{5000}', '\\p{L}'), hostileString, junk));
const duration = mostly(fc.constantFrom('1s', '250ms', '1h30m', '1.5s'), fc.oneof(fc.constantFrom('0s', '10', 'soon', '99999h'), hostileString, junk));
const port = mostly(fc.constantFrom(80, 9080, undefined), fc.oneof(fc.constantFrom(0, 65536), fc.integer({ min: -2, max: 70000 }), junk));
const headerName = mostly(fc.constantFrom('x-user', 'End-User', 'x-token'), fc.oneof(fc.constantFrom(':authority', 'method', 'bad name', '', '__proto__', 'constructor'), hostileString, junk));
const text = mostly(fc.constantFrom('v1', 'jason', 'secret-*'), fc.oneof(fc.constantFrom('', 'a\nb'), hostileString, junk));

const stringMatch = maybe(fc.oneof(
  fc.record({ exact: text }), fc.record({ prefix: text }), fc.record({ regex }), fc.constant({}), fc.record({ exact: text, prefix: text }),
));
const headerMap = maybe(fc.dictionary(fc.oneof(fc.constantFrom('x-user', 'method', 'Bad Name'), hostileString), stringMatch, { maxKeys: 2 }));
const destination = opt({ host, subset: maybe(fc.constantFrom('v1', 'v2', 'bad subset')), port: opt({ number: port }) });
const headerOps = opt({ set: maybe(fc.dictionary(fc.constantFrom('x-a', ':authority', 'bad name', '__proto__'), text, { maxKeys: 2 })), add: maybe(fc.dictionary(fc.constantFrom('x-b'), text, { maxKeys: 1 })), remove: some(headerName) });
const percent = opt({ value: maybe(fc.oneof(fc.double({ min: -10, max: 200, noNaN: true }), fc.constant(50))) });

const httpMatch = opt({
  uri: stringMatch, method: stringMatch, authority: stringMatch, headers: headerMap, withoutHeaders: headerMap, queryParams: headerMap,
  ignoreUriCase: maybe(fc.boolean()), port, sourceNamespace: namespace, gateways: some(fc.constantFrom('mesh', 'ingress')), sourceLabels: maybe(fc.constant({ app: 'x' })),
});
const routeList = some(opt({ destination, weight: maybe(fc.integer({ min: -1, max: 200 })), headers: opt({ request: headerOps, response: headerOps }) }), 3);
const redirect = opt({ uri: path, authority: host, redirectCode: mostly(fc.constantFrom(301, 302, 308, undefined), fc.constant(305)), scheme: mostly(fc.constantFrom('https', undefined), fc.constant('h t t p')), port, derivePort: mostly(fc.constantFrom('FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT', undefined), fc.constant('ELSEWHERE')), prefixRewrite: mostly(fc.constant(undefined), path) });
const directResponse = opt({ status: mostly(fc.constantFrom(200, 503), fc.constant(99)), body: opt({ string: text }) });
const forwardFields = {
  route: routeList,
  rewrite: mostly(fc.constant(undefined), opt({ uri: path, authority: host, uriRegexRewrite: mostly(fc.constant(undefined), opt({ match: regex, rewrite: text })) })),
  timeout: mostly(fc.constant(undefined), duration),
  retries: mostly(fc.constant(undefined), opt({ attempts: maybe(fc.integer({ min: -1, max: 200 })), perTryTimeout: duration, retryOn: mostly(fc.constantFrom('5xx,reset', '503', 'gateway-error,connect-failure'), fc.constantFrom('sometimes', '')) })),
  mirror: mostly(fc.constant(undefined), destination),
  mirrorPercentage: mostly(fc.constant(undefined), percent),
  mirrors: mostly(fc.constant(undefined), some(opt({ destination, percentage: percent }))),
};
const httpRule = mostly(fc.oneof(
  fc.record({ name: mostly(fc.constant(undefined), text), match: some(httpMatch), ...forwardFields, fault: mostly(fc.constant(undefined), opt({ delay: opt({ fixedDelay: duration, percentage: percent }), abort: opt({ httpStatus: mostly(fc.constantFrom(503, 418), fc.constant(99)), percentage: percent }) })), headers: opt({ request: headerOps, response: headerOps }) }, { requiredKeys: ['route'] }),
  fc.record({ match: some(httpMatch), redirect }, { requiredKeys: ['redirect'] }),
  fc.record({ match: some(httpMatch), directResponse, headers: opt({ request: headerOps, response: headerOps }) }, { requiredKeys: ['directResponse'] }),
), junk);

export const hostileVirtualService: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: mostly(fc.constantFrom('networking.istio.io/v1', 'networking.istio.io/v1beta1'), fc.constant('networking.istio.io/v9')),
  kind: fc.constant('VirtualService'),
  metadata: meta,
  spec: maybe(fc.record({ hosts: maybe(fc.array(host, { minLength: 1, maxLength: 2 })), gateways: mostly(fc.constant(undefined), some(fc.constantFrom('mesh', 'ingress'))), exportTo: mostly(fc.constant(undefined), some(fc.constantFrom('.', '*', 'demo', 'Bad NS'))), http: some(httpRule, 3) }, { requiredKeys: ['hosts'] })),
});

const parentRef = mostly(fc.record({ group: fc.constant(''), kind: fc.constant('Service'), name: fc.constantFrom('reviews', 'ratings'), port }, { requiredKeys: ['group', 'kind', 'name'] }), opt({ group: maybe(fc.constantFrom('', 'core', 'gateway.networking.k8s.io', 'networking.istio.io')), kind: maybe(fc.constantFrom('Service', 'Gateway', 'ServiceEntry')), name, namespace, port, sectionName: maybe(fc.constantFrom(undefined, 'mesh', 'http')) }));
const backendRef = mostly(fc.record({ name: fc.constantFrom('reviews', 'ratings'), port: fc.constantFrom(80, 9080), weight: mostly(fc.constantFrom(undefined, 0, 1, 9), fc.constant(-1)) }, { requiredKeys: ['name', 'port'] }), opt({ group: maybe(fc.constantFrom('', 'example.com')), kind: maybe(fc.constantFrom('Service', 'Bucket')), name, namespace, port, weight: maybe(fc.integer({ min: -1, max: 5 })) }));
const headerList = some(opt({ name: headerName, value: text }));
const headerFilter = opt({ set: headerList, add: headerList, remove: some(headerName) });
const pathModifier = opt({ type: maybe(fc.constantFrom('ReplaceFullPath', 'ReplacePrefixMatch', 'Other')), replaceFullPath: path, replacePrefixMatch: path });
const filter = maybe(fc.oneof(
  fc.record({ type: fc.constant('RequestHeaderModifier'), requestHeaderModifier: headerFilter }),
  fc.record({ type: fc.constant('ResponseHeaderModifier'), responseHeaderModifier: headerFilter }),
  fc.record({ type: fc.constant('RequestMirror'), requestMirror: opt({ backendRef, percent: maybe(fc.integer({ min: -1, max: 101 })), fraction: opt({ numerator: maybe(fc.integer({ min: -1, max: 3 })), denominator: maybe(fc.integer({ min: 0, max: 3 })) }) }) }),
  fc.record({ type: fc.constant('RequestRedirect'), requestRedirect: opt({ scheme: maybe(fc.constantFrom('http', 'https', 'ftp')), hostname: host, path: pathModifier, port, statusCode: maybe(fc.constantFrom(301, 302, 304)) }) }),
  fc.record({ type: fc.constant('URLRewrite'), urlRewrite: opt({ hostname: host, path: pathModifier }) }),
  fc.record({ type: fc.constantFrom('ExtensionRef', 'CORS', 'ExternalAuth', 'Bogus'), extensionRef: maybe(fc.constant({ name: 'x' })) }),
));
const gatewayMatch = opt({
  path: mostly(opt({ type: fc.constantFrom('Exact', 'PathPrefix'), value: path }), opt({ type: maybe(fc.constantFrom('RegularExpression', 'Glob')), value: maybe(fc.oneof(path, regex)) })),
  headers: some(opt({ type: maybe(fc.constantFrom('Exact', 'RegularExpression')), name: headerName, value: maybe(fc.oneof(text, regex)) })),
  queryParams: some(opt({ type: maybe(fc.constantFrom('Exact', 'RegularExpression')), name: text, value: text })),
  method: mostly(fc.constantFrom('GET', 'POST', undefined), fc.constant('BREW')),
});
const gatewayRule = opt({
  matches: some(gatewayMatch),
  filters: mostly(fc.constant(undefined), some(filter, 2)),
  backendRefs: some(backendRef, 3),
  timeouts: mostly(fc.constant(undefined), opt({ request: duration, backendRequest: duration })),
  retry: mostly(fc.constant(undefined), opt({ attempts: maybe(fc.integer({ min: -1, max: 5 })), codes: some(fc.constantFrom(503, 302, 599)), backoff: duration })),
});

export const hostileHTTPRoute: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: mostly(fc.constantFrom('gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'), fc.constant('gateway.networking.k8s.io/v0')),
  kind: fc.constant('HTTPRoute'),
  metadata: meta,
  spec: opt({ parentRefs: some(parentRef), hostnames: mostly(fc.constant(undefined), some(host)), rules: some(gatewayRule, 3) }),
});

const grpcRule = opt({
  matches: some(opt({ method: opt({ type: maybe(fc.constantFrom('Exact', 'RegularExpression')), service: maybe(fc.constantFrom('echo.Echo', 'a/b', 'echo\\..*')), method: maybe(fc.constantFrom('Ping', '(?=x)')) }), headers: some(opt({ name: headerName, value: text })) })),
  filters: some(filter),
  backendRefs: some(backendRef),
});

export const hostileGRPCRoute: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constantFrom('gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1alpha2'),
  kind: fc.constant('GRPCRoute'),
  metadata: meta,
  spec: opt({ parentRefs: some(parentRef), rules: some(grpcRule) }),
});

const hashKey = mostly(fc.oneof(
  fc.record({ httpHeaderName: headerName }), fc.record({ useSourceIp: fc.constant(true) }), fc.record({ httpCookie: opt({ name: text, ttl: duration }) }), fc.record({ httpQueryParameterName: text }),
), opt({ httpHeaderName: headerName, useSourceIp: maybe(fc.boolean()) }));
const trafficPolicy = opt({
  loadBalancer: mostly(fc.oneof(fc.record({ simple: fc.constantFrom('ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM') }), fc.record({ consistentHash: hashKey })), opt({ simple: maybe(fc.constantFrom('PASSTHROUGH', 'FAST')), consistentHash: hashKey })),
  connectionPool: opt({ tcp: opt({ maxConnections: maybe(fc.integer({ min: -1, max: 100 })) }), http: opt({ http1MaxPendingRequests: maybe(fc.integer({ min: -1, max: 100 })), maxRetries: maybe(fc.integer({ min: -1, max: 5 })) }) }),
  outlierDetection: opt({ consecutive5xxErrors: maybe(fc.integer({ min: -1, max: 10 })), consecutiveGatewayErrors: maybe(fc.integer({ min: 0, max: 10 })), interval: duration, baseEjectionTime: duration, maxEjectionPercent: maybe(fc.integer({ min: -1, max: 101 })) }),
  portLevelSettings: some(opt({ port: opt({ number: port }), loadBalancer: opt({ simple: maybe(fc.constantFrom('RANDOM')) }) })),
  tls: mostly(fc.constant(undefined), opt({ mode: maybe(fc.constantFrom('ISTIO_MUTUAL', 'SIMPLE', 'DISABLE')) })),
});

export const hostileDestinationRule: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constantFrom('networking.istio.io/v1', 'networking.istio.io/v1alpha3'),
  kind: fc.constant('DestinationRule'),
  metadata: meta,
  spec: maybe(fc.record({ host: mostly(fc.constantFrom('reviews', 'ratings.demo.svc.cluster.local', '*.demo.svc.cluster.local'), host), trafficPolicy, subsets: some(opt({ name: maybe(fc.constantFrom('v1', 'v2', 'bad subset')), labels: maybe(fc.dictionary(fc.constantFrom('version'), text, { maxKeys: 1 })), trafficPolicy })) }, { requiredKeys: ['host'] })),
});

const patterns = (...usual: string[]) => mostly(fc.constant(undefined), some(mostly(fc.constantFrom(...usual), fc.oneof(fc.constantFrom('a*b', '/{**}/x/{*}', 'http', '10.0.0.300'), hostileString))));
const targetRef = mostly(fc.constant({ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }), opt({ group: maybe(fc.constantFrom('', 'gateway.networking.k8s.io', 'networking.istio.io', 'apps')), kind: maybe(fc.constantFrom('Gateway', 'Service', 'GatewayClass', 'ServiceEntry', 'Deployment')), name, namespace: maybe(fc.constantFrom(undefined, 'demo', 'other')) }));
const source = opt({ principals: patterns('cluster.local/ns/demo/sa/sleep', '*'), notNamespaces: patterns('demo', 'other'), ipBlocks: patterns('10.0.0.0/8', '10.244.1.5'), requestPrincipals: patterns('*'), notRequestPrincipals: patterns('*') });
const operation = opt({ methods: patterns('GET', 'POST'), paths: patterns('/admin/{**}', '/items/{*}', '/a*', '*x'), notPaths: patterns('/public/*'), hosts: patterns('reviews*', '*'), ports: patterns('9080', '80') });
const nonEmpty = (a: fc.Arbitrary<unknown>) => mostly(fc.constant(undefined), maybe(fc.array(a, { minLength: 1, maxLength: 2 })));
const policyRule = opt({
  from: nonEmpty(fc.record({ source: mostly(source.filter((s) => typeof s === 'object' && s !== null && Object.values(s).some((v) => v !== undefined)), junk) })),
  to: nonEmpty(fc.record({ operation: mostly(operation.filter((o) => typeof o === 'object' && o !== null && Object.values(o).some((v) => v !== undefined)), junk) })),
  when: nonEmpty(opt({ key: mostly(fc.constantFrom('request.headers[x-token]', 'source.ip', 'destination.port', 'request.auth.claims[iss]', 'connection.sni'), fc.constantFrom('request.time', 'request.headers[]')), values: patterns('secret-*', '10.0.0.0/8', '9080', '*'), notValues: patterns('x', '80') })),
});

export const hostileWaypointPolicy: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constantFrom('security.istio.io/v1', 'security.istio.io/v1beta1'),
  kind: fc.constant('AuthorizationPolicy'),
  metadata: meta,
  spec: maybe(fc.record({ targetRefs: maybe(fc.array(targetRef, { minLength: 1, maxLength: 2 })), action: mostly(fc.constantFrom('ALLOW', 'DENY', undefined), fc.constantFrom('AUDIT', 'CUSTOM', 'MAYBE')), rules: maybe(fc.array(policyRule, { minLength: 1, maxLength: 2 })) }, { requiredKeys: ['targetRefs', 'rules'] })),
});

export const hostileL7Object: fc.Arbitrary<KubeObject> = fc.oneof(hostileVirtualService, hostileHTTPRoute, hostileGRPCRoute, hostileDestinationRule, hostileWaypointPolicy);

// The waypoint's routing cases as plain data: resources (as kubectl would
// apply them), one request (as curl would send it), and what must come of
// it. The unit suite (test/unit/l7-routing.test.ts) runs them through the
// route side; an end-to-end suite can replay the same table through a real
// waypoint, given the fixture services below (each backend answers with
// header BACKEND_HEADER = "<service>:<version>" and echoes what it got).
import type { KubeObject } from '../../lib/cluster/objects.ts';

export const CASE_NAMESPACE = 'demo';
/** The client workload, `<namespace>/<serviceaccount>`. */
export const CLIENT = 'demo/sleep';
export const WAYPOINT = { namespace: 'demo', name: 'waypoint', className: 'istio-waypoint' };
export const BACKEND_HEADER = 'x-backend';

/** The fixture services in CASE_NAMESPACE: their ports and the `version` labels of their pods. */
export const SERVICES: Record<string, { ports: number[]; versions: string[]; appProtocol?: string }> = {
  reviews: { ports: [9080], versions: ['v1', 'v2', 'v3'] },
  ratings: { ports: [9080], versions: ['v1'] },
  web: { ports: [80, 8080], versions: ['v1'] },
  mirror: { ports: [80], versions: ['v1'] },
  echo: { ports: [50051], versions: ['v1'], appProtocol: 'grpc' },
};

export interface CaseRequest {
  /** `<namespace>/<serviceaccount>` of the client; default CLIENT. */
  from?: string;
  sourceIp?: string;
  /** A service of SERVICES. */
  to: string;
  /** Default: the service's first port. */
  port?: number;
  method?: string;
  /** With the query, as curl sends it. */
  path?: string;
  headers?: Record<string, string>;
}

/** Header expectations: a value (or list, for a repeated header), or null for "absent". */
export type HeaderExpectation = Record<string, string | string[] | null>;

export type Expectation =
  | {
      kind: 'forward';
      /** `<service>` or `<service>:<subset>`. */
      backend: string;
      port?: number;
      path?: string;
      authority?: string;
      requestHeaders?: HeaderExpectation;
      responseHeaders?: HeaderExpectation;
      /** null: no route timeout. */
      timeoutMs?: number | null;
      /** null: no retries; otherwise the fields given must be equal. */
      retry?: { attempts: number; retryOn?: string[]; retriableStatusCodes?: number[]; perTryTimeoutMs?: number; backoffBaseMs?: number } | null;
      mirrors?: string[];
      delayMs?: number;
    }
  | { kind: 'status'; status: number; body?: string; location?: string; responseHeaders?: HeaderExpectation }
  /** Over many requests: the share of each outcome, within `tolerance` (absolute). */
  | { kind: 'shares'; of: 'backend' | 'status' | 'delayed' | 'mirrored'; requests: number; shares: Record<string, number>; tolerance: number }
  /** The object is rejected with a reason containing `reason`; the request then gets `then`. */
  | { kind: 'rejected'; object: string; reason: string; failClosed?: boolean; then: Expectation };

export interface L7Case {
  name: string;
  resources: KubeObject[];
  request: CaseRequest;
  expect: Expectation;
}

const ns = CASE_NAMESPACE;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, namespace: ns, ...extra });
const vs = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: meta(name, extra), spec });
const dr = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: meta(name), spec });
const hr = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: meta(name, extra), spec });
const grpc = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: meta(name), spec });
const ap = (name: string, spec: Record<string, unknown>, namespace = ns): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec });

const reviewsSubsets = dr('reviews', { host: 'reviews', subsets: ['v1', 'v2', 'v3'].map((v) => ({ name: v, labels: { version: v } })) });
const to = (subset: string, weight?: number) => ({ destination: { host: 'reviews', subset }, ...(weight === undefined ? {} : { weight }) });
/** A VirtualService for reviews with `rules`, and the subsets it routes to. */
const reviews = (rules: unknown[], extra: Record<string, unknown> = {}): KubeObject[] => [reviewsSubsets, vs('reviews', { hosts: ['reviews'], http: rules, ...extra })];
const onReviews = (rules: unknown[]): KubeObject => hr('reviews', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules });
const backendRef = (name: string, weight?: number, port = 9080) => ({ name, port, ...(weight === undefined ? {} : { weight }) });
const waypointPolicy = (name: string, spec: Record<string, unknown>) => ap(name, { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: WAYPOINT.name }], ...spec });
const get = (path: string, headers: Record<string, string> = {}): CaseRequest => ({ to: 'reviews', path, headers });

export const L7_CASES: L7Case[] = [
  // VirtualService matches.
  { name: 'vs: uri exact matches the path exactly', resources: reviews([{ match: [{ uri: { exact: '/ratings' } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/ratings'), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: uri exact does not match a longer path', resources: reviews([{ match: [{ uri: { exact: '/ratings' } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/ratings/7'), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: uri prefix is a string prefix', resources: reviews([{ match: [{ uri: { prefix: '/api' } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/apiv2/x'), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: uri regex matches the whole path', resources: reviews([{ match: [{ uri: { regex: '/items/[0-9]+' } }], route: [to('v3')] }, { route: [to('v1')] }]), request: get('/items/42'), expect: { kind: 'forward', backend: 'reviews:v3' } },
  { name: 'vs: uri regex never matches part of a path', resources: reviews([{ match: [{ uri: { regex: '/items/[0-9]+' } }], route: [to('v3')] }, { route: [to('v1')] }]), request: get('/items/42/extra'), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: ignoreUriCase applies to prefix matches', resources: reviews([{ match: [{ uri: { prefix: '/API' }, ignoreUriCase: true }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/api/list'), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: header exact (A/B by user)', resources: reviews([{ match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/', { 'end-user': 'jason' }), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: header exact is case-sensitive in its value', resources: reviews([{ match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/', { 'end-user': 'Jason' }), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: header regex with (?i)', resources: reviews([{ match: [{ headers: { 'user-agent': { regex: '(?i).*firefox.*' } } }], route: [to('v3')] }, { route: [to('v1')] }]), request: get('/', { 'User-Agent': 'Mozilla/5.0 FireFox/120' }), expect: { kind: 'forward', backend: 'reviews:v3' } },
  { name: 'vs: header {} checks presence', resources: reviews([{ match: [{ headers: { 'x-canary': {} } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/', { 'x-canary': '' }), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: withoutHeaders matches when the header is absent', resources: reviews([{ match: [{ withoutHeaders: { 'x-legacy': { exact: 'true' } } }], route: [to('v3')] }, { route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v3' } },
  { name: 'vs: withoutHeaders does not match when the header matches', resources: reviews([{ match: [{ withoutHeaders: { 'x-legacy': { exact: 'true' } } }], route: [to('v3')] }, { route: [to('v1')] }]), request: get('/', { 'x-legacy': 'true' }), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: queryParams exact', resources: reviews([{ match: [{ queryParams: { version: { exact: 'v2' } } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/?version=v2&x=1'), expect: { kind: 'forward', backend: 'reviews:v2', path: '/?version=v2&x=1' } },
  { name: 'vs: method match', resources: reviews([{ match: [{ method: { exact: 'POST' } }], route: [to('v2')] }, { route: [to('v1')] }]), request: { to: 'reviews', method: 'POST', path: '/' }, expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: the first matching rule wins', resources: reviews([{ match: [{ uri: { prefix: '/' } }], route: [to('v1')] }, { match: [{ uri: { exact: '/special' } }], route: [to('v3')] }]), request: get('/special'), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: matches inside a rule are ORed', resources: reviews([{ match: [{ uri: { exact: '/a' } }, { uri: { exact: '/b' } }], route: [to('v2')] }, { route: [to('v1')] }]), request: get('/b'), expect: { kind: 'forward', backend: 'reviews:v2' } },
  { name: 'vs: sourceNamespace matches the client identity\'s namespace', resources: reviews([{ match: [{ sourceNamespace: 'other' }], route: [to('v3')] }, { route: [to('v1')] }]), request: { from: 'other/curl', to: 'reviews', path: '/' }, expect: { kind: 'forward', backend: 'reviews:v3' } },
  { name: 'vs: port match', resources: [vs('web', { hosts: ['web'], http: [{ match: [{ port: 80 }], route: [{ destination: { host: 'mirror' } }] }, { match: [{ port: 8080, uri: { prefix: '/admin' } }], route: [{ destination: { host: 'ratings' } }] }] })], request: { to: 'web', port: 80, path: '/' }, expect: { kind: 'forward', backend: 'mirror', port: 80 } },
  { name: 'vs: rules for another port leave this one to the default route', resources: [vs('web', { hosts: ['web'], http: [{ match: [{ port: 80 }], route: [{ destination: { host: 'mirror' } }] }] })], request: { to: 'web', port: 8080, path: '/' }, expect: { kind: 'forward', backend: 'web', port: 8080 } },
  { name: 'vs: a rule for this port that does not match: 404', resources: [vs('web', { hosts: ['web'], http: [{ match: [{ port: 80 }], route: [{ destination: { host: 'mirror' } }] }, { match: [{ port: 8080, uri: { prefix: '/admin' } }], route: [{ destination: { host: 'ratings' } }] }] })], request: { to: 'web', port: 8080, path: '/' }, expect: { kind: 'status', status: 404 } },
  { name: 'vs: no rule matches: 404', resources: reviews([{ match: [{ uri: { prefix: '/api' } }], route: [to('v2')] }]), request: get('/other'), expect: { kind: 'status', status: 404 } },
  { name: 'vs: a short host name resolves in the VirtualService\'s namespace', resources: [vs('ratings', { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'reviews', port: { number: 9080 } } }] }] })], request: { to: 'ratings', path: '/' }, expect: { kind: 'forward', backend: 'reviews', port: 9080 } },
  { name: 'no VirtualService or route: the default route to the service, with Istio\'s default retries', resources: [], request: { to: 'web', port: 8080, path: '/x' }, expect: { kind: 'forward', backend: 'web', port: 8080, path: '/x', timeoutMs: null, retry: { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [503] } } },

  // Weights.
  { name: 'vs: canary 90/10 by weight', resources: reviews([{ route: [to('v1', 90), to('v2', 10)] }]), request: get('/'), expect: { kind: 'shares', of: 'backend', requests: 2000, shares: { 'reviews:v1': 0.9, 'reviews:v2': 0.1 }, tolerance: 0.03 } },
  { name: 'vs: weights need not total 100 (1:3)', resources: reviews([{ route: [to('v1', 1), to('v2', 3)] }]), request: get('/'), expect: { kind: 'shares', of: 'backend', requests: 2000, shares: { 'reviews:v1': 0.25, 'reviews:v2': 0.75 }, tolerance: 0.03 } },
  { name: 'vs: one destination takes all, whatever its weight', resources: reviews([{ route: [to('v3', 20)] }]), request: get('/'), expect: { kind: 'shares', of: 'backend', requests: 200, shares: { 'reviews:v3': 1 }, tolerance: 0 } },
  { name: 'vs: a weight of 0 gets nothing', resources: reviews([{ route: [to('v1', 100), to('v2', 0)] }]), request: get('/'), expect: { kind: 'shares', of: 'backend', requests: 500, shares: { 'reviews:v1': 1 }, tolerance: 0 } },

  // Header operations.
  {
    name: 'vs: request and response header set, add and remove',
    resources: reviews([{ headers: { request: { set: { 'x-team': 'blue' }, add: { 'x-trace': 'mesh' }, remove: ['x-debug'] }, response: { set: { 'cache-control': 'no-store' }, remove: [BACKEND_HEADER] } }, route: [to('v1')] }]),
    request: get('/', { 'x-debug': '1', 'x-trace': 'client', 'x-team': 'red' }),
    expect: { kind: 'forward', backend: 'reviews:v1', requestHeaders: { 'x-team': 'blue', 'x-trace': ['client', 'mesh'], 'x-debug': null }, responseHeaders: { 'cache-control': 'no-store', [BACKEND_HEADER]: null } },
  },
  {
    name: 'vs: destination headers apply only to that destination',
    resources: reviews([{ route: [{ ...to('v2', 100), headers: { request: { set: { 'x-version': 'v2' } }, response: { add: { 'x-served-by': 'v2' } } } }, to('v1', 0)] }]),
    request: get('/'),
    expect: { kind: 'forward', backend: 'reviews:v2', requestHeaders: { 'x-version': 'v2' }, responseHeaders: { 'x-served-by': 'v2' } },
  },
  {
    name: 'hr: RequestHeaderModifier and ResponseHeaderModifier',
    resources: [onReviews([{ filters: [
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Env', value: 'prod' }], add: [{ name: 'x-via', value: 'waypoint' }], remove: ['x-remove-me'] } },
      { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-route', value: 'hr' }] } },
    ], backendRefs: [backendRef('reviews')] }])],
    request: get('/', { 'x-remove-me': 'yes', 'x-env': 'dev' }),
    expect: { kind: 'forward', backend: 'reviews', requestHeaders: { 'x-env': 'prod', 'x-via': 'waypoint', 'x-remove-me': null }, responseHeaders: { 'x-route': 'hr', [BACKEND_HEADER]: 'reviews' } },
  },

  // Rewrites.
  { name: 'vs: rewrite.uri swaps the matched prefix', resources: reviews([{ match: [{ uri: { prefix: '/old' } }], rewrite: { uri: '/new' }, route: [to('v1')] }]), request: get('/old/page?q=1'), expect: { kind: 'forward', backend: 'reviews:v1', path: '/new/page?q=1' } },
  { name: 'vs: rewrite.authority sets the Host upstream', resources: reviews([{ rewrite: { authority: 'reviews.internal' }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', authority: 'reviews.internal' } },
  { name: 'vs: uriRegexRewrite with capture groups', resources: reviews([{ match: [{ uri: { prefix: '/service' } }], rewrite: { uriRegexRewrite: { match: '^/service/([^/]+)(/.*)$', rewrite: '/v2\\2/\\1' } }, route: [to('v1')] }]), request: get('/service/update/api'), expect: { kind: 'forward', backend: 'reviews:v1', path: '/v2/api/update' } },
  { name: 'hr: URLRewrite ReplacePrefixMatch replaces whole path elements', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/foo/' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/xyz' } } }], backendRefs: [backendRef('reviews')] }])], request: get('/foo/bar'), expect: { kind: 'forward', backend: 'reviews', path: '/xyz/bar' } },
  { name: 'hr: URLRewrite ReplacePrefixMatch "/" removes the prefix', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/foo' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }], backendRefs: [backendRef('reviews')] }])], request: get('/foo'), expect: { kind: 'forward', backend: 'reviews', path: '/' } },
  { name: 'hr: URLRewrite ReplaceFullPath and hostname', resources: [onReviews([{ filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'internal.example', path: { type: 'ReplaceFullPath', replaceFullPath: '/health' } } }], backendRefs: [backendRef('reviews')] }])], request: get('/anything?x=1'), expect: { kind: 'forward', backend: 'reviews', path: '/health?x=1', authority: 'internal.example' } },

  // Redirects.
  { name: 'vs: redirect defaults to 301 and keeps the query', resources: reviews([{ match: [{ uri: { exact: '/v1/getProductRatings' } }], redirect: { uri: '/v1/bookRatings', authority: 'newratings.default.svc.cluster.local' } }]), request: get('/v1/getProductRatings?id=3'), expect: { kind: 'status', status: 301, location: 'http://newratings.default.svc.cluster.local/v1/bookRatings?id=3' } },
  { name: 'vs: redirect with code, scheme and port', resources: reviews([{ redirect: { redirectCode: 308, scheme: 'https', port: 8443 } }]), request: get('/x'), expect: { kind: 'status', status: 308, location: 'https://reviews.demo:8443/x' } },
  { name: 'vs: redirect prefixRewrite', resources: reviews([{ match: [{ uri: { prefix: '/foo/' } }], redirect: { prefixRewrite: '/', authority: 'foo.example.com' } }]), request: get('/foo/bar'), expect: { kind: 'status', status: 301, location: 'http://foo.example.com/bar' } },
  { name: 'hr: RequestRedirect defaults to 302 on the request\'s port', resources: [onReviews([{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'example.com' } }] }])], request: get('/p'), expect: { kind: 'status', status: 302, location: 'http://example.com:9080/p' } },
  { name: 'hr: RequestRedirect to https drops the port for the scheme\'s default', resources: [onReviews([{ filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } }] }])], request: get('/p'), expect: { kind: 'status', status: 301, location: 'https://reviews.demo/p' } },

  // Direct responses, no backends, no match.
  { name: 'vs: directResponse with a body', resources: reviews([{ match: [{ uri: { exact: '/down' } }], directResponse: { status: 503, body: { string: 'unknown error' } } }, { route: [to('v1')] }]), request: get('/down'), expect: { kind: 'status', status: 503, body: 'unknown error' } },
  { name: 'hr: a rule without backends answers 500', resources: [onReviews([{ matches: [{ path: { type: 'Exact', value: '/none' } }] }])], request: get('/none'), expect: { kind: 'status', status: 500 } },
  { name: 'hr: every backend at weight 0 answers 500', resources: [onReviews([{ backendRefs: [backendRef('reviews', 0)] }])], request: get('/'), expect: { kind: 'status', status: 500 } },
  { name: 'hr: no match answers 404', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [backendRef('reviews')] }])], request: get('/apix'), expect: { kind: 'status', status: 404 } },

  // HTTPRoute precedence: specificity across rules and routes, not list order.
  { name: 'hr: an exact path beats a longer prefix listed first', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/login/form' } }], backendRefs: [backendRef('ratings')] }, { matches: [{ path: { type: 'Exact', value: '/login/form' } }], backendRefs: [backendRef('reviews')] }])], request: get('/login/form'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'hr: the longest prefix wins', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [backendRef('ratings')] }, { matches: [{ path: { type: 'PathPrefix', value: '/a/b' } }], backendRefs: [backendRef('reviews')] }])], request: get('/a/b/c'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'hr: PathPrefix matches whole path elements', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/abc' } }], backendRefs: [backendRef('reviews')] }])], request: get('/abcd'), expect: { kind: 'status', status: 404 } },
  { name: 'hr: a method match beats none on equal paths', resources: [onReviews([{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [backendRef('ratings')] }, { matches: [{ path: { type: 'PathPrefix', value: '/' }, method: 'DELETE' }], backendRefs: [backendRef('reviews')] }])], request: { to: 'reviews', method: 'DELETE', path: '/x' }, expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'hr: more header matches win', resources: [onReviews([{ matches: [{ headers: [{ name: 'a', value: '1' }] }], backendRefs: [backendRef('ratings')] }, { matches: [{ headers: [{ name: 'a', value: '1' }, { name: 'b', value: '2' }] }], backendRefs: [backendRef('reviews')] }])], request: get('/', { a: '1', b: '2' }), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'hr: more query parameter matches win', resources: [onReviews([{ matches: [{ queryParams: [{ name: 'x', value: '1' }] }], backendRefs: [backendRef('ratings')] }, { matches: [{ queryParams: [{ name: 'x', value: '1' }, { name: 'y', value: '2' }] }], backendRefs: [backendRef('reviews')] }])], request: get('/?x=1&y=2'), expect: { kind: 'forward', backend: 'reviews' } },
  {
    name: 'hr: on a tie the oldest route wins',
    resources: [
      hr('b-newer', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [backendRef('ratings')] }] }, { creationTimestamp: '2025-02-01T00:00:00Z' }),
      hr('z-older', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [backendRef('reviews')] }] }, { creationTimestamp: '2025-01-01T00:00:00Z' }),
    ],
    request: get('/'),
    expect: { kind: 'forward', backend: 'reviews' },
  },
  {
    name: 'hr: on a tie of age, namespace/name order wins',
    resources: [
      hr('b-route', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [backendRef('ratings')] }] }, { creationTimestamp: '2025-01-01T00:00:00Z' }),
      hr('a-route', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [backendRef('reviews')] }] }, { creationTimestamp: '2025-01-01T00:00:00Z' }),
    ],
    request: get('/'),
    expect: { kind: 'forward', backend: 'reviews' },
  },
  { name: 'hr: backendRefs weigh 1 by default', resources: [onReviews([{ backendRefs: [backendRef('reviews'), backendRef('ratings')] }])], request: get('/'), expect: { kind: 'shares', of: 'backend', requests: 2000, shares: { reviews: 0.5, ratings: 0.5 }, tolerance: 0.03 } },
  { name: 'hr: an invalid backend answers 500 for its share', resources: [onReviews([{ backendRefs: [backendRef('reviews', 1), { group: 'example.com', kind: 'Bucket', name: 'b', weight: 1 }] }])], request: get('/'), expect: { kind: 'shares', of: 'status', requests: 2000, shares: { forward: 0.5, '500': 0.5 }, tolerance: 0.03 } },

  // GAMMA: consumer and producer routes, Gateway API over VirtualService.
  {
    name: 'hr: a consumer route applies to clients in its namespace',
    resources: [onReviews([{ backendRefs: [backendRef('reviews')] }]), { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'mine', namespace: 'other' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: ns }], rules: [{ backendRefs: [{ name: 'ratings', namespace: ns, port: 9080 }] }] } }],
    request: { from: 'other/curl', to: 'reviews', path: '/' },
    expect: { kind: 'forward', backend: 'ratings' },
  },
  {
    name: 'hr: a consumer route does not apply to clients elsewhere',
    resources: [onReviews([{ backendRefs: [backendRef('reviews')] }]), { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'mine', namespace: 'other' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: ns }], rules: [{ backendRefs: [{ name: 'ratings', namespace: ns, port: 9080 }] }] } }],
    request: get('/'),
    expect: { kind: 'forward', backend: 'reviews' },
  },
  { name: 'hr: an HTTPRoute for the service shadows its VirtualService', resources: [...reviews([{ route: [to('v3')] }]), onReviews([{ backendRefs: [backendRef('ratings')] }])], request: get('/'), expect: { kind: 'forward', backend: 'ratings' } },
  { name: 'hr: a route on one port leaves the others to the default route', resources: [hr('web', { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [backendRef('mirror', 1, 80)] }] })], request: { to: 'web', port: 8080, path: '/' }, expect: { kind: 'forward', backend: 'web', port: 8080 } },
  { name: 'hr: a route on the waypoint\'s Gateway applies to the services it serves', resources: [hr('all', { parentRefs: [{ name: WAYPOINT.name }], hostnames: ['ratings.demo.svc.cluster.local'], rules: [{ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-gw', value: '1' }] } }], backendRefs: [backendRef('ratings')] }] })], request: { to: 'ratings', path: '/' }, expect: { kind: 'forward', backend: 'ratings', responseHeaders: { 'x-gw': '1' } } },

  // gRPC.
  { name: 'grpc: service and method exact', resources: [grpc('echo', { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [{ matches: [{ method: { service: 'echo.Echo', method: 'Ping' } }], backendRefs: [{ name: 'echo', port: 50051 }] }, { backendRefs: [{ name: 'mirror', port: 80 }] }] })], request: { to: 'echo', method: 'POST', path: '/echo.Echo/Ping', headers: { 'content-type': 'application/grpc' } }, expect: { kind: 'forward', backend: 'echo' } },
  { name: 'grpc: a longer service match beats a method-only match', resources: [grpc('echo', { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [{ matches: [{ method: { method: 'Ping' } }], backendRefs: [{ name: 'mirror', port: 80 }] }, { matches: [{ method: { type: 'RegularExpression', service: 'echo\\..*' } }], backendRefs: [{ name: 'echo', port: 50051 }] }] })], request: { to: 'echo', method: 'POST', path: '/echo.Echo/Ping', headers: { 'content-type': 'application/grpc' } }, expect: { kind: 'forward', backend: 'echo' } },
  { name: 'grpc: no backend answers UNAVAILABLE', resources: [grpc('echo', { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [{ matches: [{ method: { service: 'echo.Echo' } }] }] })], request: { to: 'echo', method: 'POST', path: '/echo.Echo/Ping', headers: { 'content-type': 'application/grpc' } }, expect: { kind: 'status', status: 200, responseHeaders: { 'grpc-status': '14' } } },

  // Timeouts and retries.
  { name: 'vs: timeout', resources: reviews([{ timeout: '2s', route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', timeoutMs: 2000 } },
  { name: 'vs: retries unset: Istio\'s default', resources: reviews([{ route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', timeoutMs: null, retry: { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [503] } } },
  { name: 'vs: retries with attempts, perTryTimeout and retryOn', resources: reviews([{ retries: { attempts: 3, perTryTimeout: '1s', retryOn: '5xx,gateway-error,reset,connect-failure,refused-stream,retriable-4xx,503' }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', retry: { attempts: 3, perTryTimeoutMs: 1000, retryOn: ['5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-4xx', 'retriable-status-codes'], retriableStatusCodes: [503] } } },
  { name: 'vs: retries attempts 0 turns retries off', resources: reviews([{ retries: { attempts: 0 }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', retry: null } },
  { name: 'hr: timeouts.request is the route timeout (504 past it)', resources: [onReviews([{ timeouts: { request: '500ms' }, backendRefs: [backendRef('reviews')] }])], request: get('/'), expect: { kind: 'forward', backend: 'reviews', timeoutMs: 500 } },
  { name: 'hr: retry with codes, backoff and backendRequest per try', resources: [onReviews([{ timeouts: { request: '10s', backendRequest: '2s' }, retry: { attempts: 4, codes: [502, 503], backoff: '100ms' }, backendRefs: [backendRef('reviews')] }])], request: get('/'), expect: { kind: 'forward', backend: 'reviews', timeoutMs: 10000, retry: { attempts: 4, perTryTimeoutMs: 2000, backoffBaseMs: 100, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [502, 503] } } },

  // Faults.
  { name: 'vs: abort fault answers its status with Envoy\'s body', resources: reviews([{ fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'status', status: 418, body: 'fault filter abort' } },
  { name: 'vs: abort fault hits its percentage', resources: reviews([{ fault: { abort: { httpStatus: 503, percentage: { value: 30 } } }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'shares', of: 'status', requests: 2000, shares: { '503': 0.3, forward: 0.7 }, tolerance: 0.03 } },
  { name: 'vs: abort fault without a percentage aborts nothing', resources: reviews([{ fault: { abort: { httpStatus: 503 } }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1' } },
  { name: 'vs: delay fault', resources: reviews([{ fault: { delay: { fixedDelay: '2s', percentage: { value: 100 } } }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', delayMs: 2000 } },
  { name: 'vs: delay fault hits its percentage', resources: reviews([{ fault: { delay: { fixedDelay: '100ms', percentage: { value: 10 } } }, route: [to('v1')] }]), request: get('/'), expect: { kind: 'shares', of: 'delayed', requests: 2000, shares: { delayed: 0.1, 'on time': 0.9 }, tolerance: 0.03 } },

  // Mirrors.
  { name: 'vs: mirror copies every request by default', resources: reviews([{ route: [to('v1')], mirror: { host: 'mirror' } }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', mirrors: ['mirror'] } },
  { name: 'vs: mirrorPercentage', resources: reviews([{ route: [to('v1')], mirror: { host: 'mirror' }, mirrorPercentage: { value: 25 } }]), request: get('/'), expect: { kind: 'shares', of: 'mirrored', requests: 2000, shares: { mirrored: 0.25, 'not mirrored': 0.75 }, tolerance: 0.03 } },
  { name: 'vs: mirrors, each with its percentage', resources: reviews([{ route: [to('v1')], mirrors: [{ destination: { host: 'mirror' } }, { destination: { host: 'ratings' }, percentage: { value: 0 } }] }]), request: get('/'), expect: { kind: 'forward', backend: 'reviews:v1', mirrors: ['mirror'] } },
  { name: 'hr: RequestMirror', resources: [onReviews([{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', port: 80 } } }], backendRefs: [backendRef('reviews')] }])], request: get('/'), expect: { kind: 'forward', backend: 'reviews', mirrors: ['mirror'] } },
  { name: 'hr: RequestMirror with a fraction', resources: [onReviews([{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', port: 80 }, fraction: { numerator: 1, denominator: 2 } } }], backendRefs: [backendRef('reviews')] }])], request: get('/'), expect: { kind: 'shares', of: 'mirrored', requests: 2000, shares: { mirrored: 0.5, 'not mirrored': 0.5 }, tolerance: 0.03 } },

  // L7 authorization.
  { name: 'authz: ALLOW GET only: GET passes', resources: [waypointPolicy('get-only', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })], request: get('/'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: ALLOW GET only: POST is denied with 403', resources: [waypointPolicy('get-only', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })], request: { to: 'reviews', method: 'POST', path: '/' }, expect: { kind: 'status', status: 403, body: 'RBAC: access denied' } },
  { name: 'authz: DENY a path template {**}', resources: [waypointPolicy('no-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/{**}'] } }] }] })], request: get('/admin/users/7'), expect: { kind: 'status', status: 403 } },
  { name: 'authz: {*} is one path segment only', resources: [waypointPolicy('one-level', { rules: [{ to: [{ operation: { paths: ['/items/{*}'] } }] }] })], request: get('/items/7/details'), expect: { kind: 'status', status: 403 } },
  { name: 'authz: paths prefix pattern', resources: [waypointPolicy('public', { rules: [{ to: [{ operation: { paths: ['/public/*'] } }] }] })], request: get('/public/index.html'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: from principals: the named client passes', resources: [waypointPolicy('from-sleep', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }] }] })], request: get('/'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: from principals: another client is denied', resources: [waypointPolicy('from-sleep', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }] }] })], request: { from: 'other/curl', to: 'reviews', path: '/' }, expect: { kind: 'status', status: 403 } },
  { name: 'authz: DENY notNamespaces', resources: [waypointPolicy('same-ns', { action: 'DENY', rules: [{ from: [{ source: { notNamespaces: ['demo'] } }] }] })], request: { from: 'other/curl', to: 'reviews', path: '/' }, expect: { kind: 'status', status: 403 } },
  { name: 'authz: when request.headers', resources: [waypointPolicy('needs-header', { rules: [{ when: [{ key: 'request.headers[x-token]', values: ['secret-*'] }] }] })], request: get('/', { 'x-token': 'secret-123' }), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: when request.headers: absent header is denied', resources: [waypointPolicy('needs-header', { rules: [{ when: [{ key: 'request.headers[x-token]', values: ['secret-*'] }] }] })], request: get('/'), expect: { kind: 'status', status: 403 } },
  { name: 'authz: hosts ignore case', resources: [waypointPolicy('by-host', { rules: [{ to: [{ operation: { hosts: ['REVIEWS.demo:9080'] } }] }] })], request: get('/'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: ipBlocks', resources: [waypointPolicy('from-net', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.244.9.0/24'] } }] }] })], request: { to: 'reviews', sourceIp: '10.244.9.7', path: '/' }, expect: { kind: 'status', status: 403 } },
  { name: 'authz: a Service target covers that service only', resources: [ap('ratings-only', { targetRefs: [{ kind: 'Service', group: '', name: 'ratings' }], rules: [{ to: [{ operation: { methods: ['PUT'] } }] }] })], request: get('/'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: selector policies are the ztunnel\'s, not the waypoint\'s', resources: [ap('by-selector', { selector: { matchLabels: { app: 'reviews' } }, rules: [] })], request: get('/'), expect: { kind: 'forward', backend: 'reviews' } },
  { name: 'authz: DENY before ALLOW', resources: [waypointPolicy('allow-all', { rules: [{}] }), waypointPolicy('deny-post', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] })], request: { to: 'reviews', method: 'POST', path: '/' }, expect: { kind: 'status', status: 403 } },

  // Rejections: the object alone is refused, with a reason naming it and the rule.
  { name: 'reject: a VirtualService field meshlet does not know', resources: [...reviews([{ route: [to('v2')], retires: { attempts: 3 } }])], request: get('/'), expect: { kind: 'rejected', object: 'VirtualService demo/reviews', reason: 'spec.http[0].retires is not a field meshlet knows', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: a regex RE2 does not accept', resources: reviews([{ match: [{ uri: { regex: '/(?=admin)' } }], route: [to('v2')] }]), request: get('/'), expect: { kind: 'rejected', object: 'VirtualService demo/reviews', reason: 'spec.http[0].match[0].uri.regex "/(?=admin)": lookahead and lookbehind are not RE2', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: route and redirect on one rule', resources: reviews([{ route: [to('v2')], redirect: { uri: '/x' } }]), request: get('/'), expect: { kind: 'rejected', object: 'VirtualService demo/reviews', reason: 'spec.http[0] sets route and redirect', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: several destinations without weights', resources: reviews([{ route: [to('v1'), to('v2')] }]), request: get('/'), expect: { kind: 'rejected', object: 'VirtualService demo/reviews', reason: 'lists 2 destinations without a weight', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: URLRewrite with RequestRedirect', resources: [onReviews([{ filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'a.b' } }, { type: 'RequestRedirect', requestRedirect: { hostname: 'c.d' } }], backendRefs: [backendRef('reviews')] }])], request: get('/'), expect: { kind: 'rejected', object: 'HTTPRoute demo/reviews', reason: 'combines RequestRedirect and URLRewrite', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: ReplacePrefixMatch on an Exact match', resources: [onReviews([{ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }], backendRefs: [backendRef('reviews')] }])], request: get('/a'), expect: { kind: 'rejected', object: 'HTTPRoute demo/reviews', reason: 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix match', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: a Service backendRef without a port', resources: [onReviews([{ backendRefs: [{ name: 'ratings' }] }])], request: get('/'), expect: { kind: 'rejected', object: 'HTTPRoute demo/reviews', reason: 'spec.rules[0].backendRefs[0].port is required', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: DestinationRule PASSTHROUGH', resources: [dr('reviews', { host: 'reviews', trafficPolicy: { loadBalancer: { simple: 'PASSTHROUGH' } } })], request: get('/'), expect: { kind: 'rejected', object: 'DestinationRule demo/reviews', reason: 'spec.trafficPolicy.loadBalancer.simple PASSTHROUGH is not supported', then: { kind: 'forward', backend: 'reviews' } } },
  { name: 'reject: one bad object does not stop the others', resources: [vs('broken', { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings' } }], timeout: 'soon' }] }), onReviews([{ backendRefs: [backendRef('ratings')] }])], request: get('/'), expect: { kind: 'rejected', object: 'VirtualService demo/broken', reason: 'spec.http[0].timeout "soon" is not a duration', then: { kind: 'forward', backend: 'ratings' } } },
  { name: 'reject: a rejected ALLOW fails closed: everything it targeted is denied', resources: [waypointPolicy('typo', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] })], request: get('/'), expect: { kind: 'rejected', object: 'AuthorizationPolicy demo/typo', reason: 'ports[0] "http" is not a port', failClosed: true, then: { kind: 'status', status: 403 } } },
  { name: 'reject: a rejected DENY fails closed too', resources: [waypointPolicy('deny-bad', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }] }] })], request: get('/'), expect: { kind: 'rejected', object: 'AuthorizationPolicy demo/deny-bad', reason: 'is not an IP address or CIDR', failClosed: true, then: { kind: 'status', status: 403 } } },
  { name: 'reject: CUSTOM policies fail closed (meshlet calls no external authorizer)', resources: [waypointPolicy('ext', { action: 'CUSTOM', provider: { name: 'ext-authz' }, rules: [{}] })], request: get('/'), expect: { kind: 'rejected', object: 'AuthorizationPolicy demo/ext', reason: 'action CUSTOM', failClosed: true, then: { kind: 'status', status: 403 } } },
];

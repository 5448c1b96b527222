// The pure helpers the waypoint applies per request: path normalisation,
// rewrites (Gateway API's ReplacePrefixMatch table, Envoy's prefix_rewrite),
// redirect locations, the mirror's Host, header operations, and the RE2
// subset and duration syntaxes the converters accept.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import fc from 'fast-check';
import { normalisedPath } from '../../lib/l7/request.ts';
import { applyHeaderOps, normalizePath, pickDestination, redirectLocation, rewritePath, shadowAuthority, type BoundPathRewrite, type BoundRedirect, type L7Request } from '../../lib/l7/index.ts';
import { gatewayDuration, istioDuration } from '../../lib/l7/fields.ts';
import { checkRegex, compileRegex } from '../../lib/l7/regex.ts';
import type { Fail } from '../../lib/policy/fields.ts';

const fail: Fail = (reason) => {
  throw new InvalidObjectError('test', reason);
};

test('normalizePath removes dot segments, decodes unreserved escapes, keeps %2F, splits the query', () => {
  const cases: [string, string, string][] = [
    ['/a/b/../c', '/a/c', ''],
    ['/a/./b/', '/a/b/', ''],
    ['/a/b/..', '/a/', ''],
    ['/../../etc/passwd', '/etc/passwd', ''],
    ['/admin/%2e%2e/public', '/public', ''],
    ['/%7Euser/%41', '/~user/A', ''],
    ['/a%2fb', '/a%2Fb', ''],
    ['/p?x=1&y=%2e', '/p', 'x=1&y=%2e'],
    ['/p#frag', '/p', ''],
    ['\\a\\b', '/a/b', ''],
    ['relative', '/relative', ''],
  ];
  for (const [raw, path, query] of cases) assert.deepEqual(normalizePath(raw), { path, query }, raw);
});

test('normalizePath returns a path as it came only when the whole normalisation would leave it so', () => {
  const piece = fc.constantFrom('/', '.', '..', 'a', 'B', '~', '%2e', '%2E', '%41', '%2f', '%zz', '%', '\\', '?', '#', '=', '&');
  fc.assert(fc.property(fc.array(piece, { maxLength: 12 }).map((p) => p.join('')), (raw) => {
    const end = raw.includes('?') ? raw.indexOf('?') : raw.includes('#') ? raw.indexOf('#') : raw.length;
    assert.equal(normalizePath(raw).path, normalisedPath(raw.slice(0, end)), raw);
  }), { numRuns: 2000 });
});

test('rewritePath: Gateway API ReplacePrefixMatch, the spec\'s table', () => {
  // Request path, prefix match (as converted: no trailing "/"), replacement, result.
  const table: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/anything', '', '/v2', '/v2/anything'],
  ];
  for (const [path, matched, value, want] of table) {
    assert.equal(rewritePath(path, { kind: 'replace_segment_prefix', matched, value }), want, `${path} ${matched} → ${value}`);
  }
});

test('rewritePath: Envoy prefix_rewrite, full and regex', () => {
  const cases: [string, BoundPathRewrite, string][] = [
    ['/old/x', { kind: 'replace_prefix', matched: '/old', ignoreCase: false, value: '/new' }, '/new/x'],
    ['/OLD/x', { kind: 'replace_prefix', matched: '/old', ignoreCase: true, value: '/new' }, '/new/x'],
    // Without a path match the prefix is "/", Envoy's well-known surprise.
    ['/foo', { kind: 'replace_prefix', matched: '/', ignoreCase: false, value: '/v2' }, '/v2foo'],
    ['/x/y', { kind: 'full', value: '/health' }, '/health'],
    ['/aaa/XxX/bbb', { kind: 'regex', regex: compileRegex('(?i)/xxx/', { whole: false, global: true }), substitution: '/yyy/' }, '/aaa/yyy/bbb'],
  ];
  for (const [path, rewrite, want] of cases) assert.equal(rewritePath(path, rewrite), want, `${path} ${rewrite.kind}`);
});

const request = (authority: string, path = '/p', query = ''): L7Request => ({
  method: 'GET', service: { host: 'reviews.demo.svc.cluster.local', port: 9080 }, path, query, headers: { host: authority }, source: { ip: '10.244.1.5' },
});

test('redirectLocation builds the Location as Envoy does', () => {
  const cases: [string, BoundRedirect, string][] = [
    ['reviews:9080', { status: 301 }, 'http://reviews:9080/p?q=1'],
    ['reviews:9080', { status: 301, authority: 'other' }, 'http://other/p?q=1'],
    ['reviews:9080', { status: 301, port: { kind: 'fixed', port: 8443 }, scheme: 'https' }, 'https://reviews:8443/p?q=1'],
    ['reviews:9080', { status: 301, scheme: 'https', port: { kind: 'protocol_default' } }, 'https://reviews/p?q=1'],
    ['reviews', { status: 301, port: { kind: 'request' } }, 'http://reviews:9080/p?q=1'],
    ['reviews:80', { status: 301, scheme: 'https' }, 'https://reviews/p?q=1'],
    ['reviews:80', { status: 302, port: { kind: 'fixed', port: 80 } }, 'http://reviews/p?q=1'],
    ['reviews', { status: 301, path: { kind: 'full', value: '/new?x=2' } }, 'http://reviews/new?x=2'],
    ['[fd00::1]:9080', { status: 301 }, 'http://[fd00::1]:9080/p?q=1'],
  ];
  for (const [authority, redirect, want] of cases) assert.equal(redirectLocation(request(authority, '/p', 'q=1'), redirect), want, `${authority} ${JSON.stringify(redirect)}`);
});

test('shadowAuthority puts -shadow after the host, before the port', () => {
  assert.equal(shadowAuthority('mirror.demo:80'), 'mirror.demo-shadow:80');
  assert.equal(shadowAuthority('mirror'), 'mirror-shadow');
  assert.equal(shadowAuthority('[fd00::1]:80'), '[fd00::1]-shadow:80');
});

test('applyHeaderOps: remove, then set, then add; later sets win; the input stays as it was', () => {
  const headers = Object.freeze({ a: '1', b: '2', c: '3' });
  const out = applyHeaderOps(headers, [
    { remove: ['b'], set: [{ name: 'a', value: 'dest' }], add: [{ name: 'c', value: '4' }] },
    { remove: [], set: [{ name: 'a', value: 'rule' }], add: [{ name: 'c', value: '5' }, { name: 'd', value: 'new' }] },
  ]);
  assert.deepEqual(out, { a: 'rule', c: ['3', '4', '5'], d: 'new' });
  assert.deepEqual(headers, { a: '1', b: '2', c: '3' });
});

test('regexes: RE2 patterns JavaScript reads the same way are taken, the rest refused with a reason', () => {
  const accepted: [string, string, boolean][] = [
    ['/items/[0-9]+', '/items/42', true],
    ['(?i)^aaa$', 'AAA', true],
    ['(?P<id>\\d+)', '17', true],
    ['a(?i:b)c', 'aBc', true],
    ['[]a]+', ']a]', true],
    ['\\Aabc\\z', 'abc', true],
    ['x{2,3}', 'xxxx', false],
    ['/api/.*', '/api/v1/x', true],
  ];
  for (const [pattern, input, matches] of accepted) {
    assert.equal(checkRegex(pattern, 'p', fail), pattern);
    assert.equal(compileRegex(pattern).test(input), matches, `${pattern} on ${input}`);
  }
  const refused: [string, RegExp][] = [
    ['(?=x)', /lookahead/],
    ['(?<!x)y', /lookbehind/],
    ['(a)\\1', /backreference/],
    ['\\p{Greek}', /Unicode classes/],
    ['[[:alpha:]]', /POSIX classes/],
    ['a(?i)b', /only at the start/],
    ['(?U)a*', /ungreedy/],
    ['a{1001}', /exceeds RE2's limit/],
    ['(unclosed', /not a valid regular expression/],
    ['x'.repeat(2000), /at most 1024/],
  ];
  for (const [pattern, reason] of refused) {
    assert.throws(() => checkRegex(pattern, 'p', fail), (err: unknown) => err instanceof InvalidObjectError && reason.test(err.reason), pattern);
  }
});

test('durations: Istio\'s Go-style and Gateway API\'s GEP-2257 syntax', () => {
  assert.equal(istioDuration('1.5s', 'd', fail), 1500);
  assert.equal(istioDuration('1h30m', 'd', fail), 5_400_000);
  assert.equal(istioDuration('250ms', 'd', fail), 250);
  assert.equal(istioDuration('0s', 'd', fail, { min: 0 }), 0);
  assert.throws(() => istioDuration('0s', 'd', fail), /shorter than 1ms/);
  assert.throws(() => istioDuration('10', 'd', fail), /not a duration/);
  assert.throws(() => istioDuration('9999h', 'd', fail), /longer than meshlet can time/);
  assert.equal(gatewayDuration('1m30s', 'd', fail), 90_000);
  assert.equal(gatewayDuration('0s', 'd', fail), 0);
  assert.throws(() => gatewayDuration('1.5s', 'd', fail), /not a Gateway API duration/);
  assert.throws(() => gatewayDuration('100000s', 'd', fail), /not a Gateway API duration/);
});

test('headers named like Object.prototype members are headers like any other', () => {
  const out = applyHeaderOps({}, [{ remove: [], set: [{ name: '__proto__', value: 'x' }], add: [{ name: 'constructor', value: 'y' }] }]);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(Object.entries(out), [['__proto__', 'x'], ['constructor', 'y']]);
});

test('pickDestination: weight/sum over one draw, zero weights never picked', () => {
  const d = (name: string, weight: number) => ({ weight, backend: { host: name }, headers: { request: { set: [], add: [], remove: [] }, response: { set: [], add: [], remove: [] } } });
  const list = [d('a', 1), d('zero', 0), d('b', 3)];
  const pick = (r: number) => { const p = pickDestination(list, () => r); return p && 'backend' in p ? p.backend.host : null; };
  assert.equal(pick(0), 'a');
  assert.equal(pick(0.2499), 'a');
  assert.equal(pick(0.25), 'b');
  assert.equal(pick(0.999999), 'b');
  assert.equal(pickDestination([d('zero', 0)], () => 0.5), null);
});

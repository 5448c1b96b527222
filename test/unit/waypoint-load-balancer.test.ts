// The DestinationRule's balancers as the waypoint applies them per request:
// round robin, least request (power of two choices), random and consistent
// hashing on a ring, keyed by a header, cookie, source IP or query parameter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import type { HashKey } from '../../lib/l7/cluster-policy.ts';
import { endpointKey, type RequestView, type UpstreamEndpoint } from '../../waypoint/upstream/endpoint.ts';
import { cookieValue, queryValue, requestHash } from '../../waypoint/upstream/hash-key.ts';
import { createLoadBalancer, type PickContext } from '../../waypoint/upstream/load-balancer.ts';

const host = (i: number): UpstreamEndpoint => ({ ip: `10.1.0.${i}`, port: 8080, node: { name: 'n1', address: '192.168.0.1' }, identity: spiffeId('default', 'reviews'), labels: {} });
const hosts = [1, 2, 3, 4].map(host);
const names = (picked: UpstreamEndpoint[]) => picked.map((h) => h.ip.split('.')[3]).join('');

/** Returns the given numbers in turn. */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

const context = (over: Partial<PickContext> = {}): PickContext => ({ hash: undefined, attempt: 0, outstanding: () => 0, ...over });

const view = (over: Partial<RequestView> = {}): RequestView => ({ headers: {}, path: '/', sourceIp: '10.0.0.9', ...over });

test('round robin takes the next endpoint on every request', () => {
  const lb = createLoadBalancer({ kind: 'round_robin' });
  assert.equal(names(Array.from({ length: 9 }, () => lb.pick(hosts, context()))), '123412341');
  // The endpoint list may shrink under it (an ejection): it keeps cycling over what is there.
  assert.equal(names(Array.from({ length: 4 }, () => lb.pick(hosts.slice(0, 2), context()))), '2121');
});

test('random draws from the injected source', () => {
  const lb = createLoadBalancer({ kind: 'random' }, sequence(0, 0.3, 0.99, 0.5));
  assert.equal(names(Array.from({ length: 4 }, () => lb.pick(hosts, context()))), '1243');
});

test('least request: of two random endpoints, the one with fewer outstanding requests; the first on a tie', () => {
  const outstanding = new Map([['10.1.0.1', 5], ['10.1.0.2', 1], ['10.1.0.3', 1], ['10.1.0.4', 0]]);
  const ctx = context({ outstanding: (e) => outstanding.get(e.ip)! });
  // Draws (0, 1): hosts 1 and 2, 2 has fewer. (2, 1): 3 and 2 tie, the first drawn wins. (3, 3): the same one twice.
  const lb = createLoadBalancer({ kind: 'least_request' }, sequence(0, 0.25, 0.5, 0.25, 0.75, 0.75));
  assert.equal(names([lb.pick(hosts, ctx), lb.pick(hosts, ctx), lb.pick(hosts, ctx)]), '234');
});

test('least request evens out load that round robin would not see', () => {
  const outstanding = new Map(hosts.map((h) => [h.ip, 0]));
  let seed = 1;
  const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  const lb = createLoadBalancer({ kind: 'least_request' }, random);
  // Host 1 never finishes its requests; the others finish at once.
  for (let i = 0; i < 400; i++) {
    const h = lb.pick(hosts, context({ outstanding: (e) => outstanding.get(e.ip)! }));
    if (h.ip === '10.1.0.1') outstanding.set(h.ip, outstanding.get(h.ip)! + 1);
  }
  assert.ok(outstanding.get('10.1.0.1')! < 40, `the stuck host took ${outstanding.get('10.1.0.1')} of 400`);
});

const hashPolicy = (hashKey: HashKey) => createLoadBalancer({ kind: 'consistent_hash', hashKey });

function pickFor(key: HashKey, request: RequestView, attempt = 0, lb = hashPolicy(key)): UpstreamEndpoint {
  return lb.pick(hosts, context({ hash: requestHash(key, request).hash, attempt }));
}

test('consistent hash: one key, one endpoint; keys spread over all of them', () => {
  const key: HashKey = { kind: 'header', name: 'x-user' };
  const lb = hashPolicy(key);
  const counts = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const ctx = context({ hash: requestHash(key, view({ headers: { 'x-user': `user-${i}` } })).hash });
    const first = lb.pick(hosts, ctx);
    assert.equal(lb.pick(hosts, ctx), first, 'the same key lands on the same endpoint');
    counts.set(first.ip, (counts.get(first.ip) ?? 0) + 1);
  }
  assert.equal(counts.size, 4);
  for (const [ip, n] of counts) assert.ok(n > 300 && n < 700, `${ip} took ${n} of 2000 keys`);
});

test('consistent hash: removing an endpoint moves only the keys it held', () => {
  const key: HashKey = { kind: 'header', name: 'x-user' };
  // One balancer per list: a balancer builds its ring once per list it is handed.
  const [lb, lbAfter] = [hashPolicy(key), hashPolicy(key)];
  const survivors = hosts.filter((h) => h.ip !== '10.1.0.3');
  let moved = 0;
  for (let i = 0; i < 1000; i++) {
    const ctx = context({ hash: requestHash(key, view({ headers: { 'x-user': `u${i}` } })).hash });
    const before = lb.pick(hosts, ctx);
    const after = lbAfter.pick(survivors, ctx);
    if (before.ip !== '10.1.0.3') assert.equal(after.ip, before.ip, `key u${i} stayed where it was`);
    else moved++;
  }
  assert.ok(moved > 0);
});

test('consistent hash keys: header, cookie, source IP, query parameter', () => {
  const a = view({ headers: { 'x-user': 'alice', cookie: 'session=s1; theme="dark"' }, path: '/p?user=bob&user=carol', sourceIp: '10.0.0.1' });
  const same = (k: HashKey, other: RequestView) => assert.equal(endpointKey(pickFor(k, a)), endpointKey(pickFor(k, other)), JSON.stringify(k));
  same({ kind: 'header', name: 'X-User' }, view({ headers: { 'x-user': 'alice' } }));
  same({ kind: 'cookie', name: 'theme' }, view({ headers: { cookie: 'theme=dark' } }));
  same({ kind: 'source_ip' }, view({ sourceIp: '10.0.0.1', path: '/elsewhere' }));
  same({ kind: 'query_parameter', name: 'user' }, view({ path: '/q?user=bob' }));
  assert.equal(cookieValue(['a=1', 'b=2; c=3'], 'c'), '3');
  assert.equal(cookieValue('a=1', 'b'), undefined);
  assert.equal(queryValue('/x?name=J%C3%BCrgen&name=other#frag', 'name'), 'Jürgen');
  assert.equal(queryValue('/x', 'name'), undefined);
  assert.equal(requestHash({ kind: 'header', name: 'x-user' }, view()).hash, undefined);
});

test('consistent hash without a key picks at random, as Envoy does', () => {
  const lb = createLoadBalancer({ kind: 'consistent_hash', hashKey: { kind: 'header', name: 'x-user' } }, sequence(0.1, 0.6, 0.1));
  const [first, second, third] = [lb.pick(hosts, context()), lb.pick(hosts, context()), lb.pick(hosts, context())];
  assert.equal(first, third);
  assert.ok(second);
});

test('a retry attempt moves along the ring', () => {
  const key: HashKey = { kind: 'source_ip' };
  const request = view({ sourceIp: '10.0.0.7' });
  const lb = hashPolicy(key);
  const picks = Array.from({ length: 8 }, (_, attempt) => endpointKey(pickFor(key, request, attempt, lb)));
  assert.equal(picks[0], endpointKey(pickFor(key, request, 0, lb)));
  assert.ok(new Set(picks).size > 1, `later attempts reach other endpoints: ${picks.join(' ')}`);
});

test('a hash cookie with a TTL is generated when absent, the same one for the same client connection', () => {
  const key: HashKey = { kind: 'cookie', name: 'route', ttlMs: 3_600_000 };
  const first = requestHash(key, view({ sourceIp: '10.0.0.5', sourcePort: 40000 }));
  const again = requestHash(key, view({ sourceIp: '10.0.0.5', sourcePort: 40000 }));
  assert.match(first.setCookie ?? '', /^route="[0-9a-f]{8}"; Max-Age=3600; HttpOnly$/);
  assert.deepEqual(again, first);
  const value = /"([0-9a-f]{8})"/.exec(first.setCookie!)![1]!;
  assert.equal(requestHash(key, view({ headers: { cookie: `route=${value}` } })).hash, first.hash, 'the cookie, once set, hashes the same');
  assert.deepEqual(requestHash({ kind: 'cookie', name: 'route' }, view()), { hash: undefined });
});

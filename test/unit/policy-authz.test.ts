// Cases from Istio's AuthorizationPolicy reference and the ambient L4 policy
// docs, checked against the L4 engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, compilePolicies, convertAuthorizationPolicy, selectsWorkload, type AuthzRequest, type PolicyOptions, type PolicyStore } from '../../lib/policy/index.ts';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';

const ap = (name: string, namespace: string, spec: unknown, apiVersion = 'security.istio.io/v1'): KubeObject => ({
  apiVersion, kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec,
});

function build(objects: KubeObject[], options?: PolicyOptions): PolicyStore {
  const { store, rejected } = compilePolicies(objects, options);
  assert.deepEqual(rejected.map((r) => r.message), []);
  return store;
}

interface Conn {
  /** `<ns>/<sa>` of a cluster.local identity; omitted for plaintext. */
  from?: string;
  srcIp?: string;
  ns?: string;
  labels?: Record<string, string>;
  dstIp?: string;
  port?: number;
  /** Caller-supplied namespace, meaningful only with an identity. */
  srcNs?: string;
}

function req(c: Conn = {}): AuthzRequest {
  const principal = c.from && `spiffe://cluster.local/ns/${c.from.split('/')[0]}/sa/${c.from.split('/')[1]}`;
  return {
    source: { ip: c.srcIp ?? '10.244.1.5', ...(principal ? { principal } : {}), ...(c.srcNs ? { namespace: c.srcNs } : {}) },
    destination: { ip: c.dstIp ?? '10.244.2.7', port: c.port ?? 8080, workload: { namespace: c.ns ?? 'demo', labels: c.labels ?? { app: 'httpbin' } } },
  };
}

const allowed = (store: PolicyStore, c?: Conn) => authorize(store, req(c)).allowed;

function rejectReason(obj: KubeObject, options?: PolicyOptions): string {
  try {
    convertAuthorizationPolicy(obj, options);
  } catch (err) {
    assert.ok(err instanceof InvalidObjectError, String(err));
    return err.reason;
  }
  assert.fail('expected the policy to be rejected');
}

interface Case {
  name: string;
  policies: KubeObject[];
  checks: [Conn, boolean][];
  options?: PolicyOptions;
}

const sleepOnly = { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }] }] };

const cases: Case[] = [
  { name: 'no policy: everything is allowed', policies: [], checks: [[{}, true], [{ from: 'x/y' }, true]] },
  {
    name: 'ALLOW with spec: {} selects the namespace and allows nothing',
    policies: [ap('allow-nothing', 'demo', {})],
    checks: [[{ from: 'demo/sleep' }, false], [{}, false], [{ ns: 'other' }, true]],
  },
  { name: 'ALLOW with rules: [] allows nothing', policies: [ap('p', 'demo', { rules: [] })], checks: [[{ from: 'demo/sleep' }, false]] },
  { name: 'ALLOW with rules: [{}] allows everything', policies: [ap('allow-all', 'demo', { rules: [{}] })], checks: [[{}, true], [{ from: 'a/b' }, true]] },
  {
    name: 'DENY with rules: [{}] denies everything, and beats an allow-all',
    policies: [ap('allow-all', 'demo', { rules: [{}] }), ap('deny-all', 'demo', { action: 'DENY', rules: [{}] })],
    checks: [[{}, false], [{ from: 'demo/sleep' }, false], [{ ns: 'other' }, true]],
  },
  {
    name: 'DENY beats ALLOW; an unmatched ALLOW denies',
    policies: [ap('allow-sleep', 'demo', sleepOnly), ap('deny-9000', 'demo', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9000'] } }] }] })],
    checks: [[{ from: 'demo/sleep' }, true], [{ from: 'demo/sleep', port: 9000 }, false], [{ from: 'demo/curl' }, false], [{}, false]],
  },
  {
    name: 'a selector scopes the policy to matching workloads only',
    policies: [ap('allow-sleep', 'demo', sleepOnly)],
    checks: [[{ from: 'demo/curl' }, false], [{ from: 'demo/curl', labels: { app: 'web' } }, true], [{ from: 'demo/curl', labels: {} }, true]],
  },
  {
    name: 'a policy in the root namespace without selector is mesh-wide',
    policies: [ap('mesh-allow-nothing', 'meshlet-system', {})],
    checks: [[{ from: 'demo/sleep' }, false], [{ ns: 'other', from: 'demo/sleep' }, false]],
  },
  {
    name: 'the root namespace is configurable: there, a policy is mesh-wide',
    options: { rootNamespace: 'istio-system' },
    policies: [ap('mesh', 'istio-system', {})],
    checks: [[{}, false], [{ ns: 'x' }, false]],
  },
  {
    name: 'the root namespace is configurable: meshlet-system is then an ordinary namespace',
    options: { rootNamespace: 'istio-system' },
    policies: [ap('ns-only', 'meshlet-system', {})],
    checks: [[{ ns: 'meshlet-system' }, false], [{}, true]],
  },
  {
    name: 'a selector in the root namespace matches workloads in every namespace',
    policies: [ap('root-sel', 'meshlet-system', { selector: { matchLabels: { app: 'db' } }, rules: [{ from: [{ source: { namespaces: ['backend'] } }] }] })],
    checks: [[{ ns: 'a', labels: { app: 'db' }, from: 'web/x' }, false], [{ ns: 'b', labels: { app: 'db' }, from: 'backend/x' }, true], [{ ns: 'a', labels: { app: 'web' }, from: 'web/x' }, true]],
  },
  {
    name: 'namespace and mesh policies combine: both ALLOW sets count',
    policies: [ap('mesh', 'meshlet-system', { rules: [{ from: [{ source: { namespaces: ['ops'] } }] }] }), ap('ns', 'demo', sleepOnly)],
    checks: [[{ from: 'ops/agent' }, true], [{ from: 'demo/sleep' }, true], [{ from: 'demo/curl' }, false], [{ ns: 'other', from: 'demo/sleep' }, false]],
  },
  {
    name: 'principals: exact, with or without spiffe://, prefix, suffix and presence',
    policies: [ap('p', 'demo', { rules: [
      { from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/one'] } }], to: [{ operation: { ports: ['1'] } }] },
      { from: [{ source: { principals: ['cluster.local/ns/b/*'] } }], to: [{ operation: { ports: ['2'] } }] },
      { from: [{ source: { principals: ['*/sa/curl'] } }], to: [{ operation: { ports: ['3'] } }] },
      { from: [{ source: { principals: ['*'] } }], to: [{ operation: { ports: ['4'] } }] },
    ] })],
    checks: [
      [{ from: 'a/one', port: 1 }, true], [{ from: 'a/two', port: 1 }, false],
      [{ from: 'b/any', port: 2 }, true], [{ from: 'bb/any', port: 2 }, false],
      [{ from: 'x/curl', port: 3 }, true], [{ from: 'x/curly', port: 3 }, false],
      [{ from: 'x/y', port: 4 }, true], [{ port: 4 }, false],
    ],
  },
  {
    name: 'notPrincipals: ["*"] in a DENY policy denies plaintext only',
    policies: [ap('require-mtls', 'demo', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] })],
    checks: [[{}, false], [{ from: 'demo/sleep' }, true]],
  },
  {
    name: 'namespaces and notNamespaces come from the identity; plaintext has none',
    policies: [ap('p', 'demo', { rules: [{ from: [{ source: { namespaces: ['front*'], notNamespaces: ['frontdoor'] } }] }] })],
    checks: [[{ from: 'frontend/web' }, true], [{ from: 'frontdoor/web' }, false], [{ from: 'back/web' }, false], [{ srcNs: 'frontend' }, false]],
  },
  {
    name: 'serviceAccounts: <ns>/<sa>, or a bare name in the policy namespace',
    policies: [ap('p', 'demo', { rules: [{ from: [{ source: { serviceAccounts: ['sleep', 'ops/agent'] } }] }] })],
    checks: [[{ from: 'demo/sleep' }, true], [{ from: 'ops/agent' }, true], [{ from: 'ops/sleep' }, false], [{}, false]],
  },
  {
    name: 'ipBlocks and notIpBlocks, v4 and v6, CIDR or single address',
    policies: [ap('p', 'demo', { rules: [{ from: [
      { source: { ipBlocks: ['10.244.0.0/16'], notIpBlocks: ['10.244.9.9'] } },
      { source: { ipBlocks: ['fd00:10::/32', '2001:db8::1'] } },
    ] }] })],
    checks: [
      [{ srcIp: '10.244.1.5' }, true], [{ srcIp: '10.244.9.9' }, false], [{ srcIp: '10.245.0.1' }, false],
      [{ srcIp: '::ffff:10.244.3.3' }, true],
      [{ srcIp: 'fd00:10:0:1::5' }, true], [{ srcIp: '2001:db8::1' }, true], [{ srcIp: '2001:db8::2' }, false],
    ],
  },
  {
    name: 'ports and notPorts',
    policies: [ap('p', 'demo', { rules: [{ to: [{ operation: { ports: ['8080', '9090'] } }, { operation: { notPorts: ['8080', '9090', '22'] } }] }] })],
    checks: [[{ port: 8080 }, true], [{ port: 9090 }, true], [{ port: 22 }, false], [{ port: 443 }, true]],
  },
  {
    name: 'from, to and when are ANDed; sources ORed; fields of a source ANDed',
    policies: [ap('p', 'demo', { rules: [{
      from: [{ source: { namespaces: ['a'], ipBlocks: ['10.0.0.0/8'] } }, { source: { principals: ['cluster.local/ns/b/sa/admin'] } }],
      to: [{ operation: { ports: ['8080'] } }],
      when: [{ key: 'destination.ip', values: ['10.244.2.0/24'] }],
    }] })],
    checks: [
      [{ from: 'a/x', srcIp: '10.1.1.1' }, true], [{ from: 'a/x', srcIp: '192.168.1.1' }, false], [{ from: 'b/admin', srcIp: '192.168.1.1' }, true],
      [{ from: 'a/x', srcIp: '10.1.1.1', port: 81 }, false], [{ from: 'a/x', srcIp: '10.1.1.1', dstIp: '10.244.3.1' }, false],
    ],
  },
  {
    name: 'when conditions on L4 keys, with values and notValues',
    policies: [ap('p', 'demo', { rules: [{ when: [
      { key: 'source.ip', values: ['10.244.0.0/16'], notValues: ['10.244.1.1'] },
      { key: 'source.namespace', values: ['demo'] },
      { key: 'source.principal', notValues: ['cluster.local/ns/demo/sa/blocked'] },
      { key: 'destination.port', values: ['8080', '8443'] },
    ] }] })],
    checks: [
      [{ from: 'demo/sleep' }, true], [{ from: 'demo/sleep', port: 8443 }, true], [{ from: 'demo/sleep', port: 22 }, false],
      [{ from: 'demo/sleep', srcIp: '10.244.1.1' }, false], [{ from: 'demo/blocked' }, false], [{ from: 'other/sleep' }, false], [{}, false],
    ],
  },
  {
    name: 'remoteIpBlocks is enforced as ipBlocks (no proxy hop at L4)',
    policies: [ap('p', 'demo', { rules: [{ from: [{ source: { remoteIpBlocks: ['10.244.1.0/24'] } }] }] })],
    checks: [[{ srcIp: '10.244.1.5' }, true], [{ srcIp: '10.244.2.5' }, false]],
  },
  {
    name: 'v1beta1 is accepted',
    policies: [ap('p', 'demo', { action: 'DENY', rules: [{}] }, 'security.istio.io/v1beta1')],
    checks: [[{}, false]],
  },
];

for (const c of cases) {
  test(`authorize: ${c.name}`, () => {
    const store = build(c.policies, c.options);
    for (const [conn, expected] of c.checks) {
      assert.equal(allowed(store, conn), expected, `${JSON.stringify(conn)} should be ${expected ? 'allowed' : 'denied'}`);
    }
  });
}

test('a decision names the policy that made it and why', () => {
  const store = build([ap('allow-sleep', 'demo', sleepOnly), ap('deny-9000', 'demo', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9000'] } }] }] })]);
  assert.deepEqual(authorize(store, req({ from: 'demo/sleep', port: 9000 })), { allowed: false, verdict: 'deny', policy: 'demo/deny-9000', reason: 'denied by DENY policy demo/deny-9000' });
  assert.deepEqual(authorize(store, req({ from: 'demo/sleep' })), { allowed: true, verdict: 'allow', policy: 'demo/allow-sleep', reason: 'allowed by ALLOW policy demo/allow-sleep' });
  assert.deepEqual(authorize(store, req({ from: 'demo/curl' })), { allowed: false, verdict: 'deny', reason: 'no ALLOW policy for this workload matched' });
  assert.deepEqual(authorize(store, req({ labels: { app: 'web' } })), { allowed: true, verdict: 'allow', reason: 'no ALLOW policy applies to this workload' });
  assert.equal(authorize(store, req({ srcIp: 'not-an-ip' })).allowed, false);
});

test('L7 attributes in an ALLOW rule: that rule never matches, the others still do, and the operator is warned', () => {
  const policy = ap('allow-get', 'demo', { rules: [
    { from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }], to: [{ operation: { methods: ['GET'] } }] },
    { from: [{ source: { principals: ['cluster.local/ns/demo/sa/admin'] } }] },
    { when: [{ key: 'request.headers[x-user]', values: ['alice'] }] },
  ] });
  const converted = convertAuthorizationPolicy(policy);
  assert.equal(converted.rules.length, 1);
  assert.equal(converted.warnings.length, 2);
  assert.match(converted.warnings[0]!, /spec\.rules\[0\] uses spec\.rules\[0\]\.to\[0\]\.operation\.methods.*never matches/);
  assert.match(converted.warnings[1]!, /request\.headers\[x-user\]/);
  const store = build([policy]);
  assert.equal(allowed(store, { from: 'demo/sleep' }), false);
  assert.equal(allowed(store, { from: 'demo/admin' }), true);
});

test('L7 attributes only: an ALLOW policy keeps selecting the workload and denies everything', () => {
  const store = build([ap('p', 'demo', { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] })]);
  assert.equal(allowed(store, { from: 'demo/sleep' }), false);
  assert.equal(selectsWorkload(store, { namespace: 'demo', labels: { app: 'httpbin' } }), true);
});

test('L7 attributes in a DENY rule are dropped, so the rule matches more, with a warning', () => {
  const policy = ap('deny-post', 'demo', { action: 'DENY', rules: [
    { from: [{ source: { namespaces: ['untrusted'], requestPrincipals: ['*'] } }], to: [{ operation: { methods: ['POST'], ports: ['8080'] } }] },
    { to: [{ operation: { hosts: ['admin.example.com'] } }], when: [{ key: 'request.auth.claims[group]', values: ['x'] }, { key: 'destination.port', values: ['9000'] }] },
  ] });
  const converted = convertAuthorizationPolicy(policy);
  assert.equal(converted.rules.length, 2);
  assert.equal(converted.warnings.length, 2);
  assert.match(converted.warnings[0]!, /requestPrincipals.*methods.*denies more than written/);
  const store = build([policy]);
  assert.equal(allowed(store, { from: 'untrusted/x' }), false, 'GET is denied too: L4 cannot tell the method');
  assert.equal(allowed(store, { from: 'untrusted/x', port: 8081 }), true, 'the L4 part still narrows the rule');
  assert.equal(allowed(store, { from: 'trusted/x', port: 9000 }), false, 'hosts and the claim condition are dropped, the port condition stays');
  assert.equal(allowed(store, { from: 'trusted/x' }), true);
});

test('connection.sni and experimental keys are L7-only at the ztunnel; remote.ip is treated as source.ip', () => {
  const p = convertAuthorizationPolicy(ap('p', 'demo', { rules: [
    { when: [{ key: 'connection.sni', values: ['a.example.com'] }] },
    { when: [{ key: 'remote.ip', values: ['10.0.0.0/8'] }] },
  ] }));
  assert.equal(p.rules.length, 1);
  assert.deepEqual(p.rules[0]!.clauses, [[{ sourceIps: ['10.0.0.0/8'] }]]);
  assert.equal(p.warnings.length, 2);
});

test('selectsWorkload: any ALLOW or DENY policy whose scope covers the workload', () => {
  const store = build([
    ap('deny', 'demo', { action: 'DENY', selector: { matchLabels: { app: 'db' } }, rules: [{}] }),
    ap('ns', 'other', { rules: [{}] }),
  ]);
  assert.equal(selectsWorkload(store, { namespace: 'demo', labels: { app: 'db' } }), true);
  assert.equal(selectsWorkload(store, { namespace: 'demo', labels: { app: 'web' } }), false);
  assert.equal(selectsWorkload(store, { namespace: 'other', labels: {} }), true);
  assert.equal(selectsWorkload(build([]), { namespace: 'demo', labels: {} }), false);
});

const rejections: [string, unknown, RegExp][] = [
  ['AUDIT', { action: 'AUDIT', rules: [{}] }, /AUDIT.*use ALLOW or DENY/],
  ['CUSTOM', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }, /CUSTOM.*waypoint/],
  ['an unknown action', { action: 'ALLOWED' }, /"ALLOWED" is not an action/],
  ['targetRefs', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }] }, /targetRefs.*spec\.selector\.matchLabels/],
  ['a DENY policy without rules', { action: 'DENY' }, /rules: \[\{\}\]/],
  ['a bad CIDR', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }, /ipBlocks has "10\.0\.0\.0\/33", which is not an IP address or CIDR/],
  ['a bad IPv6 block', { rules: [{ from: [{ source: { notIpBlocks: ['fd00::g/8'] } }] }] }, /notIpBlocks has "fd00::g\/8"/],
  ['a port that is not a number', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] }, /ports has "http", which is not a port/],
  ['a port out of range', { rules: [{ when: [{ key: 'destination.port', values: ['70000'] }] }] }, /when\[0\]\.values has "70000"/],
  ['a field that is not a list', { rules: [{ from: [{ source: { principals: 'cluster.local/ns/a/sa/b' } }] }] }, /principals must be a list/],
  ['rules that are not a list', { rules: { from: [] } }, /spec\.rules must be a list/],
  ['an empty source', { rules: [{ from: [{ source: {} }] }] }, /source must set at least one field/],
  ['an empty from', { rules: [{ from: [] }] }, /from must be a non-empty list/],
  ['an unknown field', { rules: [{ from: [{ source: { principal: ['x'] } }] }] }, /source\.principal is not a field.*principals/],
  ['an unknown condition key', { rules: [{ when: [{ key: 'source.user', values: ['x'] }] }] }, /"source\.user" is not a condition/],
  ['a condition without values', { rules: [{ when: [{ key: 'source.ip' }] }] }, /must set values or notValues/],
  ['a * in the middle of a principal', { rules: [{ from: [{ source: { principals: ['cluster.local/*/sa/x'] } }] }] }, /one \* at the start or the end/],
  ['serviceAccounts mixed with principals', { rules: [{ from: [{ source: { serviceAccounts: ['a'], principals: ['x'] } }] }] }, /serviceAccounts together with principals/],
  ['a wildcard selector', { selector: { matchLabels: { app: '*' } } }, /selectors match labels exactly/],
];

for (const [what, spec, reason] of rejections) {
  test(`rejected with a reason: ${what}`, () => {
    assert.match(rejectReason(ap('bad', 'demo', spec)), reason);
  });
}

test('rejected: an unsupported apiVersion', () => {
  assert.match(rejectReason(ap('bad', 'demo', {}, 'security.istio.io/v1alpha1')), /use security\.istio\.io\/v1/);
});

test('one bad policy is rejected alone; the others stay in force', () => {
  const { store, rejected } = compilePolicies([
    ap('bad-cidr', 'demo', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }] }] }),
    ap('allow-sleep', 'demo', sleepOnly),
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ignored' } },
  ]);
  assert.deepEqual(rejected.map((r) => r.object), ['AuthorizationPolicy demo/bad-cidr']);
  assert.equal(rejected[0]!.code, 'MESHLET_INVALID_OBJECT');
  assert.deepEqual(store.authorizationPolicies.map((p) => p.key), ['demo/allow-sleep']);
  assert.equal(allowed(store, { from: 'demo/sleep' }), true);
  assert.equal(allowed(store, { from: 'demo/curl' }), false);
});

test('converted policies are plain data that survive JSON, as in a snapshot to the ztunnel', () => {
  const converted = convertAuthorizationPolicy(ap('p', 'demo', sleepOnly));
  assert.deepEqual(JSON.parse(JSON.stringify(converted)), converted);
  assert.deepEqual(converted.scope, { namespace: 'demo', matchLabels: { app: 'httpbin' } });
  assert.deepEqual(converted.rules, [{ clauses: [[{ principals: ['cluster.local/ns/demo/sa/sleep'] }]] }]);
});

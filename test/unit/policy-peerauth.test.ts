// Cases from Istio's PeerAuthentication reference and the ambient L4 policy
// docs: precedence, inheritance, port-level settings, what ambient rejects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies, convertPeerAuthentication, effectiveMtlsMode, type MtlsMode, type PolicyOptions, type PolicyStore } from '../../lib/policy/index.ts';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';

const pa = (name: string, namespace: string, spec: unknown, created?: string): KubeObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name, namespace, ...(created ? { creationTimestamp: created } : {}) },
  spec,
});

const mode = (m: string) => ({ mtls: { mode: m } });
const finance = { matchLabels: { app: 'finance' } };

function build(objects: KubeObject[], options?: PolicyOptions): PolicyStore {
  const { store, rejected } = compilePolicies(objects, options);
  assert.deepEqual(rejected.map((r) => r.message), []);
  return store;
}

const modeOf = (store: PolicyStore, ns: string, labels: Record<string, string>, port = 8080): MtlsMode =>
  effectiveMtlsMode(store, { namespace: ns, labels }, port);

interface Case {
  name: string;
  policies: KubeObject[];
  /** [namespace, labels, port, expected] */
  checks: [string, Record<string, string>, number, MtlsMode][];
  options?: PolicyOptions;
}

const cases: Case[] = [
  { name: 'nothing applies: PERMISSIVE, Istio ambient default', policies: [], checks: [['foo', {}, 8080, 'PERMISSIVE']] },
  {
    name: 'a root-namespace policy without selector is mesh-wide',
    policies: [pa('default', 'meshlet-system', mode('STRICT'))],
    checks: [['foo', {}, 8080, 'STRICT'], ['bar', { app: 'x' }, 22, 'STRICT'], ['meshlet-system', {}, 80, 'STRICT']],
  },
  {
    name: 'the root namespace is configurable',
    options: { rootNamespace: 'istio-system' },
    policies: [pa('default', 'istio-system', mode('STRICT')), pa('default', 'meshlet-system', mode('PERMISSIVE'))],
    checks: [['foo', {}, 8080, 'STRICT'], ['meshlet-system', {}, 8080, 'PERMISSIVE']],
  },
  {
    name: 'namespace beats mesh; UNSET or no mtls inherits',
    policies: [
      pa('default', 'meshlet-system', mode('STRICT')),
      pa('default', 'loose', mode('PERMISSIVE')),
      pa('default', 'unset', mode('UNSET')),
      pa('default', 'empty', {}),
    ],
    checks: [['loose', {}, 8080, 'PERMISSIVE'], ['unset', {}, 8080, 'STRICT'], ['empty', {}, 8080, 'STRICT'], ['other', {}, 8080, 'STRICT']],
  },
  {
    name: 'a workload selector beats its namespace, for the workloads it selects only',
    policies: [pa('default', 'foo', mode('PERMISSIVE')), pa('finance', 'foo', { selector: finance, ...mode('STRICT') })],
    checks: [['foo', { app: 'finance' }, 8080, 'STRICT'], ['foo', { app: 'web' }, 8080, 'PERMISSIVE'], ['bar', { app: 'finance' }, 8080, 'PERMISSIVE']],
  },
  {
    name: 'portLevelMtls overrides the workload mode on that port (STRICT, port 8080 PERMISSIVE)',
    policies: [pa('finance', 'foo', { selector: finance, ...mode('STRICT'), portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } })],
    checks: [['foo', { app: 'finance' }, 8080, 'PERMISSIVE'], ['foo', { app: 'finance' }, 9090, 'STRICT']],
  },
  {
    name: 'workload UNSET inherits from the namespace and a port overrides it',
    policies: [
      pa('default', 'foo', mode('STRICT')),
      pa('finance', 'foo', { selector: finance, ...mode('UNSET'), portLevelMtls: { '8080': { mode: 'PERMISSIVE' }, '9000': { mode: 'UNSET' } } }),
    ],
    checks: [['foo', { app: 'finance' }, 8080, 'PERMISSIVE'], ['foo', { app: 'finance' }, 9000, 'STRICT'], ['foo', { app: 'finance' }, 443, 'STRICT']],
  },
  {
    name: 'a STRICT port under a PERMISSIVE mesh',
    policies: [pa('default', 'meshlet-system', mode('PERMISSIVE')), pa('db', 'foo', { selector: { matchLabels: { app: 'db' } }, portLevelMtls: { 5432: { mode: 'STRICT' } } })],
    checks: [['foo', { app: 'db' }, 5432, 'STRICT'], ['foo', { app: 'db' }, 8080, 'PERMISSIVE']],
  },
  {
    name: 'the oldest namespace policy wins, even when it is UNSET',
    policies: [
      pa('b-newer', 'foo', mode('STRICT'), '2024-05-02T00:00:00Z'),
      pa('a-older', 'foo', mode('PERMISSIVE'), '2024-05-01T00:00:00Z'),
      pa('old-unset', 'bar', mode('UNSET'), '2024-01-01T00:00:00Z'),
      pa('new-strict', 'bar', mode('STRICT'), '2024-06-01T00:00:00Z'),
    ],
    checks: [['foo', {}, 8080, 'PERMISSIVE'], ['bar', {}, 8080, 'PERMISSIVE']],
  },
  {
    name: 'equal timestamps: the name decides',
    policies: [pa('zeta', 'foo', mode('STRICT'), '2024-05-01T00:00:00Z'), pa('alpha', 'foo', mode('PERMISSIVE'), '2024-05-01T00:00:00Z')],
    checks: [['foo', {}, 8080, 'PERMISSIVE']],
  },
  {
    name: 'among workload policies selecting the same workload, the oldest wins',
    policies: [
      pa('new', 'foo', { selector: finance, ...mode('PERMISSIVE') }, '2024-05-02T00:00:00Z'),
      pa('old', 'foo', { selector: { matchLabels: { app: 'finance', tier: 'db' } }, ...mode('STRICT') }, '2024-05-01T00:00:00Z'),
    ],
    checks: [['foo', { app: 'finance', tier: 'db' }, 8080, 'STRICT'], ['foo', { app: 'finance' }, 8080, 'PERMISSIVE']],
  },
  {
    name: 'v1beta1 is accepted',
    policies: [{ ...pa('default', 'foo', mode('STRICT')), apiVersion: 'security.istio.io/v1beta1' }],
    checks: [['foo', {}, 8080, 'STRICT']],
  },
];

for (const c of cases) {
  test(`effectiveMtlsMode: ${c.name}`, () => {
    const store = build(c.policies, c.options);
    for (const [ns, labels, port, expected] of c.checks) {
      assert.equal(modeOf(store, ns, labels, port), expected, `${ns} ${JSON.stringify(labels)} port ${port}`);
    }
  });
}

function rejectReason(obj: KubeObject): string {
  try {
    convertPeerAuthentication(obj);
  } catch (err) {
    assert.ok(err instanceof InvalidObjectError, String(err));
    return err.reason;
  }
  assert.fail('expected the policy to be rejected');
}

const rejections: [string, KubeObject, RegExp][] = [
  ['DISABLE', pa('off', 'foo', mode('DISABLE')), /DISABLE is not supported.*use PERMISSIVE/],
  ['a port-level DISABLE', pa('off', 'foo', { selector: finance, ...mode('STRICT'), portLevelMtls: { 8080: { mode: 'DISABLE' } } }), /portLevelMtls\["8080"\]\.mode DISABLE/],
  ['an unknown mode', pa('x', 'foo', mode('STRICTER')), /"STRICTER" is not a mode/],
  ['portLevelMtls without a selector', pa('x', 'foo', { portLevelMtls: { 8080: { mode: 'STRICT' } } }), /portLevelMtls needs spec\.selector\.matchLabels/],
  ['an empty portLevelMtls', pa('x', 'foo', { selector: finance, portLevelMtls: {} }), /portLevelMtls is empty/],
  ['a port key that is not a port', pa('x', 'foo', { selector: finance, portLevelMtls: { http: { mode: 'STRICT' } } }), /"http" is not a port/],
  ['a selector in the root namespace', pa('x', 'meshlet-system', { selector: finance, ...mode('STRICT') }), /root namespace.*move the policy/],
  ['an unknown field', pa('x', 'foo', { mtls: { mode: 'STRICT' }, portLevelMTLS: {} }), /spec\.portLevelMTLS is not a field/],
  ['a bad creationTimestamp', pa('x', 'foo', mode('STRICT'), 'yesterday'), /creationTimestamp "yesterday"/],
];

for (const [what, obj, reason] of rejections) {
  test(`rejected with a reason: ${what}`, () => {
    assert.match(rejectReason(obj), reason);
  });
}

test('a rejected PeerAuthentication is left out alone; the mode falls back to the next level', () => {
  const { store, rejected } = compilePolicies([
    pa('default', 'meshlet-system', mode('STRICT')),
    pa('off', 'foo', mode('DISABLE')),
    pa('default', 'bar', mode('PERMISSIVE')),
  ]);
  assert.deepEqual(rejected.map((r) => r.object), ['PeerAuthentication foo/off']);
  assert.equal(modeOf(store, 'foo', {}), 'STRICT');
  assert.equal(modeOf(store, 'bar', {}), 'PERMISSIVE');
});

test('converted form: level, selector, sorted ports, creation time', () => {
  const p = convertPeerAuthentication(pa('finance', 'foo', { selector: finance, ...mode('STRICT'), portLevelMtls: { 9090: { mode: 'UNSET' }, 8080: { mode: 'PERMISSIVE' } } }, '2024-05-01T00:00:00Z'));
  assert.deepEqual(p, {
    key: 'foo/finance', namespace: 'foo', name: 'finance', level: 'workload', matchLabels: { app: 'finance' }, mode: 'STRICT',
    portLevelMtls: [{ port: 8080, mode: 'PERMISSIVE' }, { port: 9090, mode: 'UNSET' }], createdAt: Date.parse('2024-05-01T00:00:00Z'),
  });
  assert.equal(convertPeerAuthentication(pa('default', 'meshlet-system', {})).level, 'mesh');
  assert.equal(convertPeerAuthentication(pa('default', 'foo', { selector: {} })).level, 'namespace');
});

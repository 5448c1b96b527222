// Property tests over policy conversion: no policy object throws out of the
// converter but with a reason, what it accepts the ztunnel accepts and can
// decide on, and what it rejects fails closed: its stand-in is accepted too
// and denies (or makes STRICT) what the policy would have covered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import { validateAuthzPolicy, validatePeerAuthentication } from '../../lib/mesh/validate-policy.ts';
import { authorize, bindsTargetRefs, convertPolicyObject, effectiveMtlsMode, failClosedPolicy, isSecurityPolicy, PolicyStore, type ConvertedPolicy } from '../../lib/policy/index.ts';
import { l7FailClosedPolicy } from '../../lib/l7/index.ts';
import { hostileAuthorizationPolicy, hostilePeerAuthentication } from '../support/hostile.ts';

const RUNS = 400;
const policies = fc.oneof(hostileAuthorizationPolicy, hostilePeerAuthentication);
const wire = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

/** What the ztunnel makes of a converted policy: it must take it as it is. */
function overTheWire(p: ConvertedPolicy): ConvertedPolicy {
  const value = p.kind === 'authorizationPolicies' ? validateAuthzPolicy(wire(p.value), 'policy') : validatePeerAuthentication(wire(p.value), 'policy');
  assert.deepEqual(value, wire(p.value));
  return p;
}

const storeOf = (p: ConvertedPolicy): PolicyStore => (p.kind === 'authorizationPolicies' ? new PolicyStore([p.value], []) : new PolicyStore([], [p.value]));

const request = fc.record({
  srcIp: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('not-an-ip')),
  principal: fc.option(fc.constantFrom('spiffe://cluster.local/ns/demo/sa/web', 'spiffe://cluster.local/ns/other/sa/db', 'garbage'), { nil: undefined }),
  port: fc.integer({ min: 1, max: 65535 }),
  namespace: fc.constantFrom('demo', 'default', 'meshlet-system', 'other'),
  labels: fc.dictionary(fc.constantFrom('app', 'tier'), fc.constantFrom('web', 'db'), { maxKeys: 2 }),
});

test('a policy object converts, or is refused with an InvalidObjectError and a reason; what converts the ztunnel takes and decides on', () => {
  fc.assert(fc.property(policies, request, (obj, r) => {
    let converted: ConvertedPolicy | null;
    try {
      converted = convertPolicyObject(obj);
    } catch (err) {
      assert.ok(err instanceof InvalidObjectError, `not an InvalidObjectError: ${String(err)}`);
      assert.ok(err.reason.length > 0);
      return;
    }
    if (!converted) return;
    const store = storeOf(overTheWire(converted));
    const workload = { namespace: r.namespace, labels: r.labels };
    const decision = authorize(store, { source: { ip: r.srcIp, ...(r.principal ? { principal: r.principal } : {}) }, destination: { ip: '10.244.1.2', port: r.port, workload } });
    assert.ok(decision.reason.length > 0);
    assert.ok(['STRICT', 'PERMISSIVE'].includes(effectiveMtlsMode(store, workload, r.port)));
  }), { numRuns: RUNS });
});

test('a rejected policy fails closed: its stand-in, taken by the ztunnel, denies or makes STRICT what it covers, naming itself', () => {
  fc.assert(fc.property(policies, request, (obj, r) => {
    const standIn = failClosedPolicy(obj, 'fuzzed', { rootNamespace: 'meshlet-system' });
    const spec = obj.spec as Record<string, unknown> | undefined;
    const audit = obj.kind === 'AuthorizationPolicy' && spec?.action === 'AUDIT';
    if (!standIn) {
      // A targetRefs policy is the waypoint's: its stand-in is lib/l7's (the waypoint denies, the ztunnels refuse bypass).
      if (isSecurityPolicy(obj) && bindsTargetRefs(obj) && !audit) assert.ok(l7FailClosedPolicy(obj, 'fuzzed', { rootNamespace: 'meshlet-system' }), 'a targetRefs policy has the waypoint\'s stand-in');
      else assert.ok(!isSecurityPolicy(obj) || audit, 'only AUDIT policies go without a stand-in');
      return;
    }
    const store = storeOf(overTheWire(standIn));
    // A workload the stand-in covers: its namespace (any, when mesh-wide) with its selector's labels.
    const scopeNs = standIn.kind === 'authorizationPolicies' ? standIn.value.scope.namespace : standIn.value.level === 'mesh' ? null : standIn.value.namespace;
    const labels = (standIn.kind === 'authorizationPolicies' ? standIn.value.scope.matchLabels : standIn.value.matchLabels) ?? r.labels;
    const workload = { namespace: scopeNs ?? r.namespace, labels: { ...labels } };
    if (standIn.kind === 'authorizationPolicies') {
      const decision = authorize(store, { source: { ip: '10.244.1.9', ...(r.principal ? { principal: r.principal } : {}) }, destination: { ip: '10.244.1.2', port: r.port, workload } });
      assert.equal(decision.allowed, false);
      assert.equal(decision.policy, standIn.value.key);
      assert.match(decision.reason, /fails closed: it was rejected: fuzzed/);
    } else {
      assert.equal(effectiveMtlsMode(store, workload, r.port), 'STRICT');
    }
  }), { numRuns: RUNS });
});

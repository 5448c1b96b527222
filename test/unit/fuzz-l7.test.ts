// Property tests over the waypoint's converters: no object throws out of a
// converter but with an InvalidObjectError and a reason, what converts is
// plain data that compiles and answers any request, and a rejected waypoint
// policy fails closed: its stand-in denies what it covered, naming itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import {
  convertL7Object, convertL7Objects, DestinationRuleIndex, evaluateL7Authz, l7FailClosedPolicy, L7AuthzSet, RouteTable, selectRoute, type L7Request,
} from '../../lib/l7/index.ts';
import { hostileL7Object } from '../support/hostile-l7.ts';
import { hostileString } from '../support/hostile.ts';

const RUNS = 400;
const OPTIONS = { rootNamespace: 'meshlet-system' };
const WAYPOINT = { namespace: 'demo', name: 'waypoint', className: 'istio-waypoint' };
const wire = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

const request: fc.Arbitrary<L7Request> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'DELETE'),
  service: fc.record({ host: fc.constantFrom('reviews.demo.svc.cluster.local', 'ratings.demo.svc.cluster.local', 'web.other.svc.cluster.local'), port: fc.constantFrom(80, 9080), address: fc.constantFrom('10.96.0.10', 'fd00:96::10') }),
  path: fc.oneof(fc.constantFrom('/', '/api/x', '/items/7', '/admin/a/b', '/foo/bar'), hostileString.map((s) => `/${s}`)),
  query: fc.constantFrom('', 'version=v2', 'x=%zz&x=2'),
  headers: fc.dictionary(fc.constantFrom('host', 'x-user', 'end-user', 'content-type', 'x-token', 'constructor'), fc.oneof(fc.constantFrom('reviews', 'jason', 'application/grpc', 'secret-1'), hostileString), { maxKeys: 3 }),
  source: fc.record({ ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constant('not-an-ip')), principal: fc.option(fc.constantFrom('spiffe://cluster.local/ns/demo/sa/sleep', 'spiffe://cluster.local/ns/other/sa/curl', 'garbage'), { nil: undefined }) }, { requiredKeys: ['ip'] }),
});

test('an L7 object converts (as plain data), is not the waypoint\'s, or is refused with an InvalidObjectError and a reason', () => {
  fc.assert(fc.property(hostileL7Object, (obj) => {
    try {
      const converted = convertL7Object(obj, OPTIONS);
      if (converted) assert.deepEqual(wire(converted.value), converted.value, 'converted forms are JSON-safe');
    } catch (err) {
      assert.ok(err instanceof InvalidObjectError, `not an InvalidObjectError: ${err instanceof Error ? err.stack : String(err)}`);
      assert.ok(err.reason.length > 0 && err.object.length > 0);
    }
  }), { numRuns: RUNS });
});

test('what converts compiles, and every request gets a route, a no-route, a policy decision and a cluster policy', () => {
  fc.assert(fc.property(fc.array(hostileL7Object, { maxLength: 4 }), request, fc.double({ min: 0, max: 0.999999, noNaN: true }), (objects, r, draw) => {
    const { config, rejected } = convertL7Objects(objects, OPTIONS);
    assert.ok(rejected.every((x) => x.reason.length > 0 && x.object.length > 0));
    const table = new RouteTable(config.routes, { waypoint: WAYPOINT });
    const selection = selectRoute(table, r, () => draw);
    if (selection.kind === 'no_route') assert.ok(selection.reason.length > 0);
    else assert.ok(['forward', 'redirect', 'direct'].includes(selection.action.kind));
    const decision = evaluateL7Authz(new L7AuthzSet(config.authorizationPolicies, { waypoint: WAYPOINT }), r);
    assert.ok(decision.reason.length > 0);
    const policy = new DestinationRuleIndex(config.destinationRules, { waypointNamespace: 'demo' }).clusterPolicy(r.service.host, r.service.port, 'v1');
    assert.ok(policy.loadBalancer.kind.length > 0);
  }), { numRuns: RUNS });
});

test('a rejected waypoint policy fails closed: its stand-in denies every request it covers, naming itself', () => {
  fc.assert(fc.property(hostileL7Object, request, (obj, r) => {
    const standIn = l7FailClosedPolicy(obj, 'fuzzed', OPTIONS);
    if (!standIn) return;
    assert.equal(standIn.action, 'DENY');
    // A request through a waypoint and to a service the stand-in covers.
    const t = standIn.targets[0];
    if (!t) return;
    const waypoint = t.kind === 'gateway' ? { namespace: t.namespace, name: t.name } : t.kind === 'gateway_class' ? { ...WAYPOINT, className: t.name } : t.kind === 'namespace' ? { namespace: t.namespace, name: 'w' } : WAYPOINT;
    const host = t.kind === 'service' ? `${t.name}.${t.namespace}.svc.cluster.local` : r.service.host;
    const decision = evaluateL7Authz(new L7AuthzSet([standIn], { waypoint }), { ...r, service: { ...r.service, host } });
    assert.equal(decision.allowed, false);
    assert.equal(decision.policy, standIn.key);
    assert.match(decision.reason, /fails closed: it was rejected: fuzzed/);
  }), { numRuns: RUNS });
});

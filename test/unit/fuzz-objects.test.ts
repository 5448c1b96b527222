// Property tests over object conversion and validation: whatever the API
// server hands the agent, no object throws out of conversion, every refusal
// names the object, its rule and a reason, and what the agent would send is
// what the ztunnel accepts, as a snapshot and as a delta.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import { convertObject } from '../../lib/cluster/convert.ts';
import { podCgroupPath, podUidProblem } from '../../lib/cluster/cgroup-layout.ts';
import { parseCidr } from '../../lib/core/cidr.ts';
import { InvalidObjectError } from '../../lib/core/errors.ts';
import { parseControlMessage } from '../../lib/mesh/control-protocol.ts';
import { stateDelta } from '../../lib/mesh/delta.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { hostileObject } from '../support/hostile.ts';

const RUNS = 300;
const OPTIONS = { serviceCidrs: [parseCidr('10.96.0.0/16')!, parseCidr('fd00:96::/112')!], meshAddresses: ['10.244.1.254'], rootNamespace: 'meshlet-system' };
const objects = fc.array(hostileObject, { maxLength: 12 });
const wire = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

test('converting one object throws nothing but InvalidObjectError, with a reason', () => {
  fc.assert(fc.property(hostileObject, (obj) => {
    try {
      convertObject(obj);
    } catch (err) {
      assert.ok(err instanceof InvalidObjectError, `not an InvalidObjectError: ${String(err)}`);
      assert.ok(err.reason.length > 0);
    }
  }), { numRuns: RUNS * 2 });
});

test('an update never throws, and every refusal names the object, its rule and why', () => {
  fc.assert(fc.property(objects, fc.boolean(), (objs, withCidrs) => {
    const { rejected } = new ClusterState(withCidrs ? OPTIONS : {}).update(objs);
    for (const r of rejected) {
      assert.ok(r.object.length > 0 && r.reason.length > 0 && r.rule.length > 0, JSON.stringify(r));
      assert.ok(!Number.isNaN(Date.parse(r.since)));
    }
  }), { numRuns: RUNS });
});

test('what the agent would send, the ztunnel accepts: as a snapshot, and as a delta on top of the one before', () => {
  fc.assert(fc.property(objects, objects, (first, second) => {
    const cluster = new ClusterState(OPTIONS);
    const a = cluster.update(first).state;
    const b = cluster.update(second).state;
    const store = new StateStore();
    store.apply(parseControlMessage(wire({ type: 'snapshot', version: 1, state: a })));
    const changes = stateDelta(a, b);
    if (changes) store.apply(parseControlMessage(wire({ type: 'delta', version: 2, ...changes })));
    assert.equal(store.view!.workloads.size, b.workloads.length);
    assert.equal(store.view!.services.size, b.services.length);
  }), { numRuns: RUNS });
});

test('every workload\'s UID makes a cgroup path inside the pod tree, and every address is owned', () => {
  fc.assert(fc.property(objects, (objs) => {
    const { state } = new ClusterState(OPTIONS).update(objs);
    const vips = new Set(state.services.flatMap((s) => s.vips));
    for (const w of state.workloads) {
      assert.equal(podUidProblem(w.uid), undefined);
      assert.ok(!podCgroupPath(w.uid, 'BestEffort', 'cgroupfs').split('/').includes('..'));
      for (const ip of w.ips) assert.ok(!ip.startsWith('127.') && ip !== '::1' && !vips.has(ip), `${ip} of ${w.name}`);
    }
  }), { numRuns: RUNS });
});

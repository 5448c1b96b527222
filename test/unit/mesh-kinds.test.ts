// The kind table drives every per-kind path: the control messages, the
// agent's diff and the ztunnel's view. These tests go through those paths
// for every kind in MESH_KINDS, so a new kind is covered by its entry alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stateDelta } from '../../lib/mesh/delta.ts';
import { keyOf, listOf, MESH_KIND_NAMES, MESH_KINDS, type MeshKind, type MeshState } from '../../lib/mesh/kinds.ts';
import { parseControlMessage } from '../../lib/mesh/control-protocol.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { twoNodeState, workload } from '../ztunnel/fixtures.ts';
import { convertAuthorizationPolicy, convertPeerAuthentication } from '../../lib/policy/index.ts';

const policy = (name: string) => convertAuthorizationPolicy({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'demo' }, spec: { action: 'DENY', rules: [{}] },
});

const strict = convertPeerAuthentication({
  apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'demo' }, spec: { mtls: { mode: 'STRICT' } },
});

const waypoint = (name: string) => ({ namespace: 'demo', name, trafficType: 'service' as const, className: 'istio-waypoint' });
const waypointPolicy = (name: string) => ({ key: `demo/${name}`, namespace: 'demo', name, action: 'ALLOW' as const, targets: [{ kind: 'gateway' as const, namespace: 'demo', name: 'waypoint' }] });

const before = (): MeshState => ({
  ...twoNodeState(8080), authorizationPolicies: [policy('a'), policy('b')], peerAuthentications: [strict],
  waypoints: [waypoint('waypoint'), waypoint('old')], waypointPolicies: [waypointPolicy('p')],
});

/** The same state with objects changed, removed and added across the kinds (the PeerAuthentication removed). */
function after(): MeshState {
  const s = before();
  return {
    ...s,
    nodes: [s.nodes[0]!, { name: 'n3', address: '127.0.0.3' }],
    workloads: [s.workloads[0]!, { ...s.workloads[1]!, labels: { app: 'server', v: '2' } }, workload({ name: 'new', ips: ['127.0.0.13'], node: 'n1' })],
    services: [s.services[0]!],
    authorizationPolicies: [policy('b'), policy('c')],
    peerAuthentications: [],
    waypoints: [{ ...waypoint('waypoint'), trafficType: 'all' }, waypoint('new')],
    waypointPolicies: [waypointPolicy('q')],
  };
}

const sortedKeys = <K extends MeshKind>(state: MeshState, kind: K): string[] => listOf(state, kind).map((v) => keyOf(kind, v)).sort();

test('every kind has a label, a key, a validator and an order', () => {
  assert.deepEqual(MESH_KIND_NAMES, ['nodes', 'workloads', 'services', 'authorizationPolicies', 'peerAuthentications', 'waypoints', 'waypointPolicies']);
  for (const kind of MESH_KIND_NAMES) assert.ok(MESH_KINDS[kind].label !== '', kind);
});

test('a snapshot carries every kind and is refused without one', () => {
  const snapshot = parseControlMessage(JSON.parse(JSON.stringify({ type: 'snapshot', version: 1, state: before() })));
  assert.equal(snapshot.type, 'snapshot');
  for (const kind of MESH_KIND_NAMES) {
    const state: Record<string, unknown> = { ...before() };
    delete state[kind];
    assert.throws(() => parseControlMessage({ type: 'snapshot', version: 1, state }), { code: 'MESHLET_CONTROL_PROTOCOL', message: new RegExp(`${kind} must be an array`) });
  }
});

test('stateDelta, sent through the protocol and applied to a view, reproduces the new state in every kind', () => {
  const store = new StateStore();
  store.apply({ type: 'snapshot', version: 1, state: before() });
  const changes = stateDelta(before(), after());
  assert.ok(changes);
  const wire = parseControlMessage(JSON.parse(JSON.stringify({ type: 'delta', version: 2, ...changes })));
  const view = store.apply(wire);
  for (const kind of MESH_KIND_NAMES) assert.deepEqual(sortedKeys(view.state, kind), sortedKeys(after(), kind), kind);
  assert.deepEqual(view.workloadByUid('uid-server')?.labels, { app: 'server', v: '2' });
  assert.equal(stateDelta(after(), after()), null);
});

test('a duplicate key in any kind rejects the message and keeps the last view', () => {
  const store = new StateStore();
  const first = store.apply({ type: 'snapshot', version: 1, state: before() });
  for (const kind of MESH_KIND_NAMES) {
    const state = before();
    const list = listOf(state, kind) as unknown[];
    list.push(list[0]);
    assert.throws(() => store.apply({ type: 'snapshot', version: 2, state }), { code: 'MESHLET_CONTROL_PROTOCOL', message: /duplicate|both/ }, kind);
    assert.equal(store.view, first);
  }
});

// The ztunnel's waypoint decisions without sockets: where a bound
// destination's connection goes (round robin over the waypoint's pods, in
// the destination's address family), that a waypoint pod's own traffic never
// goes to a waypoint, the same-node bypass refusal, how hop 2 from a
// waypoint pod is read at the destination, and a policy change closing a
// connection that now goes around the waypoint.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../lib/core/log.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { Workload } from '../../lib/mesh/model.ts';
import { StateStore, type StateView } from '../../lib/mesh/state.ts';
import { WAYPOINT_INSTANCE_LABEL } from '../../lib/mesh/waypoints.ts';
import { FlowTable } from '../../lib/telemetry/flow-table.ts';
import { DestinationPolicy } from '../../ztunnel/destination-policy.ts';
import { planInbound } from '../../ztunnel/inbound-plan.ts';
import { ZtunnelMetrics } from '../../ztunnel/metrics.ts';
import { planOutbound } from '../../ztunnel/outbound-plan.ts';
import { Resolver } from '../../ztunnel/resolve.ts';
import { service, workload } from '../ztunnel/fixtures.ts';

const TD = 'cluster.local';
const WAYPOINT = { namespace: 'default', name: 'waypoint' };
const instance = (name: string, ips: string[]) => workload({ name, ips, node: 'n2', serviceAccount: 'waypoint', enrolled: false, labels: { [WAYPOINT_INSTANCE_LABEL]: 'waypoint' } });
const client = workload({ name: 'client', serviceAccount: 'client', ips: ['10.0.1.1'], node: 'n1' });
const local = workload({ name: 'local', serviceAccount: 'local', ips: ['10.0.1.2'], node: 'n1', waypoint: { ...WAYPOINT, from: 'namespace' } });
const server = workload({ name: 'server', serviceAccount: 'server', ips: ['10.0.2.1'], node: 'n2', waypoint: { ...WAYPOINT, from: 'namespace' } });
const wp0 = instance('waypoint-0', ['10.0.2.30', 'fd00::30']);
const wp1 = instance('waypoint-1', ['10.0.2.31']);

const state: MeshState = {
  nodes: [{ name: 'n1', address: '192.168.0.1' }, { name: 'n2', address: '192.168.0.2' }],
  workloads: [client, local, server, wp0, wp1],
  services: [
    service({ name: 'server', vips: ['10.96.0.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [{ ip: '10.0.2.1', ports: { http: 8080 } }, { ip: '10.0.1.2', ports: { http: 8080 } }], waypoint: { ...WAYPOINT, from: 'namespace' } }),
    service({ name: 'waypoint', vips: ['10.96.0.30'], ports: [{ name: 'mesh', port: 15008, protocol: 'TCP' }], endpoints: [{ ip: '10.0.2.30', ports: { mesh: 15008 } }, { ip: '10.0.2.31', ports: { mesh: 15008 } }, { ip: 'fd00::30', ports: { mesh: 15008 } }] }),
  ],
  authorizationPolicies: [],
  peerAuthentications: [],
  waypoints: [{ ...WAYPOINT, trafficType: 'service', className: 'istio-waypoint' }],
  waypointPolicies: [{ key: 'default/l7', namespace: 'default', name: 'l7', action: 'ALLOW', targets: [{ kind: 'gateway', ...WAYPOINT }] }],
};

const viewOf = (s: MeshState, version = 1): StateView => {
  const store = new StateStore();
  return store.apply({ type: 'snapshot', version, state: s });
};
const view = viewOf(state);
const uri = (w: Workload) => `spiffe://${TD}/ns/${w.namespace}/sa/${w.serviceAccount}`;
const outbound = (v: StateView, from: Workload, dst: { ip: string; port: number }, resolver = new Resolver('n1')) =>
  planOutbound(v, { source: { ip: from.ips[0]!, port: 40000 }, destination: dst, ownAddresses: new Set(), resolver, trustDomain: TD });

test('a bound Service\'s connections go round robin over the waypoint\'s pods, in the VIP\'s family, each expecting that pod\'s identity', () => {
  const resolver = new Resolver('n1');
  const plans = [0, 1, 2].map(() => outbound(view, client, { ip: '10.96.0.10', port: 80 }, resolver));
  assert.deepEqual(plans.map((p) => (p.kind === 'tunnel' ? `${p.via.address}:${p.port}` : p.kind)), ['10.0.2.30:15008', '10.0.2.31:15008', '10.0.2.30:15008']);
  const plan = plans[0]!;
  assert.equal(plan.kind, 'tunnel');
  if (plan.kind !== 'tunnel') return;
  assert.deepEqual(plan.target, { ip: '10.96.0.10', port: 80 }, 'the :authority is the original VIP:port');
  assert.deepEqual(plan.mtls, { source: spiffeId('default', 'client'), destination: spiffeId('default', 'waypoint') });
  assert.deepEqual(plan.flow.waypoint, WAYPOINT);
});

test('a waypoint pod\'s own traffic is never sent to a waypoint', () => {
  const plan = outbound(view, wp0, { ip: '10.96.0.10', port: 80 });
  assert.ok(plan.kind === 'tunnel' || plan.kind === 'direct', plan.kind);
  assert.equal(plan.flow.waypoint, undefined);
  assert.ok(plan.flow.destination?.ip === '10.0.2.1' || plan.flow.destination?.ip === '10.0.1.2');
});

test('same node: a pod under the waypoint\'s L7 policy refuses a client around the waypoint (this ztunnel is its destination\'s)', () => {
  const plan = outbound(view, client, { ip: '10.0.1.2', port: 8080 });
  assert.equal(plan.kind, 'deny');
  if (plan.kind !== 'deny') return;
  assert.equal(plan.authz.decision.refusal, 'waypoint_bypass');
  assert.equal(plan.flow.policy, 'default/l7');
  // A port no binding covers takes the client directly.
  assert.equal(outbound(view, client, { ip: '10.0.1.2', port: 9090 }).kind, 'direct');
});

test('a pod\'s own label naming a missing waypoint refuses its pod-IP traffic; its namespace\'s does not (that names service traffic)', () => {
  const missing = (from: 'object' | 'namespace') => viewOf({ ...state, workloads: state.workloads.map((w) => (w.name === 'server' ? { ...w, waypoint: { namespace: 'default', name: 'ghost', from } } : w)), waypointPolicies: [] });
  const own = outbound(missing('object'), client, { ip: '10.0.2.1', port: 8080 });
  assert.equal(own.kind === 'refuse' && own.reason, 'waypoint_unavailable');
  assert.deepEqual(own.flow.waypoint, { namespace: 'default', name: 'ghost' });
  assert.equal(outbound(missing('namespace'), client, { ip: '10.0.2.1', port: 8080 }).kind, 'tunnel');
});

const CONNECT = { method: 'CONNECT', authority: '10.0.2.1:8080', forwarded: 'for="10.0.1.1:40000"', traceparent: undefined };
const session = (w: Workload) => ({ sni: spiffeId('default', 'server'), client: { identity: spiffeId(w.namespace, w.serviceAccount) } });

test('hop 2: a waypoint pod is the source of what it sends; its Forwarded claim is neither believed nor counted as a mismatch', () => {
  const plan = planInbound(view, { node: 'n2', request: CONNECT, peer: { ip: '10.0.2.30', port: 50000 }, mtls: { trustDomain: TD, session: session(wp0) } });
  assert.equal(plan.kind, 'accept');
  if (plan.kind !== 'accept') return;
  assert.equal(plan.sourceMismatch, undefined);
  assert.deepEqual(plan.authz.request.source, { ip: '10.0.2.30', principal: uri(wp0) });
  assert.deepEqual(plan.flow.waypoint, WAYPOINT);
});

test('hop 2 from a waypoint pod\'s address with another identity is no waypoint\'s: its claim is checked, and the bypass refused', () => {
  const plan = planInbound(view, { node: 'n2', request: CONNECT, peer: { ip: '10.0.2.30', port: 50000 }, mtls: { trustDomain: TD, session: session(client) } });
  assert.equal(plan.kind, 'deny');
  if (plan.kind !== 'deny') return;
  assert.equal(plan.authz.decision.refusal, 'waypoint_bypass');
  assert.match(plan.sourceMismatch ?? '', /no node's address/);
  assert.equal(plan.flow.waypoint, undefined);
});

test('a policy change that puts a live connection around the waypoint closes it', () => {
  const before = viewOf({ ...state, waypointPolicies: [] });
  const after = viewOf(state, 2);
  const metrics = new ZtunnelMetrics();
  const policy = new DestinationPolicy(metrics, silentLogger);
  policy.onView(before);
  const plan = planInbound(before, { node: 'n2', request: CONNECT, peer: { ip: '192.168.0.1', port: 50000 }, mtls: { trustDomain: TD, session: session(client) } });
  assert.equal(plan.kind, 'accept', 'no L7 policy yet: the client may reach the pod directly');
  if (plan.kind !== 'accept') return;
  const flow = new FlowTable('n2').open(plan.flow);
  let aborted: string | undefined;
  flow.abort = (reason) => void (aborted = reason);
  policy.watch(flow, plan.authz.request);
  policy.onView(after);
  assert.equal(aborted, 'policy_denied');
  assert.equal(flow.record.policy, 'default/l7');
});

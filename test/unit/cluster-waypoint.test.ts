// Waypoints in the agent's cluster state: istio.io/use-waypoint on Services,
// Pods and Namespaces (the object's own label over its namespace's, `none`
// opting out), Gateways of a waypoint class with istio.io/waypoint-for,
// AuthorizationPolicies bound by targetRefs kept as what they target (and a
// rejected one as its waypoint stand-in, never a namespace-wide L4 DENY),
// each object converted alone; then what the state derives from them
// (lib/mesh/waypoints.ts): where bound traffic goes, which workloads take it
// from their waypoint only, the kernel's STRICT for those, and the lines
// `meshlet status` shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { parseControlMessage } from '../../lib/mesh/control-protocol.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { WAYPOINT_INSTANCE_LABEL, WaypointIndex } from '../../lib/mesh/waypoints.ts';
import { PolicyStore } from '../../lib/policy/index.ts';
import { inboundEnforcement } from '../../agent/inbound-mode.ts';

const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'istio.io/dataplane-mode': 'ambient', ...labels } } });

const pod = (name: string, ip: string, o: { labels?: Record<string, string>; sa?: string; namespace?: string } = {}): KubeObject => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace: o.namespace ?? 'demo', uid: `uid-${name}`, labels: { app: name, ...o.labels } },
  spec: { nodeName: 'node-1', serviceAccountName: o.sa ?? name, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
  status: { phase: 'Running', podIP: ip },
});

const svc = (name: string, vip: string, o: { labels?: Record<string, string>; ports?: unknown[]; namespace?: string } = {}): KubeObject => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: o.namespace ?? 'demo', labels: o.labels ?? {} },
  spec: { clusterIP: vip, ports: o.ports ?? [{ name: 'http', port: 80, targetPort: 'http' }] },
});

const slice = (service: string, ips: string[], ports: unknown[] = [{ name: 'http', port: 8080, protocol: 'TCP' }], namespace = 'demo'): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name: `${service}-x`, namespace, labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4', endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })), ports,
});

const gateway = (name: string, o: { labels?: Record<string, string>; className?: string; listeners?: unknown[]; apiVersion?: string; namespace?: string } = {}): KubeObject => ({
  apiVersion: o.apiVersion ?? 'gateway.networking.k8s.io/v1', kind: 'Gateway',
  metadata: { name, namespace: o.namespace ?? 'demo', labels: o.labels ?? {} },
  spec: { gatewayClassName: o.className ?? 'istio-waypoint', listeners: o.listeners ?? [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});

const policy = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'demo' }, spec });
const onGateway = (name: string, gw = 'waypoint') => policy(name, { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: gw }], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] });

/** The waypoint `waypoint` in demo: its Gateway, its pod (the controller's labels), its Service on 15008 and that Service's slice. */
const waypointObjects = (o: { ip?: string; labels?: Record<string, string>; ready?: boolean } = {}): KubeObject[] => [
  gateway('waypoint', { labels: o.labels ?? {} }),
  pod('waypoint-0', o.ip ?? '10.244.1.30', { sa: 'waypoint', labels: { [WAYPOINT_INSTANCE_LABEL]: 'waypoint', 'istio.io/dataplane-mode': 'none' } }),
  svc('waypoint', '10.96.0.30', { ports: [{ name: 'mesh', port: 15008 }] }),
  slice('waypoint', o.ready === false ? [] : [o.ip ?? '10.244.1.30'], [{ name: 'mesh', port: 15008, protocol: 'TCP' }]),
];

const bindingOf = (objects: KubeObject[]) => {
  const { state, rejected } = new ClusterState().update(objects);
  return {
    state,
    rejected,
    service: (name: string) => state.services.find((s) => s.name === name)?.waypoint,
    workload: (name: string) => state.workloads.find((w) => w.name === name)?.waypoint,
  };
};

test('use-waypoint: a Service\'s own label wins over its namespace\'s for VIP traffic, a Pod\'s for pod-IP traffic, and none opts out', () => {
  const b = bindingOf([
    ns('demo', { 'istio.io/use-waypoint': 'waypoint' }),
    svc('inherits', '10.96.0.10'),
    svc('own', '10.96.0.11', { labels: { 'istio.io/use-waypoint': 'other' } }),
    svc('out', '10.96.0.12', { labels: { 'istio.io/use-waypoint': 'none' } }),
    svc('elsewhere', '10.96.0.13', { labels: { 'istio.io/use-waypoint': 'shared', 'istio.io/use-waypoint-namespace': 'infra' } }),
    pod('inherits', '10.244.1.2'),
    pod('own', '10.244.1.3', { labels: { 'istio.io/use-waypoint': 'pods' } }),
    pod('out', '10.244.1.4', { labels: { 'istio.io/use-waypoint': 'none' } }),
  ]);
  assert.deepEqual(b.rejected, []);
  assert.deepEqual(b.service('inherits'), { namespace: 'demo', name: 'waypoint', from: 'namespace' });
  assert.deepEqual(b.service('own'), { namespace: 'demo', name: 'other', from: 'object' });
  assert.equal(b.service('out'), undefined);
  assert.deepEqual(b.service('elsewhere'), { namespace: 'infra', name: 'shared', from: 'object' });
  assert.deepEqual(b.workload('inherits'), { namespace: 'demo', name: 'waypoint', from: 'namespace' });
  assert.deepEqual(b.workload('own'), { namespace: 'demo', name: 'pods', from: 'object' });
  assert.equal(b.workload('out'), undefined);
  // none on the namespace binds nothing; a namespace's namespace label names where its waypoint is.
  const none = bindingOf([ns('demo', { 'istio.io/use-waypoint': 'none' }), svc('web', '10.96.0.10')]);
  assert.equal(none.service('web'), undefined);
  const cross = bindingOf([ns('demo', { 'istio.io/use-waypoint': 'shared', 'istio.io/use-waypoint-namespace': 'infra' }), svc('web', '10.96.0.10')]);
  assert.deepEqual(cross.service('web'), { namespace: 'infra', name: 'shared', from: 'namespace' });
});

test('a bad use-waypoint label rejects its object alone, with the label and the fix named; nothing throws', () => {
  const b = bindingOf([
    ns('demo'),
    svc('bad', '10.96.0.10', { labels: { 'istio.io/use-waypoint': 'Not_A_Name' } }),
    svc('good', '10.96.0.11', { labels: { 'istio.io/use-waypoint': 'waypoint' } }),
    pod('bad', '10.244.1.2', { labels: { 'istio.io/use-waypoint': 'waypoint', 'istio.io/use-waypoint-namespace': 'Infra!' } }),
  ]);
  assert.deepEqual(b.rejected.map((r) => r.object).sort(), ['Pod demo/bad', 'Service demo/bad']);
  for (const r of b.rejected) assert.match(r.reason, /istio\.io\/use-waypoint.*names a waypoint Gateway \(or is "none" to opt out\)/);
  assert.deepEqual(b.state.services.map((s) => s.name), ['good']);
});

test('a Gateway of a waypoint class is a waypoint, with istio.io/waypoint-for (default service); another class is not; a bad one is refused with why', () => {
  const { state, rejected } = new ClusterState().update([
    ns('demo'),
    gateway('plain'),
    gateway('for-all', { labels: { 'istio.io/waypoint-for': 'all' }, className: 'meshlet-waypoint' }),
    gateway('workloads', { labels: { 'istio.io/waypoint-for': 'workload' } }),
    gateway('v1beta1', { apiVersion: 'gateway.networking.k8s.io/v1beta1' }),
    gateway('ingress', { className: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] }),
    gateway('typo', { labels: { 'istio.io/waypoint-for': 'services' } }),
    gateway('no-hbone', { listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] }),
    gateway('Upper.Case'),
    // Istio's own Gateway kind is not the Gateway API's.
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'istio-ingress', namespace: 'demo' }, spec: {} },
  ]);
  assert.deepEqual(state.waypoints.map((w) => [w.name, w.trafficType, w.className]), [
    ['for-all', 'all', 'meshlet-waypoint'],
    ['plain', 'service', 'istio-waypoint'],
    ['v1beta1', 'service', 'istio-waypoint'],
    ['workloads', 'workload', 'istio-waypoint'],
  ]);
  const reasons = Object.fromEntries(rejected.map((r) => [r.object, r.reason]));
  assert.deepEqual(Object.keys(reasons).sort(), ['Gateway demo/Upper.Case', 'Gateway demo/no-hbone', 'Gateway demo/typo']);
  assert.match(reasons['Gateway demo/typo']!, /istio\.io\/waypoint-for="services" is not a traffic type; use service \(the default\), workload, all or none/);
  assert.match(reasons['Gateway demo/no-hbone']!, /needs the listener \{name: mesh, port: 15008, protocol: HBONE\}/);
  assert.match(reasons['Gateway demo/Upper.Case']!, /not a Kubernetes name/);
});

test('a targetRefs AuthorizationPolicy is the waypoint\'s: kept as what it targets, never as an L4 policy', () => {
  const { state, rejected } = new ClusterState().update([
    ns('demo'),
    onGateway('l7'),
    policy('on-service', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], action: 'DENY', rules: [{}] }),
    policy('audit', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }], action: 'AUDIT', rules: [{}] }),
    policy('l4', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
    // An empty list binds nothing: the ztunnel's, as Istio reads it.
    policy('empty-refs', { targetRefs: [], rules: [{}] }),
  ]);
  assert.deepEqual(rejected, []);
  assert.deepEqual(state.authorizationPolicies.map((p) => p.key), ['demo/empty-refs', 'demo/l4']);
  assert.deepEqual(state.waypointPolicies, [
    { key: 'demo/l7', namespace: 'demo', name: 'l7', action: 'ALLOW', targets: [{ kind: 'gateway', namespace: 'demo', name: 'waypoint' }] },
    { key: 'demo/on-service', namespace: 'demo', name: 'on-service', action: 'DENY', targets: [{ kind: 'service', namespace: 'demo', name: 'web' }] },
  ]);
});

test('a rejected targetRefs policy fails closed through its waypoint (the waypoint denies, the ztunnels refuse bypass), not as a DENY of its namespace', () => {
  const { state, rejected } = new ClusterState().update([
    ns('demo'),
    policy('bad-rule', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }], rules: [{ to: [{ operation: { methods: 'GET' } }] }] }),
    policy('unreadable', { targetRefs: 'waypoint', rules: [{}] }),
  ]);
  assert.deepEqual(state.authorizationPolicies, [], 'no L4 stand-in: that denied every workload of the namespace');
  const standIns = Object.fromEntries(state.waypointPolicies.map((p) => [p.key, p]));
  assert.equal(standIns['demo/bad-rule']!.action, 'DENY');
  assert.deepEqual(standIns['demo/bad-rule']!.targets, [{ kind: 'gateway', namespace: 'demo', name: 'waypoint' }]);
  assert.match(standIns['demo/bad-rule']!.failClosed ?? '', /^rejected: /);
  // References it cannot read: every waypoint and service of its namespace.
  assert.deepEqual(standIns['demo/unreadable']!.targets, [{ kind: 'namespace', namespace: 'demo' }]);
  const effects = Object.fromEntries(rejected.map((r) => [r.object, r.failClosed]));
  assert.match(effects['AuthorizationPolicy demo/bad-rule'] ?? '', /denies every request through waypoint demo\/waypoint; the ztunnels refuse traffic that goes around the waypoints/);
  assert.match(effects['AuthorizationPolicy demo/unreadable'] ?? '', /through every waypoint and to every service in namespace demo/);
});

test('what the agent derives, the ztunnel takes as it is: a snapshot with waypoints, bindings and waypoint policies', () => {
  const { state } = new ClusterState().update([ns('demo', { 'istio.io/use-waypoint': 'waypoint' }), ...waypointObjects(), svc('web', '10.96.0.10'), pod('web', '10.244.1.2'), slice('web', ['10.244.1.2']), onGateway('l7')]);
  const view = new StateStore().apply(parseControlMessage(JSON.parse(JSON.stringify({ type: 'snapshot', version: 1, state }))));
  assert.deepEqual(view.state.waypoints, state.waypoints);
  assert.deepEqual(view.state.waypointPolicies, state.waypointPolicies);
  assert.deepEqual(view.services.get('demo/web')?.waypoint, { namespace: 'demo', name: 'waypoint', from: 'namespace' });
});

test('the index: a waypoint is reached at its own pods\' 15008 and known by their ServiceAccounts; its own Service and pods take no waypoint', () => {
  const objects = [
    ns('demo', { 'istio.io/use-waypoint': 'waypoint' }),
    ...waypointObjects(),
    // Selected by the waypoint's Service by mistake, not one of its pods: not the waypoint.
    pod('stray', '10.244.1.31'),
    slice('waypoint', ['10.244.1.31'], [{ name: 'mesh', port: 15008, protocol: 'TCP' }]),
    svc('web', '10.96.0.10'), pod('web', '10.244.1.2'), slice('web', ['10.244.1.2']),
  ];
  // Two slices of one Service: the second's name must differ.
  (objects[6]!.metadata as Record<string, unknown>).name = 'waypoint-y';
  const { state } = new ClusterState().update(objects);
  const index = new WaypointIndex(state);
  const web = state.services.find((s) => s.name === 'web')!;
  const use = index.forService(web);
  assert.deepEqual(use?.endpoints.map((e) => [e.ip, e.port, e.workload.serviceAccount]), [['10.244.1.30', 15008, 'waypoint']]);
  assert.equal(use?.problem, undefined);
  assert.equal(index.forService(state.services.find((s) => s.name === 'waypoint')!), undefined, 'a waypoint\'s own Service');
  const waypointPod = state.workloads.find((w) => w.name === 'waypoint-0')!;
  assert.deepEqual(index.instanceOf(waypointPod), { namespace: 'demo', name: 'waypoint' });
  assert.equal(index.instanceOf(state.workloads.find((w) => w.name === 'stray')!), undefined);
  // The namespace binds the pods too, but a service waypoint takes no pod-IP traffic.
  assert.equal(index.forWorkload(state.workloads.find((w) => w.name === 'web')!), undefined);
});

test('the guard: a workload behind a governed binding takes its waypoints\' identities only, on the ports the binding covers', () => {
  const { state } = new ClusterState().update([
    ns('demo'),
    ...waypointObjects(),
    gateway('other'),
    pod('other-0', '10.244.1.40', { sa: 'other-sa', labels: { [WAYPOINT_INSTANCE_LABEL]: 'other' } }),
    // One pod behind three Services: a governed one on 8080, an ungoverned one bound to another waypoint on 8080, a plain one on 9090.
    pod('api', '10.244.1.2'),
    svc('api', '10.96.0.10', { labels: { 'istio.io/use-waypoint': 'waypoint' } }),
    slice('api', ['10.244.1.2']),
    svc('api-other', '10.96.0.11', { labels: { 'istio.io/use-waypoint': 'other' } }),
    slice('api-other', ['10.244.1.2']),
    svc('api-metrics', '10.96.0.12', { ports: [{ name: 'metrics', port: 9090 }] }),
    slice('api-metrics', ['10.244.1.2'], [{ name: 'metrics', port: 9090, protocol: 'TCP' }]),
    policy('on-api', { targetRefs: [{ group: '', kind: 'Service', name: 'api' }], rules: [{}] }),
  ]);
  const index = new WaypointIndex(state);
  const api = state.workloads.find((w) => w.name === 'api')!;
  const guard = index.guard(api, 8080);
  assert.equal(guard?.policy, 'demo/on-api');
  assert.deepEqual(guard?.waypoints.map((w) => w.name).sort(), ['other', 'waypoint']);
  assert.deepEqual([...(guard?.serviceAccounts ?? [])].sort(), ['demo/other-sa', 'demo/waypoint']);
  assert.equal(index.guard(api, 9090), undefined, 'a port no governed binding covers');
  assert.equal(index.guarded(api), true);
  assert.equal(index.guarded(state.workloads.find((w) => w.name === 'other-0')!), false);
  // Its pods do not run as the Gateway's name, as the controller's do: status says what passes for it.
  assert.ok(index.problems().some((p) => p.object === 'Gateway demo/other' && /run as demo\/other-sa, not only demo\/other/.test(p.problem)), JSON.stringify(index.problems()));
  // The kernel keeps plaintext out of it, whatever its PeerAuthentication says.
  const store = new PolicyStore([], []);
  assert.equal(inboundEnforcement(api, store, [], index.guarded(api)).mode, 'STRICT');
  assert.equal(inboundEnforcement(api, store, [], false).mode, 'PERMISSIVE');
});

test('governed by the waypoint\'s Gateway, its class (from the root namespace), or a bound Service; a missing waypoint still guards', () => {
  const base = [ns('demo', { 'istio.io/use-waypoint': 'waypoint' }), pod('web', '10.244.1.2'), svc('web', '10.96.0.10'), slice('web', ['10.244.1.2'])];
  const guardWith = (...more: KubeObject[]) => {
    const { state } = new ClusterState().update([...base, ...more]);
    const index = new WaypointIndex(state);
    return index.guard(state.workloads.find((w) => w.name === 'web')!, 8080)?.policy;
  };
  assert.equal(guardWith(...waypointObjects()), undefined, 'a waypoint without L7 policy guards nothing');
  assert.equal(guardWith(...waypointObjects(), onGateway('l7')), 'demo/l7');
  assert.equal(guardWith(...waypointObjects(), onGateway('elsewhere', 'another')), undefined);
  assert.equal(guardWith(...waypointObjects(), policy('svc', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{}] })), 'demo/svc');
  const classWide = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'class', namespace: 'meshlet-system' }, spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio-waypoint' }], rules: [{}] } };
  assert.equal(guardWith(...waypointObjects(), classWide), 'meshlet-system/class');
  // Deleted Gateway: its policy still names it, so the workload still takes traffic from no one but it (no one, now).
  assert.equal(guardWith(onGateway('l7')), 'demo/l7');
});

test('status: bindings whose waypoint is missing or has no ready pod, bindings a waypoint does not take, and policies nothing enforces', () => {
  const { state } = new ClusterState().update([
    ns('demo'),
    ...waypointObjects({ ready: false, labels: { 'istio.io/waypoint-for': 'service' } }),
    svc('web', '10.96.0.10', { labels: { 'istio.io/use-waypoint': 'waypoint' } }),
    svc('api', '10.96.0.11', { labels: { 'istio.io/use-waypoint': 'ghost' } }),
    svc('plain', '10.96.0.12'),
    pod('web', '10.244.1.2', { labels: { 'istio.io/use-waypoint': 'waypoint' } }),
    pod('api', '10.244.1.3', { labels: { 'istio.io/use-waypoint': 'ghost' } }),
    policy('on-plain', { targetRefs: [{ group: '', kind: 'Service', name: 'plain' }], rules: [{}] }),
  ]);
  const lines = new WaypointIndex(state).problems().map((p) => `${p.object} | ${p.waypoint} | ${p.problem}`);
  const has = (re: RegExp) => assert.ok(lines.some((l) => re.test(l)), `no line matches ${re}:\n${lines.join('\n')}`);
  has(/^Service demo\/web \| demo\/waypoint \| waypoint demo\/waypoint has no ready pod/);
  has(/^Service demo\/api \| demo\/ghost \| waypoint demo\/ghost does not exist/);
  has(/^Pod demo\/web \| demo\/waypoint \| the waypoint takes service traffic only .* traffic to the pod's own address goes straight to it/);
  // The pod's own label names a waypoint that does not exist: its pod-IP traffic is refused.
  has(/^Pod demo\/api \| demo\/ghost \| waypoint demo\/ghost does not exist/);
  has(/^AuthorizationPolicy demo\/on-plain \| - \| it targets Service demo\/plain, which no waypoint serves/);
  assert.equal(lines.length, 5, lines.join('\n'));
});

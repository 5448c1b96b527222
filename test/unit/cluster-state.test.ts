import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import { parsePortList } from '../../lib/cluster/convert.ts';
import { stateDelta } from '../../lib/mesh/delta.ts';
import { validateService, validateWorkload } from '../../lib/mesh/validate.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';

const ns = (name: string, mode?: string): KubeObject => ({
  apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: mode ? { 'istio.io/dataplane-mode': mode } : {} },
});

const pod = (name: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string>; ip?: string; node?: string } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'demo', uid: `uid-${name}`, labels: extra.labels ?? { app: name }, annotations: extra.annotations ?? {} },
  spec: { nodeName: extra.node ?? 'node-1', serviceAccountName: 'sa', containers: [{ name: 'c', command: ['x'], ports: [{ name: 'http', containerPort: 8080 }] }] },
  // Each pod its own IPv6 address too: two pods claiming one address would be a contradiction.
  status: { phase: 'Running', podIP: extra.ip ?? '10.244.1.2', podIPs: [{ ip: `fd00:244:1::${(extra.ip ?? '10.244.1.2').split('.')[3]}` }, { ip: extra.ip ?? '10.244.1.2' }] },
});

const service = (name: string, ports: unknown[]): KubeObject => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'demo' }, spec: { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports },
});

test('a pod in an ambient namespace is an enrolled workload with its IPs, ports and identity', () => {
  const { state, rejected } = new ClusterState().update([ns('demo', 'ambient'), pod('web')]);
  assert.deepEqual(rejected, []);
  assert.equal(state.workloads.length, 1);
  const w = state.workloads[0]!;
  assert.equal(w.enrolled, true);
  assert.deepEqual(w.ips, ['10.244.1.2', 'fd00:244:1::2']);
  assert.equal(w.serviceAccount, 'sa');
});

test('enrollment follows Istio: namespace label, pod opt-out with none, pod opt-in with ambient', () => {
  const { state } = new ClusterState().update([
    ns('demo', 'ambient'),
    pod('in'),
    pod('out', { labels: { 'istio.io/dataplane-mode': 'none' }, ip: '10.244.1.3' }),
  ]);
  assert.deepEqual(state.workloads.map((w) => [w.name, w.enrolled]), [['in', true], ['out', false]]);
  const plain = new ClusterState().update([ns('demo'), pod('a'), pod('b', { labels: { 'istio.io/dataplane-mode': 'ambient' }, ip: '10.244.1.4' })]);
  assert.deepEqual(plain.state.workloads.map((w) => [w.name, w.enrolled]), [['a', false], ['b', true]]);
});

test('exclude-outbound-ports annotation is parsed, and a bad one rejects that pod alone', () => {
  assert.deepEqual(parsePortList('6379, 5432,6379'), [5432, 6379]);
  assert.equal(parsePortList('5432,abc'), null);
  assert.equal(parsePortList('70000'), null);
  const { state, rejected } = new ClusterState().update([
    ns('demo', 'ambient'),
    pod('good', { annotations: { 'meshlet.io/exclude-outbound-ports': '5432,6379' } }),
    pod('bad', { annotations: { 'meshlet.io/exclude-outbound-ports': 'postgres' }, ip: '10.244.1.9' }),
  ]);
  assert.deepEqual(state.workloads.map((w) => w.name), ['good']);
  assert.deepEqual(state.workloads[0]!.excludeOutboundPorts, [5432, 6379]);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]!.object, 'Pod demo/bad');
  assert.match(rejected[0]!.reason, /comma-separated numbers/);
});

test('an object that turns bad keeps its last good form in effect and is reported', () => {
  const cluster = new ClusterState();
  cluster.update([ns('demo', 'ambient'), service('web', [{ port: 80, targetPort: 'http' }])]);
  const { state, rejected } = cluster.update([ns('demo', 'ambient'), service('web', [{ port: 'eighty' }])]);
  assert.equal(rejected.length, 1);
  assert.match(rejected[0]!.reason, /spec\.ports\[0\]\.port must be a number/);
  assert.deepEqual(state.services[0]!.ports, [{ port: 80, protocol: 'TCP' }]);
  // Once deleted, it is gone for good.
  assert.deepEqual(cluster.update([ns('demo', 'ambient')]).state.services, []);
});

test('unknown dataplane mode, missing name and non-IP addresses are rejected with the fix named', () => {
  const { rejected } = new ClusterState().update([
    ns('x', 'ambeint'),
    { kind: 'Pod', metadata: {} },
    { ...pod('p'), status: { phase: 'Running', podIP: 'not-an-ip' } },
  ]);
  const reasons = rejected.map((r) => r.reason).join('\n');
  assert.match(reasons, /use "ambient" or "none"/);
  assert.match(reasons, /metadata.name is missing/);
  assert.match(reasons, /not an IP address/);
});

test('a pod without an IP yet is not a workload and not an error', () => {
  const p = pod('pending');
  p.status = { phase: 'Pending' };
  const { state, rejected } = new ClusterState().update([ns('demo', 'ambient'), p]);
  assert.deepEqual(state.workloads, []);
  assert.deepEqual(rejected, []);
});

test('a hostNetwork pod is never a workload, even in an enrolled namespace', () => {
  const p = pod('agent');
  (p.spec as Record<string, unknown>).hostNetwork = true;
  p.status = { ...(p.status as object), podIP: '10.200.0.11', podIPs: [{ ip: '10.200.0.11' }] };
  const { state, rejected } = new ClusterState().update([ns('demo', 'ambient'), p]);
  assert.deepEqual(state.workloads, []);
  assert.deepEqual(rejected, []);
});

test('a pod carries its QoS class for the agent alone: status.qosClass, else from its resources', () => {
  const withResources = (name: string, ip: string, resources: unknown): KubeObject => {
    const p = pod(name, { ip });
    (p.spec as { containers: Record<string, unknown>[] }).containers[0]!.resources = resources;
    return p;
  };
  const recorded = pod('recorded', { ip: '10.244.1.5' });
  (recorded.status as Record<string, unknown>).qosClass = 'Burstable';
  const { state, rejected } = new ClusterState().update([
    ns('demo', 'ambient'),
    pod('plain'),
    withResources('limited', '10.244.1.3', { limits: { cpu: '1', memory: '1Gi' } }),
    withResources('requests', '10.244.1.4', { requests: { memory: '64Mi' } }),
    recorded,
    withResources('bad', '10.244.1.6', { requests: { cpu: 'lots' } }),
  ]);
  assert.deepEqual(state.workloads.map((w) => [w.name, w.qosClass]).sort(), [['limited', 'Guaranteed'], ['plain', 'BestEffort'], ['recorded', 'Burstable'], ['requests', 'Burstable']]);
  assert.deepEqual(rejected.map((r) => r.object), ['Pod demo/bad']);
  assert.match(rejected[0]!.reason, /cpu or memory resources: "lots" is not a Kubernetes quantity/);
  // The ztunnel's validation keeps only what it uses, so its state and the agent's agree on everything they share.
  const checked = validateWorkload(JSON.parse(JSON.stringify(state.workloads[0])), 'workload');
  assert.equal('qosClass' in checked, false);
  assert.equal('probePorts' in checked, false);
});

/** A running pod at exactly `ips`. */
const podAt = (name: string, ips: string[]): KubeObject => ({ ...pod(name), status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } });

const slice = (name: string, service: string | undefined, addressType: string, endpoints: unknown[], ports: unknown[] = [{ name: 'http', port: 8080, protocol: 'TCP' }]): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'demo', labels: service === undefined ? {} : { 'kubernetes.io/service-name': service } },
  addressType,
  endpoints,
  ports,
});

const webService = (ports: unknown[] = [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'metrics', port: 9090 }]): KubeObject => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo' }, spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00:96::10'], ports },
});

test('a Service\'s endpoints are its EndpointSlices\' ready addresses, both families, with each slice\'s resolved ports', () => {
  const ports = [{ name: 'metrics', port: 9090, protocol: 'TCP' }];
  const { state, rejected, endpointWarnings } = new ClusterState().update([
    ns('demo', 'ambient'),
    podAt('web-1', ['10.244.1.2', 'fd00:244:1::2']),
    podAt('web-2', ['10.244.1.3']),
    podAt('web-3', ['10.244.1.4']),
    webService(),
    // The controller puts pods whose named port resolves differently in different slices.
    slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.1.2'], conditions: { ready: true } }, { addresses: ['10.244.1.4'], conditions: { ready: false } }], [{ name: 'http', port: 8080, protocol: 'TCP' }, ...ports]),
    // No conditions, or ready null: ready, as the API says.
    slice('web-b', 'web', 'IPv4', [{ addresses: ['10.244.1.3'] }], [{ name: 'http', port: 8081 }, ...ports]),
    slice('web-v6', 'web', 'IPv6', [{ addresses: ['fd00:244:1:0:0:0:0:2'], conditions: { ready: null } }], [{ name: 'http', port: 8080, protocol: 'TCP' }, ...ports]),
    // Not web's: another Service's, no Service's, hostnames.
    slice('api-a', 'api', 'IPv4', [{ addresses: ['10.244.1.4'] }]),
    slice('mirror', undefined, 'IPv4', [{ addresses: ['10.244.1.4'] }]),
    slice('web-fqdn', 'web', 'FQDN', [{ addresses: ['web.example.com'] }]),
  ]);
  assert.deepEqual(rejected, []);
  assert.deepEqual(endpointWarnings, []);
  assert.deepEqual(state.services.map((s) => s.endpoints), [[
    { ip: '10.244.1.2', ports: { http: 8080, metrics: 9090 } },
    { ip: '10.244.1.3', ports: { http: 8081, metrics: 9090 } },
    { ip: 'fd00:244:1::2', ports: { http: 8080, metrics: 9090 } },
  ]]);
  // What the ztunnel accepts of it.
  assert.deepEqual(validateService(JSON.parse(JSON.stringify(state.services[0])), 'service'), state.services[0]);
});

test('a slice port serves the Service port of its name and protocol; an unnamed Service port is the slice\'s port ""', () => {
  const { state } = new ClusterState().update([
    ns('demo'),
    podAt('web-1', ['10.244.1.2']),
    webService([{ port: 80, targetPort: 8080 }]),
    slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.1.2'] }], [{ name: '', port: 8080, protocol: 'TCP' }]),
  ]);
  assert.deepEqual(state.services[0]!.endpoints, [{ ip: '10.244.1.2', ports: { '': 8080 } }]);
  const udp = new ClusterState().update([
    ns('demo'),
    podAt('web-1', ['10.244.1.2']),
    webService([{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'constructor', port: 54 }]),
    slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.1.2'] }], [{ name: 'dns', port: 5353, protocol: 'TCP' }, { name: 'unrestricted' }]),
  ]);
  assert.deepEqual(udp.rejected, []);
  assert.deepEqual(udp.state.services[0]!.endpoints, [{ ip: '10.244.1.2', ports: {} }]);
});

test('a ready endpoint that is no pod\'s address is left out and named in a warning', () => {
  const many = Array.from({ length: 7 }, (_, i) => ({ addresses: [`192.0.2.${i + 1}`] }));
  const { state, rejected, endpointWarnings } = new ClusterState().update([
    ns('demo', 'ambient'),
    podAt('web-1', ['10.244.1.2']),
    webService(),
    slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.1.2'] }, { addresses: ['10.244.9.9'] }]),
    slice('web-b', 'web', 'IPv4', many),
  ]);
  assert.deepEqual(rejected, []);
  assert.deepEqual(state.services[0]!.endpoints, [{ ip: '10.244.1.2', ports: { http: 8080 } }]);
  assert.deepEqual(endpointWarnings.map((w) => w.object), ['EndpointSlice demo/web-a', 'EndpointSlice demo/web-b']);
  assert.match(endpointWarnings[0]!.warning, /^ready endpoint 10\.244\.9\.9 is no running pod's address, so the mesh does not route Service demo\/web to it/);
  assert.match(endpointWarnings[1]!.warning, /^ready endpoints 192\.0\.2\.1, 192\.0\.2\.2, 192\.0\.2\.3, 192\.0\.2\.4, 192\.0\.2\.5 and 2 more are no running pod's address/);
});

test('a bad EndpointSlice is rejected alone: its last good form stays, the other slices apply', () => {
  const cluster = new ClusterState();
  const objects = (a: KubeObject) => [ns('demo'), podAt('web-1', ['10.244.1.2']), podAt('web-2', ['10.244.1.3']), webService(), a, slice('web-b', 'web', 'IPv4', [{ addresses: ['10.244.1.3'] }])];
  cluster.update(objects(slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.1.2'] }])));
  const { state, rejected } = cluster.update(objects(slice('web-a', 'web', 'IPv4', [{ addresses: ['fd00::2'] }])));
  assert.deepEqual(rejected.map((r) => r.object), ['EndpointSlice demo/web-a']);
  assert.match(rejected[0]!.reason, /endpoints\[0\]\.addresses\[0\] "fd00::2" is not an IPv4 address, as the slice's addressType says/);
  assert.deepEqual(state.services[0]!.endpoints.map((e) => e.ip), ['10.244.1.2', '10.244.1.3']);
  const reasons = [
    [slice('x', 'web', 'IPv5', []), /addressType must be IPv4, IPv6 or FQDN/],
    [slice('x', 'web', 'IPv4', [{ addresses: [] }]), /endpoints\[0\]\.addresses must be a non-empty list/],
    [slice('x', 'web', 'IPv4', [{ addresses: ['10.0.0.1'], conditions: { ready: 'yes' } }]), /conditions\.ready must be true or false/],
    [slice('x', 'web', 'IPv4', [], [{ name: 'http', port: 70000 }]), /ports\[0\]\.port must be a number from 1 to 65535/],
  ] as const;
  for (const [bad, reason] of reasons) assert.match(new ClusterState().update([bad]).rejected[0]?.reason ?? '', reason);
});

test('nodes come from Node objects\' InternalIP', () => {
  const { state } = new ClusterState().update([
    { kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: 'fd00:200::11' }, { type: 'InternalIP', address: '10.200.0.11' }] } },
  ]);
  assert.deepEqual(state.nodes, [{ name: 'node-1', address: '10.200.0.11' }]);
});

test('deltas carry only what changed', () => {
  const cluster = new ClusterState();
  const a = cluster.update([ns('demo', 'ambient'), pod('web'), pod('db', { ip: '10.244.1.7' })]).state;
  const b = cluster.update([ns('demo', 'ambient'), pod('web', { labels: { app: 'web2' } })]).state;
  const d = stateDelta(a, b);
  assert.ok(d);
  assert.deepEqual(d.upsert.workloads.map((w) => w.name), ['web']);
  assert.deepEqual(d.remove.workloads, ['uid-db']);
  assert.equal(stateDelta(b, b), null);
});

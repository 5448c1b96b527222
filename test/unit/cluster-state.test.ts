import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import { parsePortList } from '../../lib/cluster/convert.ts';
import { stateDelta } from '../../lib/mesh/delta.ts';
import { validateWorkload } from '../../lib/mesh/validate.ts';
import { parseJsonDocuments, parseStateYaml } from '../../lib/cluster/sources/file.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';

const ns = (name: string, mode?: string): KubeObject => ({
  apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: mode ? { 'istio.io/dataplane-mode': mode } : {} },
});

const pod = (name: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string>; ip?: string; node?: string } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'demo', uid: `uid-${name}`, labels: extra.labels ?? { app: name }, annotations: extra.annotations ?? {} },
  spec: { nodeName: extra.node ?? 'node-1', serviceAccountName: 'sa', containers: [{ name: 'c', command: ['x'], ports: [{ name: 'http', containerPort: 8080 }] }] },
  status: { phase: 'Running', podIP: extra.ip ?? '10.244.1.2', podIPs: [{ ip: 'fd00:244:1::2' }, { ip: extra.ip ?? '10.244.1.2' }] },
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
  assert.deepEqual(w.namedPorts, { http: 8080 });
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
  assert.deepEqual(state.services[0]!.ports, [{ port: 80, targetPort: 'http', protocol: 'TCP' }]);
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

test('state file: multi-document YAML, with unreadable documents reported', () => {
  const read = parseStateYaml('kind: Namespace\nmetadata: {name: a}\n---\n- not a map\n---\nkind: [\n');
  assert.equal(read.objects.length, 1);
  assert.deepEqual(read.unreadable.map((u) => u.document), [2, 3]);
});

test('state file: JSON documents take the fast path and read the same as YAML', () => {
  const objects = [{ kind: 'Namespace', metadata: { name: 'a' } }, { kind: 'Pod', metadata: { name: 'p', annotations: { note: 'x\n---\ny' } } }];
  const json = `# header\n${objects.map((o) => JSON.stringify(o)).join('\n---\n')}\n`;
  assert.deepEqual(parseJsonDocuments(json), objects);
  assert.deepEqual(parseStateYaml(json).objects, objects);
  assert.equal(parseJsonDocuments('kind: Namespace\nmetadata: {name: a}\n'), undefined, 'YAML falls back to the YAML parser');
});

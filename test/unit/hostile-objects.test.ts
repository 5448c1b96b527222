// One object never stops a component, and addresses have owners: each rule
// the agent applies before its state leaves for the ztunnel, one case each.
// A contradiction refuses the newer object, not the batch; a Service may
// claim only a VIP of the Service range that is no pod's; a pod only an
// address its node hands out; names and UIDs are checked before they become
// an identity or a path. The ztunnel and the CA apply the same rules.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NodeAgent } from '../../agent/node-agent.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { makePodCgroup, ManualSource, RecordingControl, RecordingDatapath } from '../support/agent-doubles.ts';
import { ClusterState, type StateUpdate } from '../../lib/cluster/cluster-state.ts';
import { podCgroupPath } from '../../lib/cluster/cgroup-layout.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { parseCidr } from '../../lib/core/cidr.ts';
import { canonicalIp } from '../../lib/core/ip.ts';
import { parseControlMessage } from '../../lib/mesh/control-protocol.ts';
import { StateStore, type StateView } from '../../lib/mesh/state.ts';
import { validateWorkload } from '../../lib/mesh/validate.ts';
import { HostedIdentities } from '../../ca/hosted.ts';
import { Resolver } from '../../ztunnel/resolve.ts';
import { service as meshService, workload as meshWorkload } from '../ztunnel/fixtures.ts';

const OPTIONS = { serviceCidrs: [parseCidr('10.96.0.0/16')!, parseCidr('fd00:96::/112')!], meshAddresses: ['10.244.1.254'] };

const ns: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } } };

const node = (name: string, address: string, podCIDRs?: string[]): KubeObject => ({
  apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: podCIDRs ? { podCIDRs } : {}, status: { addresses: [{ type: 'InternalIP', address }] },
});

interface PodOptions { ips?: string[]; created?: string; uid?: string; sa?: string; namespace?: string; node?: string }

const pod = (name: string, o: PodOptions = {}): KubeObject => {
  const ips = o.ips ?? ['10.244.1.2'];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: o.namespace ?? 'demo', uid: o.uid ?? `uid-${name}`, labels: { app: name }, ...(o.created ? { creationTimestamp: o.created } : {}) },
    spec: { nodeName: o.node ?? 'node-1', serviceAccountName: o.sa ?? 'sa', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  };
};

const svc = (name: string, vips: string[], o: { created?: string; ports?: unknown[] } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'demo', ...(o.created ? { creationTimestamp: o.created } : {}) },
  spec: { clusterIP: vips[0], clusterIPs: vips, ports: o.ports ?? [{ name: 'http', port: 80 }] },
});

const update = (objects: KubeObject[], options = OPTIONS): StateUpdate => new ClusterState(options).update(objects);
const refusal = (u: StateUpdate, object: string) => u.rejected.find((r) => r.object === object);
const names = (u: StateUpdate) => u.state.workloads.map((w) => w.name).sort();

/** The ztunnel takes the agent's state as it is: the same validation and contradiction checks found nothing left. */
function ztunnelTakes(u: StateUpdate): StateView {
  return new StateStore().apply(parseControlMessage(JSON.parse(JSON.stringify({ type: 'snapshot', version: 1, state: u.state }))));
}

test('two pods claiming one IP: the newer is refused with the rule, the older keeps it, and the ztunnel takes the rest', () => {
  const u = update([ns, pod('old', { created: '2024-01-01T00:00:00Z' }), pod('new', { created: '2024-02-01T00:00:00Z' }), pod('other', { ips: ['10.244.1.3'] })]);
  assert.deepEqual(names(u), ['old', 'other']);
  const r = refusal(u, 'Pod demo/new');
  assert.equal(r?.rule, 'ip-claimed');
  assert.match(r!.reason, /workloads demo\/old and demo\/new both have IP 10\.244\.1\.2; the newer pod is refused/);
  assert.equal(ztunnelTakes(u).workloadByIp('10.244.1.2')?.name, 'old');
  // Of two of the same age, the later name loses; an unknown age is the newest.
  assert.deepEqual(names(update([ns, pod('b'), pod('a')])), ['a']);
  assert.deepEqual(names(update([ns, pod('a'), pod('b', { created: '2024-01-01T00:00:00Z' })])), ['b']);
});

test('one address spelt two ways is one address: a claim on it is a contradiction all the same', () => {
  const u = update([ns, pod('old', { ips: ['10.244.1.2', 'fd00:244:1::2'], created: '2024-01-01T00:00:00Z' }), pod('new', { ips: ['10.244.1.3', 'FD00:244:1:0:0:0:0:2'], created: '2024-02-01T00:00:00Z' })]);
  assert.deepEqual(names(u), ['old']);
  assert.equal(refusal(u, 'Pod demo/new')?.rule, 'ip-claimed');
  assert.deepEqual(u.state.workloads[0]!.ips, ['10.244.1.2', 'fd00:244:1::2']);
});

test('two pods with one UID: the newer is refused, before the UID names any cgroup', () => {
  const u = update([ns, pod('a', { uid: 'same', created: '2024-01-01T00:00:00Z' }), pod('b', { uid: 'same', ips: ['10.244.1.3'], created: '2024-03-01T00:00:00Z' })]);
  assert.deepEqual(names(u), ['a']);
  assert.equal(refusal(u, 'Pod demo/b')?.rule, 'duplicate-uid');
});

test('a Service listing a port twice is refused alone; the other Services stay', () => {
  const u = update([svc('twice', ['10.96.0.10'], { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] }), svc('names', ['10.96.0.11'], { ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), svc('web', ['10.96.0.12'])]);
  assert.deepEqual(u.state.services.map((s) => s.name), ['web']);
  assert.match(refusal(u, 'Service demo/twice')!.reason, /spec\.ports\[1\] repeats port 80\/TCP of spec\.ports\[0\]/);
  assert.match(refusal(u, 'Service demo/names')!.reason, /spec\.ports\[1\] repeats the name "a" of spec\.ports\[0\]/);
  ztunnelTakes(u);
});

test('one VIP claimed by two Services, spelt two ways: the newer is refused; one Service spelling it twice has it once', () => {
  const u = update([svc('old', ['10.96.0.10', 'fd00:96::10'], { created: '2024-01-01T00:00:00Z' }), svc('new', ['10.96.0.11', 'fd00:96:0:0:0:0:0:10'], { created: '2024-05-01T00:00:00Z' }), svc('self', ['fd00:96::20', 'FD00:96::20'])]);
  assert.deepEqual(u.state.services.map((s) => s.name), ['old', 'self']);
  const r = refusal(u, 'Service demo/new');
  assert.equal(r?.rule, 'vip-claimed');
  assert.match(r!.reason, /services demo\/old and demo\/new both claim VIP fd00:96::10; the newer Service is refused/);
  assert.deepEqual(u.state.services.find((s) => s.name === 'self')?.vips, ['fd00:96::20']);
  assert.equal(ztunnelTakes(u).serviceAt('fd00:96::10', 80)?.service.name, 'old');
});

test('a ClusterIP outside the Service range, or one that is a pod\'s IP or a node\'s address, is refused with the rule', () => {
  const u = update([ns, node('node-1', '10.200.0.11'), pod('web'), svc('outside', ['10.97.0.1']), svc('steal', ['10.244.1.2']), svc('node', ['10.200.0.11']), svc('loop', ['127.0.0.1']), svc('ok', ['10.96.0.10'])]);
  assert.deepEqual(u.state.services.map((s) => s.name), ['ok']);
  assert.equal(refusal(u, 'Service demo/outside')?.rule, 'vip-outside-service-cidr');
  assert.match(refusal(u, 'Service demo/outside')!.reason, /ClusterIP 10\.97\.0\.1 is outside the cluster's Service range 10\.96\.0\.0\/16,fd00:96::\/112 \(--service-cidrs\)/);
  assert.equal(refusal(u, 'Service demo/node')?.rule, 'vip-outside-service-cidr');
  assert.equal(refusal(u, 'Service demo/loop')?.rule, 'vip-not-unicast');
  // Without a range to check against, a pod's IP is still the pod's, and a node's address the node's.
  const open = update([ns, node('node-1', '10.200.0.11'), pod('web'), svc('steal', ['10.244.1.2']), svc('node', ['10.200.0.11'])], {} as typeof OPTIONS);
  assert.equal(refusal(open, 'Service demo/node')?.rule, 'vip-is-node-address');
  assert.equal(refusal(open, 'Service demo/steal')?.rule, 'vip-is-workload-ip');
  assert.match(refusal(open, 'Service demo/steal')!.reason, /service demo\/steal claims VIP 10\.244\.1\.2, which is workload demo\/web's IP/);
});

test('the ztunnel refuses a Service at a workload\'s IP too, and its resolver never prefers a Service for a pod\'s own IP', () => {
  const web = meshWorkload({ name: 'web', ips: ['10.244.1.2'], node: 'n1' });
  const thief = meshService({ name: 'thief', vips: ['10.244.1.2'], ports: [{ port: 80, protocol: 'TCP' }], endpoints: [] });
  const state = { nodes: [{ name: 'n1', address: '10.200.0.11' }], workloads: [web], services: [thief], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] };
  assert.throws(() => new StateStore().apply({ type: 'snapshot', version: 1, state }), /service default\/thief claims VIP 10\.244\.1\.2, which is workload default\/web's IP/);
  // Should such a view exist anyway, the pod's address is the pod.
  const view = { workloadByIp: (ip: string) => (ip === '10.244.1.2' ? web : undefined), serviceAt: () => ({ key: 'x', service: thief, port: thief.ports[0]!, endpoints: [] }), node: () => undefined, hasTarget: () => true } as unknown as StateView;
  const route = new Resolver('n1').resolve(view, { ip: '10.244.1.2', port: 80 });
  assert.deepEqual(route.kind === 'direct' && [route.path, route.workload?.name, route.service], ['local', 'web', undefined]);
});

test('a pod IP outside its node\'s pod CIDRs is refused; a node without them (its CNI allocates) is not checked on that rule', () => {
  const u = update([ns, node('node-1', '10.200.0.11', ['10.244.1.0/24', 'fd00:244:1::/64']), node('node-2', '10.200.0.12'),
    pod('inside', { ips: ['10.244.1.2', 'fd00:244:1::2'] }), pod('outside', { ips: ['10.244.2.9'] }), pod('v6-outside', { ips: ['10.244.1.3', 'fd00:244:2::3'] }), pod('elsewhere', { ips: ['10.9.9.9'], node: 'node-2' })]);
  assert.deepEqual(names(u), ['elsewhere', 'inside']);
  const r = refusal(u, 'Pod demo/outside');
  assert.equal(r?.rule, 'pod-ip-outside-node-cidr');
  assert.match(r!.reason, /pod IP 10\.244\.2\.9 is outside node node-1's pod CIDRs 10\.244\.1\.0\/24,fd00:244:1::\/64 \(spec\.podCIDRs\)/);
  assert.equal(refusal(u, 'Pod demo/v6-outside')?.rule, 'pod-ip-outside-node-cidr');
});

test('loopback, link-local, unspecified, a node\'s address, a mesh address and a Service address are no pod\'s', () => {
  const cases: [string, string, string][] = [
    ['loop', '127.0.0.1', 'pod-ip-not-unicast'], ['loop6', '::1', 'pod-ip-not-unicast'], ['link', '169.254.9.9', 'pod-ip-not-unicast'], ['link6', 'fe80::9', 'pod-ip-not-unicast'],
    ['zero', '0.0.0.0', 'pod-ip-not-unicast'], ['node', '10.200.0.11', 'pod-ip-is-node-address'], ['mesh', '10.244.1.254', 'pod-ip-is-mesh-address'], ['vip', '10.96.0.7', 'pod-ip-in-service-cidr'],
  ];
  const u = update([ns, node('node-1', '10.200.0.11'), ...cases.map(([name, ip]) => pod(name, { ips: [ip] })), pod('fine', { ips: ['10.244.1.9'] })]);
  assert.deepEqual(names(u), ['fine']);
  for (const [name, ip, rule] of cases) {
    const r = refusal(u, `Pod demo/${name}`);
    assert.equal(r?.rule, rule, name);
    assert.ok(r!.reason.includes(canonicalIp(ip)!), r!.reason);
  }
  ztunnelTakes(u);
});

test('a UID with "../" is refused before it can become a cgroup path', () => {
  const u = update([ns, pod('escape', { uid: '../../../../sys/fs/cgroup' }), pod('fine', { ips: ['10.244.1.3'] })]);
  assert.deepEqual(names(u), ['fine']);
  const r = refusal(u, 'Pod demo/escape');
  assert.equal(r?.rule, 'invalid');
  assert.match(r!.reason, /metadata\.uid: pod UID "\.\.\/\.\.\/\.\.\/\.\.\/sys\/fs\/cgroup" is not a UUID-like token .* refusing to build a cgroup path from it/);
  assert.throws(() => podCgroupPath('../x', 'BestEffort', 'cgroupfs'), { code: 'MESHLET_POD_CGROUP' });
  assert.throws(() => validateWorkload({ ...u.state.workloads[0], uid: '../x' }, 'workload'), /refusing to build a cgroup path/);
});

test('a ServiceAccount name that is no SPIFFE path segment, or a name with an unpaired surrogate, stops no one: refused alone, by agent, ztunnel and CA alike', () => {
  const bad = [pod('slash', { sa: 'a/b', ips: ['10.244.1.3'] }), pod('dots', { sa: '..', ips: ['10.244.1.4'] }), pod('surrogate', { sa: 'sa\ud800', ips: ['10.244.1.5'] }), pod('ns-surrogate', { namespace: 'demo\udfff', ips: ['10.244.1.6'] })];
  const u = update([ns, ...bad, pod('fine')]);
  assert.deepEqual(names(u), ['fine']);
  assert.match(refusal(u, 'Pod demo/slash')!.reason, /spec\.serviceAccountName "a\/b" is not a Kubernetes name/);
  assert.match(refusal(u, 'Pod demo\udfff/ns-surrogate')!.reason, /metadata\.namespace .* is not a Kubernetes name/);
  const fine = u.state.workloads[0]!;
  for (const sa of ['a/b', '..', 'sa\ud800']) assert.throws(() => validateWorkload({ ...fine, serviceAccount: sa }, 'workload'), /service(Account| account)|serviceAccount/);
  const hosted = new HostedIdentities();
  hosted.update([...bad, pod('fine')]);
  assert.equal(hosted.hosts('node-1', 'demo', 'sa'), true);
  assert.equal(hosted.hosts('node-1', 'demo', 'a/b'), false);
  assert.equal(hosted.hosts('node-1', 'demo', 'sa\ud800'), false);
});

test('inputs that used to throw are refused with a reason: a zoned address, a quantity bomb, junk in every field', () => {
  const bomb = pod('bomb', { ips: ['10.244.1.3'] });
  (bomb.spec as { containers: Record<string, unknown>[] }).containers[0]!.resources = { limits: { cpu: '1e999999999' } };
  const u = update([ns, pod('zoned', { ips: ['fe80::1%eth0'] }), bomb, { kind: 'Pod', metadata: { name: 'junk', namespace: 'demo' }, spec: { containers: 'no' } }, { kind: 'Node', metadata: { name: 'n' }, status: { addresses: [{ type: 'InternalIP', address: 'fe80::1%eth0' }] } }, pod('fine', { ips: ['10.244.1.9'] })]);
  assert.deepEqual(names(u), ['fine']);
  assert.match(refusal(u, 'Pod demo/zoned')!.reason, /"fe80::1%eth0", which is not an IP address/);
  assert.match(refusal(u, 'Pod demo/bomb')!.reason, /"1e999999999" is not a Kubernetes quantity/);
  assert.match(refusal(u, 'Node n')!.reason, /no InternalIP address/);
  assert.equal(canonicalIp('fe80::1%eth0'), undefined);
});

test('the agent shows each refusal in status with its rule, enrolls the rest, and never builds a path from a bad UID', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-hostile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await makePodCgroup(dir, 'fine');
  const datapath = new RecordingDatapath();
  const source = new ManualSource();
  const agent = new NodeAgent(
    { node: 'node-1', kubeletCgroupRoot: dir, cgroupDriver: 'cgroupfs', ztunnelCgroup: join(dir, 'zt'), bpfDir: join(dir, 'bpf'), rootNamespace: 'istio-system', serviceCidrs: '10.96.0.0/16', adminSocket: join(dir, 'admin.sock'), inboundSourceIp4: '10.244.1.254' },
    { source, control: new RecordingControl(), log: silentLogger, openDatapath: async () => datapath, schedule: () => undefined },
  );
  await agent.start();
  t.after(() => agent.stop());
  source.deliver([ns, pod('escape', { uid: '../../../../sys/fs/cgroup', ips: ['10.244.1.3'] }), pod('mesh', { ips: ['10.244.1.254'] }), svc('outside', ['10.97.0.1']), pod('fine', { ips: ['10.244.1.9'] })]);
  await agent.idle();
  const status = await agent.status();
  assert.deepEqual(status.rejected.map((r) => [r.object, r.rule]).sort(), [['Pod demo/escape', 'invalid'], ['Pod demo/mesh', 'pod-ip-is-mesh-address'], ['Service demo/outside', 'vip-outside-service-cidr']]);
  assert.deepEqual(status.enrolledPods.map((p) => p.name), ['fine']);
  assert.ok(datapath.of('enroll').flatMap((c) => c.pods).every((p) => !p.cgroupPath.includes('..')));
  assert.equal(status.ready, true);
});

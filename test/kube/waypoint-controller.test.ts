// The waypoint controller in `meshlet ca` (startCa with `waypoints`, on the
// meshlet-ca ServiceAccount's token, so daemonset/rbac.yaml is what lets it
// work) against a real control plane with its controllers (the Deployment
// and ReplicaSet controllers, the scheduler, the garbage collector) and the
// sandbox's kubelet on the in-memory runtime: a waypoint's pod is scheduled
// and "run", and its readiness probe (GET :15021/healthz/ready) reaches a
// local HTTP server that answers 200, so the Deployment becomes available
// through the real controllers, not a status written by the test. That pod's
// token gets the waypoint's own identity from the same CA, and no other; its
// ServiceAccount's ClusterRoleBinding goes with the Gateway, even one deleted
// while the controller was down.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { startCa, type KubeCaConfig, type RunningCa } from '../../ca/service.ts';
import { bindingName, FIELD_MANAGER, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL, MANAGED_LABEL, MANAGED_VALUE, WAYPOINT_CLUSTER_ROLE } from '../../ca/waypoint-objects.ts';
import { WAYPOINT_CONTROLLER_NAME } from '../../ca/waypoint-gateway.ts';
import { jsonLogger, silentLogger, type Logger } from '../../lib/core/log.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { newCertificateRequest } from '../../lib/identity/csr.ts';
import { CaRefusedError } from '../../lib/identity/errors.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { Kubelet } from '../../sandbox/kubelet/kubelet.ts';
import type { NodeConfig } from '../../sandbox/kubelet/node.ts';
import type { ProbeDialer } from '../../sandbox/kubelet/runtime.ts';
import { caRefusals } from '../support/ca-refusals.ts';
import { accountToken } from '../support/ca-tokens.ts';
import { applyObjects, asServiceAccount, kubectlOk, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';
import { RecordingRuntime } from '../support/recording-runtime.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url).pathname;
const SYSTEM = 'meshlet-system';
const APPS = 'demo';
const NODE: NodeConfig = { name: 'node-1', addresses: ['10.200.0.11'], podCIDRs: ['10.244.1.0/24'], capacity: { cpu: '4', memory: '8Gi', pods: '110' } };
const CA_URL = 'https://meshlet-ca.meshlet-system.svc:15012';
const IMAGE = 'registry.example/meshlet:test';
const WAIT_MS = 90_000;
/** MESHLET_TEST_LOG=1 prints the CA's and the kubelet's logs. */
const debug: Logger | undefined = process.env.MESHLET_TEST_LOG ? jsonLogger('test', process.stderr) : undefined;

/** The in-memory runtime, with probes that reach `port` on loopback, whatever pod address they name. */
class ProbedRuntime extends RecordingRuntime {
  readonly probeDialer: ProbeDialer;

  constructor(port: () => number) {
    super();
    this.probeDialer = (_dest, signal) => new Promise<Duplex>((resolve, reject) => {
      const socket = connect(port(), '127.0.0.1');
      signal.addEventListener('abort', () => socket.destroy(new Error('aborted')), { once: true });
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
  }
}

type Json = Record<string, unknown> & {
  metadata: { name: string; uid: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[]; managedFields?: { manager: string; subresource?: string }[] };
};
interface Condition { type: string; status: string; reason: string; message: string; observedGeneration: number }
interface GatewayJson extends Json {
  status?: { conditions?: Condition[]; addresses?: { type: string; value: string }[]; listeners?: { name: string; attachedRoutes: number; supportedKinds: unknown[]; conditions: Condition[] }[] };
}

async function get<T = Json>(cp: TestControlPlane, args: string[]): Promise<T | undefined> {
  const r = await cp.kubectl([...args, '-o', 'json', '--show-managed-fields']);
  if (r.exitCode !== 0) {
    if (/NotFound|not found/.test(r.stderr)) return undefined;
    throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  }
  return JSON.parse(r.stdout) as T;
}

const gatewayOf = (cp: TestControlPlane, ns: string, name: string) => get<GatewayJson>(cp, ['-n', ns, 'get', 'gateway.gateway.networking.k8s.io', name]);
const conditionOf = (gw: GatewayJson | undefined, type: string): Condition | undefined => gw?.status?.conditions?.find((c) => c.type === type);

const waypointGateway = (name: string, extra: Record<string, unknown> = {}, className = 'istio-waypoint') => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: APPS },
  spec: { gatewayClassName: className, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], ...extra },
});

interface BindingJson extends Json {
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}
const bindingOf = (cp: TestControlPlane, gateway: string) => get<BindingJson>(cp, ['get', 'clusterrolebinding', bindingName(APPS, gateway)]);

/** Waits for the Gateway's condition `type` to be `status` for its current generation. */
async function condition(cp: TestControlPlane, name: string, type: string, status: string): Promise<{ gw: GatewayJson; c: Condition }> {
  return eventually(`Gateway ${APPS}/${name} ${type}=${status}`, async () => {
    const gw = await gatewayOf(cp, APPS, name);
    const c = conditionOf(gw, type);
    return gw && c?.status === status && c.observedGeneration === gw.metadata.generation ? { gw, c } : undefined;
  }, WAIT_MS);
}

test('the waypoint controller deploys waypoint Gateways, writes their status, and survives the ones it cannot deploy', async (t) => {
  const cp = await startTestControlPlane(t, { crds: true, controllers: true });
  await kubectlOk(cp, ['apply', '-f', RBAC_FILE]);
  await applyObjects(cp, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: APPS } });
  for (const [verb, resource, ...more] of [['patch', 'deployments.apps'], ['watch', 'gateways.gateway.networking.k8s.io'], ['patch', 'gateways.gateway.networking.k8s.io', '--subresource=status'], ['create', 'secrets']] as const) {
    await eventually(`RBAC to let meshlet-ca ${verb} ${resource}`, async () => (await cp.kubectl(['auth', 'can-i', verb, resource, ...more, '-n', SYSTEM, `--as=system:serviceaccount:${SYSTEM}:meshlet-ca`])).stdout.trim() === 'yes');
  }

  // The "waypoint" answering its readiness probe.
  const ready: Server = createServer((req, res) => res.writeHead(req.url === '/healthz/ready' ? 200 : 404).end());
  await new Promise<void>((resolve) => ready.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => ready.close(() => resolve())));
  const nodeConfig = new KubeConfig();
  nodeConfig.loadFromFile(await cp.userKubeconfig('system:node:node-1', ['system:nodes']));
  const runtime = new ProbedRuntime(() => (ready.address() as AddressInfo).port);
  const kubelet = new Kubelet({ kubeConfig: nodeConfig, runtime, node: NODE, log: debug ?? silentLogger, leaseRenewIntervalMs: 1000, statusCheckIntervalMs: 1000 });
  t.after(() => kubelet.stop());
  await kubelet.start();

  // As Istio's istiod leaves it behind: istio-waypoint naming Istio's controller.
  await applyObjects(cp, { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'istio-waypoint' }, spec: { controllerName: 'istio.io/mesh-controller' } });

  const dir = await mkdtemp(join(tmpdir(), 'meshlet-waypoint-controller-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const out = new Writable({ write(chunk: Buffer, _enc, cb) { logs.push(chunk.toString()); if (debug) process.stderr.write(chunk); cb(); } });
  const caConfig: KubeCaConfig = {
    host: '127.0.0.1', port: 0, stateDir: join(dir, 'ca'), kubeconfig: (await asServiceAccount(cp, 'meshlet-ca', SYSTEM)).kc,
    rootSecret: { namespace: SYSTEM, name: 'meshlet-ca-root' }, trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [],
    log: jsonLogger('ca', out), waypoints: { image: IMAGE, caUrl: CA_URL },
  };
  const ca: RunningCa = await startCa(caConfig);
  t.after(() => ca.close());
  assert.ok(ca.waypoints, 'startCa runs the waypoint controller when asked');

  type ClassJson = Json & { spec: { controllerName: string }; status?: { conditions?: Condition[] } };
  const acceptedClass = (name: string) => eventually(`GatewayClass ${name} accepted`, async () => {
    const c = await get<ClassJson>(cp, ['get', 'gatewayclass', name]);
    return c?.status?.conditions?.some((x) => x.type === 'Accepted' && x.status === 'True' && x.observedGeneration === c.metadata.generation) ? c : undefined;
  }, WAIT_MS);

  await t.test('it creates the meshlet-waypoint GatewayClass naming itself and accepts it; istio-waypoint, Istio\'s, it leaves alone', async () => {
    assert.equal((await acceptedClass('meshlet-waypoint')).spec.controllerName, WAYPOINT_CONTROLLER_NAME);
    await eventually('istio-waypoint seen', () => logs.some((l) => l.includes('"GatewayClass belongs to another controller; its Gateways are left to it"') && l.includes('delete the GatewayClass istio-waypoint')), WAIT_MS);
    const istio = (await get<ClassJson>(cp, ['get', 'gatewayclass', 'istio-waypoint']))!;
    assert.equal(istio.spec.controllerName, 'istio.io/mesh-controller');
    assert.ok(!istio.metadata.managedFields?.some((m) => m.manager === FIELD_MANAGER), 'no status of ours on another controller\'s class');
  });

  await t.test('a Gateway of a class that names another controller is left to it; the class deleted, meshlet recreates it and deploys the Gateway', async () => {
    await applyObjects(cp, waypointGateway('migrated'));
    await eventually('the Gateway seen and ignored', () => ca.waypoints!.status().gateways.find((g) => g.gateway === 'demo/migrated')?.state === 'ignored', WAIT_MS);
    const ignored = (await gatewayOf(cp, APPS, 'migrated'))!;
    assert.ok(!ignored.metadata.managedFields?.some((m) => m.manager === FIELD_MANAGER), 'no status written on a Gateway of another controller');
    assert.equal(await get(cp, ['-n', APPS, 'get', 'deployment', 'migrated']), undefined);

    await kubectlOk(cp, ['delete', 'gatewayclass', 'istio-waypoint']);
    assert.equal((await acceptedClass('istio-waypoint')).spec.controllerName, WAYPOINT_CONTROLLER_NAME);
    await condition(cp, 'migrated', 'Programmed', 'True');
  });

  let waypointUid = '';
  await t.test('a valid waypoint Gateway becomes a ServiceAccount, a Service and a Deployment it owns, and is Programmed once its pod is ready', async () => {
    await applyObjects(cp, waypointGateway('waypoint', {
      infrastructure: {
        labels: { team: 'payments', 'istio.io/dataplane-mode': 'ambient', 'gateway.networking.k8s.io/gateway-name': 'evil' },
        annotations: { 'example.com/owner': 'payments' },
      },
    }));
    const { gw } = await condition(cp, 'waypoint', 'Programmed', 'True');
    waypointUid = gw.metadata.uid;
    assert.deepEqual(conditionOf(gw, 'Accepted'), { ...conditionOf(gw, 'Accepted'), status: 'True', reason: 'Accepted', observedGeneration: gw.metadata.generation });
    const programmed = conditionOf(gw, 'Programmed')!;
    assert.equal(programmed.reason, 'Programmed');
    assert.match(programmed.message, /waypoint\.demo\.svc\.cluster\.local:15008/);

    const owner = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: waypointUid, controller: true };
    const sa = (await get(cp, ['-n', APPS, 'get', 'serviceaccount', 'waypoint']))!;
    const svc = (await get<Json & { spec: { type: string; clusterIP: string; clusterIPs: string[]; selector: Record<string, string>; ports: { name: string; port: number; appProtocol?: string }[] } }>(cp, ['-n', APPS, 'get', 'service', 'waypoint']))!;
    const deploy = (await get<Json & { spec: { replicas: number; selector: unknown; template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: Record<string, unknown> & { containers: Record<string, unknown>[]; volumes: Record<string, unknown>[] } } } }>(cp, ['-n', APPS, 'get', 'deployment', 'waypoint']))!;
    for (const obj of [sa, svc, deploy]) {
      assert.deepEqual(obj.metadata.ownerReferences, [owner], `${String(obj.kind)} is owned by the Gateway`);
      assert.equal(obj.metadata.labels?.[MANAGED_LABEL], MANAGED_VALUE);
      assert.equal(obj.metadata.labels?.['gateway.networking.k8s.io/gateway-name'], 'waypoint', 'spec.infrastructure cannot relabel the gateway name');
      assert.equal(obj.metadata.labels?.['gateway.networking.k8s.io/gateway-class-name'], 'istio-waypoint');
      assert.equal(obj.metadata.labels?.team, 'payments', 'spec.infrastructure.labels are copied');
      assert.equal(obj.metadata.annotations?.['example.com/owner'], 'payments', 'spec.infrastructure.annotations are copied');
      assert.ok(obj.metadata.managedFields?.some((m) => m.manager === FIELD_MANAGER), `${String(obj.kind)} is applied by ${FIELD_MANAGER}`);
    }
    assert.equal(svc.spec.type, 'ClusterIP');
    assert.deepEqual(svc.spec.selector, { 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
    assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.port, p.appProtocol]), [['status-port', 15021, 'tcp'], ['mesh', 15008, 'hbone']]);

    assert.equal(deploy.spec.replicas, 1);
    assert.deepEqual(deploy.spec.selector, { matchLabels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } });
    const labels = deploy.spec.template.metadata.labels;
    assert.equal(labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
    assert.equal(labels['istio.io/dataplane-mode'], 'none', 'a waypoint pod is never captured, whatever spec.infrastructure says');
    assert.equal(labels['service.istio.io/canonical-name'], 'waypoint');
    const pod = deploy.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'waypoint');
    const [container, ...others] = pod.containers;
    assert.equal(others.length, 0);
    assert.equal(container!.name, 'waypoint');
    assert.equal(container!.image, IMAGE);
    assert.deepEqual(container!.command, ['meshlet', 'waypoint']);
    assert.deepEqual(container!.args, [
      '--gateway', 'demo/waypoint', '--trust-domain', 'cluster.local', '--ca-url', CA_URL,
      '--ca-bundle', '/var/run/secrets/meshlet/ca/root-cert.pem', '--ca-token-file', '/var/run/secrets/meshlet/tokens/meshlet-ca-token',
    ]);
    const env = new Map((container!.env as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    assert.equal(env.get('POD_NAME'), 'metadata.name');
    assert.equal(env.get('POD_NAMESPACE'), 'metadata.namespace');
    assert.equal(env.get('POD_IP'), 'status.podIP');
    const values = new Map((container!.env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
    assert.equal(values.get('NODE_OPTIONS'), '--max-semi-space-size=1');
    assert.equal(values.get('GLIBC_TUNABLES'), 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=16384:glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0');
    assert.deepEqual((container!.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]), [['mesh', 15008], ['metrics', 15020], ['status-port', 15021]]);
    assert.deepEqual((container!.readinessProbe as { httpGet: unknown }).httpGet, { path: '/healthz/ready', port: 15021, scheme: 'HTTP' });
    assert.deepEqual((container!.resources as { requests: unknown }).requests, { cpu: '100m', memory: '128Mi' });
    assert.deepEqual(pod.volumes.find((v) => v.name === 'meshlet-token'), {
      name: 'meshlet-token', projected: { defaultMode: 420, sources: [{ serviceAccountToken: { audience: 'meshlet-ca', expirationSeconds: 3600, path: 'meshlet-ca-token' } }] },
    });
    assert.deepEqual(pod.volumes.find((v) => v.name === 'meshlet-ca-root'), { name: 'meshlet-ca-root', configMap: { name: 'meshlet-ca-root-cert', defaultMode: 420 } });
    const bundle = (await get<Json & { data: Record<string, string> }>(cp, ['-n', APPS, 'get', 'configmap', 'meshlet-ca-root-cert']))!;
    assert.match(bundle.data['root-cert.pem']!, /^-----BEGIN CERTIFICATE-----/, 'the namespace holds the mesh root the waypoint verifies with');
    assert.doesNotMatch(bundle.data['root-cert.pem']!, /PRIVATE KEY/);

    // Status: both addresses as Istio reports a waypoint's, the listener, and who wrote it.
    assert.deepEqual(gw.status?.addresses, [
      ...svc.spec.clusterIPs.map((value) => ({ type: 'IPAddress', value })),
      { type: 'Hostname', value: 'waypoint.demo.svc.cluster.local' },
    ]);
    const [listener, ...moreListeners] = gw.status?.listeners ?? [];
    assert.equal(moreListeners.length, 0);
    assert.equal(listener!.name, 'mesh');
    for (const [type, status] of [['Accepted', 'True'], ['Programmed', 'True'], ['ResolvedRefs', 'True'], ['Conflicted', 'False']]) {
      const c = listener!.conditions.find((x) => x.type === type);
      assert.equal(c?.status, status, `listener ${type}`);
      assert.equal(c?.observedGeneration, gw.metadata.generation);
    }
    assert.ok(gw.metadata.managedFields?.some((m) => m.manager === FIELD_MANAGER && m.subresource === 'status'), 'the status is applied by the controller on the status subresource');
    assert.ok(runtime.callsOf('startContainer demo/waypoint-').length > 0, 'the kubelet ran the waypoint pod');

    // What the waypoint reads, cluster-wide: its ServiceAccount bound to meshlet-waypoint, by a binding no owner reference could collect.
    const binding = (await bindingOf(cp, 'waypoint'))!;
    assert.equal(binding.metadata.name, 'meshlet-waypoint:demo:waypoint');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: WAYPOINT_CLUSTER_ROLE });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'waypoint', namespace: APPS }]);
    assert.equal(binding.metadata.ownerReferences, undefined);
    assert.deepEqual([MANAGED_LABEL, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL].map((l) => binding.metadata.labels?.[l]), [MANAGED_VALUE, 'waypoint', APPS]);
    const can = async (verb: string, resource: string) => (await cp.kubectl(['auth', 'can-i', verb, resource, `--as=system:serviceaccount:${APPS}:waypoint`])).stdout.trim();
    await eventually('RBAC to admit the waypoint', async () => (await can('watch', 'httproutes.gateway.networking.k8s.io')) === 'yes');
    assert.deepEqual([await can('list', 'endpointslices.discovery.k8s.io'), await can('list', 'secrets'), await can('patch', 'services')], ['yes', 'no', 'no']);
  });

  await t.test('the waypoint pod\'s own token gets its identity from the CA, and no other identity', async () => {
    const pods = JSON.parse(await kubectlOk(cp, ['-n', APPS, 'get', 'pods', '-l', `${GATEWAY_NAME_LABEL}=waypoint`, '-o', 'json'])) as { items: Json[] };
    const podName = pods.items[0]?.metadata.name;
    assert.ok(podName, 'the Deployment made a pod');
    // As the kubelet projects it into the pod: bound to the pod, for the CA's audience.
    const tokenFile = join(dir, 'waypoint-token');
    await writeFile(tokenFile, `${await accountToken(cp, APPS, 'waypoint', podName)}\n`, { mode: 0o600 });
    const client = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile });
    t.after(() => client.close());
    const issued = await client.issue({ csrPem: (await newCertificateRequest(spiffeId(APPS, 'waypoint'))).csrPem });
    const leaf = new X509Certificate(issued.certChain[0]!);
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/demo/sa/waypoint');
    assert.ok(leaf.verify(new X509Certificate(await readFile(ca.bundleFile, 'utf8')).publicKey), 'the leaf chains to the bundle');
    assert.ok(logs.some((l) => l.includes('"certificate issued"') && l.includes(`"waypoint":"demo/${podName}"`)), 'the CA logs the waypoint it signed for');

    const before = (await caRefusals(ca)).get('not-own-identity') ?? 0;
    for (const [namespace, account] of [[APPS, 'after'], [APPS, 'default'], ['kube-system', 'waypoint'], [SYSTEM, 'meshlet-ztunnel']] as const) {
      const req = await newCertificateRequest(spiffeId(namespace, account));
      await assert.rejects(client.issue({ csrPem: req.csrPem }), (err: unknown) => {
        assert.ok(err instanceof CaRefusedError, String(err));
        assert.deepEqual({ status: err.status, reason: err.reason }, { status: 403, reason: 'not-own-identity' }, err.message);
        assert.match(err.message, new RegExp(`waypoint pod demo/${podName} asks for spiffe://cluster\\.local/ns/${namespace}/sa/${account}, but a waypoint may hold only its own identity spiffe://cluster\\.local/ns/demo/sa/waypoint; check the waypoint's --gateway`));
        return true;
      }, `the waypoint asking for ${namespace}/${account}`);
    }
    assert.equal((await caRefusals(ca)).get('not-own-identity'), before + 4, 'meshlet_ca_refusals_total{reason="not-own-identity"}');
  });

  await t.test('a Gateway whose listener is not HBONE on 15008 is not accepted, says why, and gets nothing', async () => {
    await applyObjects(cp, { ...waypointGateway('plain'), spec: { gatewayClassName: 'meshlet-waypoint', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] } });
    const { gw, c } = await condition(cp, 'plain', 'Accepted', 'False');
    assert.equal(c.reason, 'ListenersNotValid');
    assert.match(c.message, /listener "http" has protocol "HTTP".*port 15008 with protocol "HBONE"/);
    assert.equal(conditionOf(gw, 'Programmed')?.status, 'False');
    const listener = gw.status?.listeners?.find((l) => l.name === 'http');
    assert.equal(listener?.conditions.find((x) => x.type === 'Accepted')?.reason, 'UnsupportedProtocol');
    assert.equal(gw.status?.addresses, undefined);
    for (const kind of ['serviceaccount', 'service', 'deployment']) assert.equal(await get(cp, ['-n', APPS, 'get', kind, 'plain']), undefined, `no ${kind} for a rejected Gateway`);
    assert.equal(await bindingOf(cp, 'plain'), undefined, 'no ClusterRoleBinding for a rejected Gateway');

    // Fixed, it is deployed.
    await applyObjects(cp, waypointGateway('plain', {}, 'meshlet-waypoint'));
    await condition(cp, 'plain', 'Programmed', 'True');
    assert.equal(conditionOf(await gatewayOf(cp, APPS, 'plain'), 'Accepted')?.status, 'True');
  });

  await t.test('hostile Gateways are refused alone: a name too long for a Service, a name taken by a Service or a ClusterRoleBinding meshlet does not manage', async () => {
    const long = `w${'a'.repeat(100)}.${'b'.repeat(100)}`;
    await applyObjects(cp, waypointGateway(long));
    const { c } = await condition(cp, long, 'Accepted', 'False');
    assert.equal(c.reason, 'Invalid');
    assert.match(c.message, /at most 63 lower-case letters/);

    // A user's Service: the Gateway named after it must not take it over.
    await applyObjects(cp, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'payments', namespace: APPS }, spec: { selector: { app: 'payments' }, ports: [{ port: 80 }] } });
    await applyObjects(cp, waypointGateway('payments'));
    const taken = await condition(cp, 'payments', 'Programmed', 'False');
    assert.equal(taken.c.reason, 'Invalid');
    assert.match(taken.c.message, /v1 Service demo\/payments exists and is not managed by meshlet/);
    const service = (await get<Json & { spec: { selector: Record<string, string> } }>(cp, ['-n', APPS, 'get', 'service', 'payments']))!;
    assert.deepEqual(service.spec.selector, { app: 'payments' }, 'the user\'s Service is untouched');
    assert.equal(await get(cp, ['-n', APPS, 'get', 'deployment', 'payments']), undefined);

    // A ClusterRoleBinding of the name the waypoint's would have, made by someone else: never taken over.
    await applyObjects(cp, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: bindingName(APPS, 'squatted') },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'meshlet-agent' }, subjects: [{ kind: 'ServiceAccount', name: 'someone', namespace: APPS }],
    });
    await applyObjects(cp, waypointGateway('squatted'));
    const squatted = await condition(cp, 'squatted', 'Programmed', 'False');
    assert.match(squatted.c.message, /rbac\.authorization\.k8s\.io\/v1 ClusterRoleBinding meshlet-waypoint:demo:squatted exists and is not managed by meshlet/);
    assert.equal((await bindingOf(cp, 'squatted'))!.roleRef.name, 'meshlet-agent', 'the other binding is untouched');
    assert.equal(await get(cp, ['-n', APPS, 'get', 'deployment', 'squatted']), undefined);

    // A Gateway with a parametersRef and one with addresses: refused with the Gateway API's reasons.
    await applyObjects(cp, waypointGateway('params', { infrastructure: { parametersRef: { group: '', kind: 'ConfigMap', name: 'x' } } }));
    assert.equal((await condition(cp, 'params', 'Accepted', 'False')).c.reason, 'InvalidParameters');
    await applyObjects(cp, waypointGateway('pinned', { addresses: [{ type: 'IPAddress', value: '10.96.0.99' }] }));
    assert.equal((await condition(cp, 'pinned', 'Accepted', 'False')).c.reason, 'UnsupportedAddress');

    // The controller still serves: a new waypoint after all that is deployed.
    await applyObjects(cp, waypointGateway('after'));
    await condition(cp, 'after', 'Programmed', 'True');
    assert.deepEqual(ca.waypoints!.status().queue.parked, [], 'nothing is parked: refusals are reported, not retried');
  });

  await t.test('a ClusterRoleBinding deleted behind the controller\'s back is applied again', async () => {
    const before = (await bindingOf(cp, 'after'))!;
    await kubectlOk(cp, ['delete', 'clusterrolebinding', bindingName(APPS, 'after')]);
    await eventually('the binding applied again', async () => {
      const now = await bindingOf(cp, 'after');
      return now !== undefined && now.metadata.uid !== before.metadata.uid;
    }, WAIT_MS);
  });

  await t.test('a Deployment deleted behind the controller\'s back is applied again', async () => {
    const before = (await get(cp, ['-n', APPS, 'get', 'deployment', 'after']))!;
    await kubectlOk(cp, ['-n', APPS, 'delete', 'deployment', 'after', '--wait=false']);
    await eventually('the Deployment applied again', async () => {
      const now = await get(cp, ['-n', APPS, 'get', 'deployment', 'after']);
      return now !== undefined && now.metadata.uid !== before.metadata.uid;
    }, WAIT_MS);
    await condition(cp, 'after', 'Programmed', 'True');
  });

  await t.test('deleting the Gateway deletes what it owns (the garbage collector, through the owner references)', async () => {
    await kubectlOk(cp, ['-n', APPS, 'delete', 'gateway.gateway.networking.k8s.io', 'waypoint']);
    for (const kind of ['deployment', 'service', 'serviceaccount']) {
      await eventually(`${kind} demo/waypoint garbage-collected`, async () => (await get(cp, ['-n', APPS, 'get', kind, 'waypoint'])) === undefined, WAIT_MS);
    }
    // Cluster-scoped, the binding has no owner: the controller deletes it.
    await eventually('the ClusterRoleBinding deleted', async () => (await bindingOf(cp, 'waypoint')) === undefined, WAIT_MS);
    assert.ok(logs.some((l) => l.includes('"waypoint ClusterRoleBinding deleted: its Gateway is gone"') && l.includes('meshlet-waypoint:demo:waypoint')));
    // The namespace's copy of the root serves its other waypoints.
    assert.ok(await get(cp, ['-n', APPS, 'get', 'configmap', 'meshlet-ca-root-cert']));
    await eventually('the controller forgets the Gateway', () => !ca.waypoints!.status().gateways.some((g) => g.gateway === 'demo/waypoint'), WAIT_MS);
  });

  await t.test('its status lists each Gateway with what is wrong', () => {
    const byName = new Map(ca.waypoints!.status().gateways.map((g) => [g.gateway, g]));
    assert.equal(byName.get('demo/after')?.state, 'ready');
    assert.equal(byName.get('demo/payments')?.state, 'failed');
    assert.match(byName.get('demo/payments')?.problem ?? '', /not managed by meshlet/);
    assert.equal(byName.get(`demo/w${'a'.repeat(100)}.${'b'.repeat(100)}`)?.state, 'rejected');
    assert.ok(logs.some((l) => l.includes('"waypoint applied"')), 'the controller logs what it applied');
  });

  await t.test('a Gateway deleted while the controller was down loses its binding when the controller starts; the others keep theirs', async () => {
    await ca.close();
    await kubectlOk(cp, ['-n', APPS, 'delete', 'gateway.gateway.networking.k8s.io', 'plain']);
    assert.ok(await bindingOf(cp, 'plain'), 'no controller, no deletion');
    const again = await startCa(caConfig);
    t.after(() => again.close());
    await eventually('the orphaned binding deleted', async () => (await bindingOf(cp, 'plain')) === undefined, WAIT_MS);
    assert.ok(await bindingOf(cp, 'after'), 'a waypoint whose Gateway is there keeps its binding');
    assert.equal((await bindingOf(cp, 'squatted'))?.roleRef.name, 'meshlet-agent', 'a binding meshlet does not manage is never deleted');
  });
});

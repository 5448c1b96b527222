// KubeSource against a real kube-apiserver: the first sync, changes, a pod
// field selector, pods recreated under the same name, Istio's CRDs (present
// and missing), the object cap, an API server restart mid-watch and
// client-node's own 30 s watch cut.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import { isRecord, type KubeObject } from '../../lib/cluster/objects.ts';
import { AGENT_KINDS, AGENT_POD_FIELD_SELECTOR, AUTHORIZATION_POLICIES, NAMESPACES, PODS, SERVICES, type WatchedKind } from '../../lib/cluster/sources/kube-kinds.ts';
import { KubeSource, type KubeSourceOptions } from '../../lib/cluster/sources/kube.ts';
import type { ClusterUpdate, InformerStatus } from '../../lib/cluster/sources/source.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { applyObjects as apply, kubectlOk as kubectl, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';
import { ManualClock } from '../support/manual-clock.ts';

/** Fast retries: the tests wait on them. */
const BACKOFF = { initialMs: 100, maxMs: 1000, slowMs: 300 };


/** Pods are deleted at once: without a kubelet a bound pod's graceful deletion never finishes. */
const forceDelete = (cp: TestControlPlane, namespace: string, pod: string): Promise<string> =>
  kubectl(cp, ['-n', namespace, 'delete', 'pod', pod, '--grace-period=0', '--force']);

const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
/** The ServiceAccount admission plugin refuses pods whose account is missing, and no controller manager makes `default` here. */
const serviceAccount = (ns: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: ns } });
const pod = (ns: string, name: string, node: string) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app: name } },
  spec: { nodeName: node, containers: [{ name: 'app', image: 'registry.invalid/app' }] },
});
const service = (ns: string, name: string) => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
});
const authorizationPolicy = (ns: string, name: string) => ({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns },
  spec: { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9000'] } }] }] },
});

function meta(obj: KubeObject): Record<string, unknown> {
  return isRecord(obj.metadata) ? obj.metadata : {};
}

/** "ns/name" (or "name") of the update's objects of `kind`, sorted. */
function names(update: ClusterUpdate | undefined, kind: string): string[] {
  return (update?.objects ?? [])
    .filter((o) => o.kind === kind)
    .map((o) => (typeof meta(o).namespace === 'string' ? `${String(meta(o).namespace)}/${String(meta(o).name)}` : String(meta(o).name)))
    .sort();
}

function find(update: ClusterUpdate | undefined, kind: string, ns: string, name: string): KubeObject[] {
  return (update?.objects ?? []).filter((o) => o.kind === kind && meta(o).namespace === ns && meta(o).name === name);
}

/** A source and every update it delivered. */
class Watched {
  readonly updates: ClusterUpdate[] = [];
  readonly source: KubeSource;

  constructor(options: KubeSourceOptions) {
    this.source = new KubeSource(options);
  }

  start(): Promise<void> {
    return this.source.start((update) => void this.updates.push(update));
  }

  get latest(): ClusterUpdate | undefined {
    return this.updates.at(-1);
  }

  informer(kind: string): InformerStatus {
    const found = this.source.status().informers?.find((i) => i.kind === kind);
    assert.ok(found, `an informer for ${kind}`);
    return found;
  }

  /** Waits for an update that satisfies `check`. */
  until(what: string, check: (update: ClusterUpdate) => boolean, timeoutMs?: number): Promise<ClusterUpdate> {
    return eventually(what, () => {
      const update = this.latest;
      return update !== undefined && check(update) ? update : undefined;
    }, timeoutMs);
  }
}

interface Cluster {
  cp: TestControlPlane;
  watch(kinds: readonly WatchedKind[], extra?: Partial<KubeSourceOptions>): Watched;
}

/**
 * A control plane and a maker of sources on it. The sources stop first (after
 * hooks run in order): the API server waits for open watches on SIGTERM.
 */
async function cluster(t: TestContext, opts?: { crds?: boolean }): Promise<Cluster> {
  const sources: KubeSource[] = [];
  t.after(() => {
    for (const source of sources) source.stop();
  });
  const cp = await startTestControlPlane(t, opts);
  return {
    cp,
    watch: (kinds, extra = {}) => {
      const watched = new Watched({ kubeconfig: cp.kubeconfig, kinds, log: silentLogger, backoff: BACKOFF, ...extra });
      sources.push(watched.source);
      return watched;
    },
  };
}

test('core kinds: the first sync, changes, a pod field selector and recreated pods', async (t) => {
  const { cp, watch } = await cluster(t);
  await apply(cp, namespace('demo', { 'istio.io/dataplane-mode': 'ambient' }));
  await apply(cp, serviceAccount('demo'), pod('demo', 'web-1', 'node-1'), pod('demo', 'web-2', 'node-2'), service('demo', 'web'));
  const agent = watch([NAMESPACES, PODS, SERVICES], { podFieldSelector: 'spec.nodeName=node-1' });
  const all = watch([NAMESPACES, PODS, SERVICES]);
  await Promise.all([agent.start(), all.start()]);

  await t.test('the first update holds what existed before start, with apiVersion and kind set and no managedFields', () => {
    // One update for the whole first sync: the lists' objects and client-node's add events for each coalesce.
    assert.equal(agent.updates.length, 1);
    const first = agent.latest!;
    assert.ok(names(first, 'Namespace').includes('demo'));
    assert.deepEqual(names(first, 'Service').filter((n) => n.startsWith('demo/')), ['demo/web']);
    assert.ok(first.objects.every((o) => typeof o.apiVersion === 'string' && typeof o.kind === 'string'));
    // The API server keeps them on every object applied; the cache drops them.
    assert.ok(first.objects.every((o) => !('managedFields' in meta(o))));
    assert.deepEqual(first.unreadable, []);
    assert.equal(typeof first.changedAtMs, 'number');
    // What consumers do with it: the Service converts.
    const { state, rejected } = new ClusterState().update(first.objects);
    assert.deepEqual(rejected, []);
    assert.ok(state.services.some((s) => s.namespace === 'demo' && s.name === 'web' && s.vips.length === 1));

    const status = agent.source.status();
    assert.equal(status.name, 'kubernetes');
    assert.equal(status.synced, true);
    assert.equal(agent.source.synced, true);
    assert.equal(status.server, cp.server);
    assert.deepEqual(status.informers?.map((i) => i.kind), ['v1 Namespace', 'v1 Pod', 'v1 Service']);
    for (const informer of status.informers ?? []) {
      assert.equal(informer.synced, true);
      assert.equal(informer.lists, 1);
      assert.equal(informer.restarts, 0);
      assert.equal(informer.lastError, undefined);
      assert.match(informer.resourceVersion, /^\d+$/);
    }
  });

  await t.test('the field selector restricts pods to one node, on the list and on the watch', async () => {
    assert.deepEqual(names(agent.latest, 'Pod'), ['demo/web-1']);
    assert.deepEqual(names(all.latest, 'Pod'), ['demo/web-1', 'demo/web-2']);
    assert.equal(agent.informer('v1 Pod').fieldSelector, 'spec.nodeName=node-1');
    assert.equal(agent.informer('v1 Pod').objects, 1);
    await apply(cp, pod('demo', 'web-3', 'node-2'), pod('demo', 'web-4', 'node-1'));
    await all.until('web-3 and web-4 everywhere', (u) => names(u, 'Pod').length === 4);
    await agent.until('web-4 on node-1', (u) => names(u, 'Pod').includes('demo/web-4'));
    assert.deepEqual(names(agent.latest, 'Pod'), ['demo/web-1', 'demo/web-4']);
  });

  await t.test('creates, updates and deletes propagate', async () => {
    await apply(cp, service('demo', 'api'));
    await agent.until('service api', (u) => names(u, 'Service').includes('demo/api'));
    await kubectl(cp, ['label', 'namespace', 'demo', 'team=payments']);
    const labelled = await agent.until('the namespace label', (u) => {
      const ns = u.objects.find((o) => o.kind === 'Namespace' && meta(o).name === 'demo');
      return ns !== undefined && isRecord(meta(ns).labels) && (meta(ns).labels as Record<string, unknown>).team === 'payments';
    });
    assert.equal(names(labelled, 'Namespace').filter((n) => n === 'demo').length, 1);
    // A status written by a kubelet arrives as an update too, and makes the pod a workload.
    await kubectl(cp, ['-n', 'demo', 'patch', 'pod', 'web-1', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }] } })]);
    const running = await agent.until('web-1 running', (u) => find(u, 'Pod', 'demo', 'web-1').some((p) => isRecord(p.status) && p.status.phase === 'Running'));
    assert.ok(find(running, 'Pod', 'demo', 'web-1').every((p) => !('managedFields' in meta(p))), 'nor from a watch event');
    const { state } = new ClusterState().update(running.objects);
    assert.deepEqual(state.workloads.map((w) => [w.name, w.ips, w.enrolled]), [['web-1', ['10.244.1.5'], true]]);
    await kubectl(cp, ['-n', 'demo', 'delete', 'service', 'api']);
    await agent.until('service api gone', (u) => !names(u, 'Service').includes('demo/api'));
  });

  await t.test('a pod deleted and recreated under the same name replaces the old one', async () => {
    const [old] = find(agent.latest, 'Pod', 'demo', 'web-4');
    assert.ok(old);
    const oldUid = meta(old).uid;
    await forceDelete(cp, 'demo', 'web-4');
    await apply(cp, pod('demo', 'web-4', 'node-1'));
    const recreated = await agent.until('web-4 with a new UID', (u) => find(u, 'Pod', 'demo', 'web-4').some((p) => meta(p).uid !== oldUid));
    assert.equal(find(recreated, 'Pod', 'demo', 'web-4').length, 1);
    assert.equal(agent.informer('v1 Pod').objects, 2);
  });

  await t.test('a kind over the object cap is refused and reported, and taken again once it fits', async () => {
    await apply(cp, pod('demo', 'cap-1', 'node-cap'), pod('demo', 'cap-2', 'node-cap'));
    const capped = watch([PODS], { podFieldSelector: 'spec.nodeName=node-cap', maxObjectsPerKind: 2 });
    await capped.start();
    assert.deepEqual(names(capped.latest, 'Pod'), ['demo/cap-1', 'demo/cap-2']);
    // Over the cap mid-watch: the last state that fit stays, the refusal is reported.
    await apply(cp, pod('demo', 'cap-3', 'node-cap'));
    const refused = await capped.until('the refusal', (u) => u.unreadable.length === 1);
    assert.deepEqual(names(refused, 'Pod'), ['demo/cap-1', 'demo/cap-2']);
    assert.match(refused.unreadable[0]!.reason, /more than 2 objects/);
    assert.match(capped.informer('v1 Pod').lastError ?? '', /more than 2 objects/);
    // Over the cap at the first list: synced all the same, with nothing of the kind and the refusal.
    const late = watch([PODS], { podFieldSelector: 'spec.nodeName=node-cap', maxObjectsPerKind: 2 });
    await late.start();
    assert.deepEqual(names(late.latest, 'Pod'), []);
    assert.equal(late.latest?.unreadable.length, 1);
    assert.equal(late.informer('v1 Pod').synced, false);
    // Back under the cap: the slow relist takes the kind again.
    await forceDelete(cp, 'demo', 'cap-1');
    for (const w of [capped, late]) {
      await w.until('the kind back under the cap', (u) => u.unreadable.length === 0 && names(u, 'Pod').join() === 'demo/cap-2,demo/cap-3');
    }
    assert.equal(late.informer('v1 Pod').synced, true);
  });
});

test('Istio kinds flow through when their CRDs are installed', async (t) => {
  const { cp, watch } = await cluster(t, { crds: true });
  await apply(cp, namespace('shop'), authorizationPolicy('shop', 'deny-9000'));
  const agent = watch(AGENT_KINDS, { podFieldSelector: AGENT_POD_FIELD_SELECTOR });
  await agent.start();
  const status = agent.source.status();
  assert.ok(status.informers?.every((i) => i.synced && i.missing === undefined), JSON.stringify(status.informers));
  const [policy] = find(agent.latest, 'AuthorizationPolicy', 'shop', 'deny-9000');
  assert.equal(policy?.apiVersion, 'security.istio.io/v1');
  assert.equal(new ClusterState().update(agent.latest!.objects).state.authorizationPolicies.length, 1);
  await apply(cp, authorizationPolicy('shop', 'deny-9001'), {
    apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } },
  });
  const later = await agent.until('the new policies', (u) => names(u, 'AuthorizationPolicy').length === 2 && names(u, 'PeerAuthentication').length === 1);
  const { state, rejected } = new ClusterState().update(later.objects);
  assert.deepEqual(rejected, []);
  assert.deepEqual(state.authorizationPolicies.map((p) => p.key), ['shop/deny-9000', 'shop/deny-9001']);
  assert.equal(state.peerAuthentications.length, 1);
});

test('a kind whose CRD is missing is reported, does not hold back sync, and is picked up once installed', async (t) => {
  const { cp, watch } = await cluster(t);
  const widgets: WatchedKind = { group: 'test.meshlet.io', version: 'v1', plural: 'widgets', kind: 'Widget', namespaced: true };
  const source = watch([NAMESPACES, AUTHORIZATION_POLICIES, widgets]);
  await source.start();
  assert.equal(source.source.synced, true);
  assert.ok(names(source.latest, 'Namespace').includes('default'));
  for (const kind of ['security.istio.io/v1 AuthorizationPolicy', 'test.meshlet.io/v1 Widget']) {
    const informer = source.informer(kind);
    assert.equal(informer.missing, true);
    assert.equal(informer.synced, false);
    assert.match(informer.lastError ?? '', /404.*CustomResourceDefinition/);
  }
  assert.equal(source.informer('v1 Namespace').synced, true);

  await apply(cp, {
    apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'widgets.test.meshlet.io' },
    spec: {
      group: 'test.meshlet.io', scope: 'Namespaced', names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
    },
  });
  await kubectl(cp, ['wait', '--for', 'condition=Established', 'crd/widgets.test.meshlet.io', '--timeout', '30s']);
  await apply(cp, { apiVersion: 'test.meshlet.io/v1', kind: 'Widget', metadata: { name: 'w', namespace: 'default' }, spec: { size: 3 } });
  const update = await source.until('the widget', (u) => names(u, 'Widget').includes('default/w'));
  assert.equal(find(update, 'Widget', 'default', 'w')[0]?.apiVersion, 'test.meshlet.io/v1');
  const informer = source.informer('test.meshlet.io/v1 Widget');
  assert.equal(informer.synced, true);
  assert.equal(informer.missing, undefined);
  assert.equal(source.informer('security.istio.io/v1 AuthorizationPolicy').missing, true);
});

test('an API server restart mid-watch: the last state stays, the watch reconnects and resumes, status counts it', async (t) => {
  const { cp, watch } = await cluster(t);
  await apply(cp, namespace('demo'), serviceAccount('demo'), pod('demo', 'web-1', 'node-1'), service('demo', 'web'));
  const agent = watch([NAMESPACES, PODS, SERVICES], { podFieldSelector: 'spec.nodeName=node-1' });
  await agent.start();
  const before = agent.updates.length;
  await cp.restartApiServer();
  const status = await eventually('every informer watching again', () => {
    const s = agent.source.status();
    return s.informers?.every((i) => i.lastError === undefined && i.watches >= 2) ? s : undefined;
  }, 30_000);
  assert.equal(status.synced, true);
  for (const informer of status.informers ?? []) assert.ok(informer.restarts >= 1, `${informer.kind} counts the restart: ${JSON.stringify(informer)}`);
  // The objects did not change, so neither the outage nor the relists (410 Gone from the new API server's cache) delivered an update.
  assert.equal(agent.updates.length, before);
  await apply(cp, service('demo', 'after-restart'));
  const after = await agent.until('the service created after the restart', (u) => names(u, 'Service').includes('demo/after-restart'));
  assert.deepEqual(names(after, 'Pod'), ['demo/web-1']);
  assert.ok(names(after, 'Service').includes('demo/web'));
  // And changes keep flowing on every kind.
  await forceDelete(cp, 'demo', 'web-1');
  await agent.until('web-1 gone', (u) => names(u, 'Pod').length === 0);
});

test('client-node\'s 30 s inactivity cut resumes the watch from its resource version, without a relist', { timeout: 120_000 }, async (t) => {
  const { cp, watch } = await cluster(t);
  const source = watch([NAMESPACES]);
  await source.start();
  await eventually('the quiet watch cut and resumed', () => source.informer('v1 Namespace').watches >= 2, 90_000);
  const informer = source.informer('v1 Namespace');
  assert.equal(informer.lists, 1);
  assert.equal(informer.restarts, 0);
  await apply(cp, namespace('after-cut'));
  await source.until('the namespace created after the cut', (u) => names(u, 'Namespace').includes('after-cut'));
  assert.equal(source.informer('v1 Namespace').lists, 1);
});

test('an unreachable API server is retried with capped exponential backoff, and stop() settles start()', async () => {
  // A loopback port just closed: nothing listens, every request is refused at once.
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: bound } = server.address() as AddressInfo;
      server.close(() => resolve(bound));
    });
  });
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromClusterAndUser({ name: 'nowhere', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }, { name: 'nobody', token: 'x' });
  const clock = new ManualClock(0);
  const source = new KubeSource({
    kubeconfig, kinds: [NAMESPACES], log: silentLogger, timers: clock.scheduler, random: () => 0.5,
    backoff: { initialMs: 1000, maxMs: 4000, slowMs: 60_000 },
  });
  let settled = false;
  const started = source.start(() => assert.fail('no update without an API server')).then(() => (settled = true));
  const informer = () => source.status().informers![0]!;
  const failedAgain = (restarts: number) => eventually(`failure ${restarts + 1}`, () => informer().restarts === restarts && clock.pending === 1 && informer().lastError !== undefined);
  await failedAgain(0);
  assert.match(informer().lastError!, /GET \/api\/v1\/namespaces: fetch failed: .*ECONNREFUSED/);
  // 1 s, 2 s, 4 s, then capped at 4 s: a retry fires only when its delay is over.
  for (const [restarts, delay] of [[0, 1000], [1, 2000], [2, 4000], [3, 4000]] as const) {
    clock.advance(delay - 1);
    assert.equal(informer().restarts, restarts);
    clock.advance(1);
    assert.equal(informer().restarts, restarts + 1);
    await failedAgain(restarts + 1);
  }
  assert.equal(source.synced, false);
  assert.equal(settled, false);
  source.stop();
  await started;
  assert.equal(clock.pending, 0);
  assert.equal(source.synced, false);
});

test('start rejects a kubeconfig it cannot read, naming the fix', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-kubeconfig-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'missing.kubeconfig');
  await assert.rejects(new KubeSource({ kubeconfig: missing, kinds: [NAMESPACES], log: silentLogger }).start(() => {}), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'MESHLET_CONFIG');
    assert.match(err.message, new RegExp(`cannot read kubeconfig ${missing}.*check the path`));
    return true;
  });
  const empty = join(dir, 'empty.kubeconfig');
  await writeFile(empty, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
  await assert.rejects(new KubeSource({ kubeconfig: empty, kinds: [NAMESPACES], log: silentLogger }).start(() => {}), /has no current cluster with a server URL/);
});

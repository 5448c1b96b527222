// daemonset/rbac.yaml against the components' watch lists and a real API
// server: each ClusterRole grants exactly what its component's kinds need
// (checked both ways, from AGENT_KINDS, CA_KINDS with the waypoint
// controller's CONTROLLER_KINDS, and WAYPOINT_KINDS) plus the writes each
// makes, the CA's Role exactly its root Secret's get and create, the
// ztunnel's account nothing, and under its own ServiceAccount's token each
// component can make its calls, the same list and watch requests the
// Kubernetes source makes and the waypoint controller's applies (a
// waypoint's ClusterRoleBinding to meshlet-waypoint among them, and no
// binding to any other role), and nothing else; a waypoint's ServiceAccount,
// so bound, lists and watches what it reads and nothing more.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ApiException, AppsV1Api, AuthenticationV1Api, CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { isRecord } from '../../lib/cluster/objects.ts';
import { listCollection, statusCodeOf, TrackedWatch } from '../../lib/cluster/sources/kube-client.ts';
import { AGENT_KINDS, AGENT_POD_FIELD_SELECTOR, CA_KINDS, collectionPath, CONTROLLER_KINDS, kindName, PODS, WAYPOINT_KINDS, type WatchedKind } from '../../lib/cluster/sources/kube-kinds.ts';
import { DEFAULT_NODE_ACCOUNT, DEFAULT_ROOT_SECRET, parseSecretRef } from '../../lib/config/ca.ts';
import { NODE_DAEMONSET } from '../../lib/install/names.ts';
import { answerMessage, kubeApply, kubeDelete, kubeRequest, type KubeAnswer } from '../../lib/cluster/kube-api.ts';
import { classPath, GATEWAY_CLASSES_PATH, newGatewayClass } from '../../ca/waypoint-classes.ts';
import { readGateway } from '../../ca/waypoint-gateway.ts';
import { CLUSTER_ROLE_BINDINGS_PATH, FIELD_MANAGER, WAYPOINT_CLUSTER_ROLE, waypointObjects } from '../../ca/waypoint-objects.ts';
import { eventually } from '../support/eventually.ts';
import { asServiceAccount, kubectlOk, startTestControlPlane } from '../support/control-plane.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url);
const RBAC_NAME = 'daemonset/rbac.yaml';
const KINDS_FILE = 'lib/cluster/sources/kube-kinds.ts';
const NAMESPACE = 'meshlet-system';
/** Where the test's pod runs. */
const AGENT_NODE = 'node-1';

/** "verb group/resource", one per verb a rule grants on a resource, with " named <name>" when the rule lists resourceNames; '' is the core group. */
type Grant = string;
const grant = (verb: string, group: string, resource: string, name?: string): Grant => `${verb} ${group}/${resource}${name === undefined ? '' : ` named ${name}`}`;

/** The CA's root Secret, as --root-secret defaults it. */
const ROOT_SECRET = parseSecretRef(DEFAULT_ROOT_SECRET);
/** The ztunnel's ServiceAccount: the CA's node account, with no API access of its own. */
const ZTUNNEL_ACCOUNT = 'meshlet-ztunnel';

interface Component {
  name: 'agent' | 'ca' | 'waypoint';
  /** ServiceAccount, ClusterRole and ClusterRoleBinding (and Role and RoleBinding, if any) all carry this name. */
  account: string;
  kinds: readonly WatchedKind[];
  kindsList: string;
  /** Grants beyond list+watch of its kinds, each with the reason it exists. */
  extra: readonly Grant[];
  /** What its Role in meshlet-system grants; empty: it has no Role. */
  namespaced: readonly Grant[];
}

const RBAC_API = 'rbac.authorization.k8s.io';
const AGENT: Component = {
  name: 'agent', account: 'meshlet-agent', kinds: AGENT_KINDS, kindsList: 'AGENT_KINDS', extra: [],
  // Watched, and read as it stops (--daemonset): its DaemonSet gone or being deleted means uninstall.
  namespaced: ['get', 'list', 'watch'].map((verb) => grant(verb, 'apps', 'daemonsets', NODE_DAEMONSET)),
};
const GATEWAY_API = 'gateway.networking.k8s.io';
const CA: Component = {
  name: 'ca', account: 'meshlet-ca', kinds: [...CA_KINDS, ...CONTROLLER_KINDS], kindsList: 'CA_KINDS and CONTROLLER_KINDS',
  extra: [
    // The CA authenticates each ztunnel's ServiceAccount token.
    grant('create', 'authentication.k8s.io', 'tokenreviews'),
    // The waypoint controller creates the waypoint GatewayClasses when missing and writes Gateway and class status.
    grant('create', GATEWAY_API, 'gatewayclasses'),
    grant('patch', GATEWAY_API, 'gateways/status'),
    grant('patch', GATEWAY_API, 'gatewayclasses/status'),
    // It applies each waypoint's Deployment (apply creates, too) and reads, then applies, its ServiceAccount, Service and root ConfigMap.
    ...['create', 'patch'].map((verb) => grant(verb, 'apps', 'deployments')),
    ...['serviceaccounts', 'services', 'configmaps'].flatMap((resource) => ['get', 'create', 'patch'].map((verb) => grant(verb, '', resource))),
    // It applies each waypoint's ClusterRoleBinding and deletes it once the Gateway is gone (cluster-scoped: no owner can), and binding
    // meshlet-waypoint needs the bind verb on it (the API server's escalation check), on it alone.
    ...['create', 'patch', 'delete'].map((verb) => grant(verb, RBAC_API, 'clusterrolebindings')),
    grant('bind', RBAC_API, 'clusterroles', WAYPOINT_CLUSTER_ROLE),
  ],
  // It reads its root Secret, and creates it on first start (create cannot be narrowed by name).
  namespaced: [grant('get', '', 'secrets', ROOT_SECRET.name), grant('create', '', 'secrets')],
};

/** Each waypoint's ServiceAccount is the controller's, and so is its binding to this ClusterRole: rbac.yaml holds the role alone. */
const WAYPOINT: Component = { name: 'waypoint', account: WAYPOINT_CLUSTER_ROLE, kinds: WAYPOINT_KINDS, kindsList: 'WAYPOINT_KINDS', extra: [], namespaced: [] };

/** An informer lists and then watches: those are the only verbs a watched kind needs. */
const WATCH_VERBS = ['list', 'watch'] as const;

type Manifest = Record<string, unknown>;

async function readManifests(): Promise<Manifest[]> {
  const docs = parseAllDocuments(await readFile(RBAC_FILE, 'utf8'));
  return docs.map((doc, i) => {
    assert.equal(doc.errors.length, 0, `${RBAC_NAME} document ${i + 1}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    assert.ok(isRecord(value), `${RBAC_NAME} document ${i + 1} is not an object`);
    return value;
  });
}

function find(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && isRecord(m.metadata) && m.metadata.name === name);
  assert.ok(found, `${RBAC_NAME} has no ${kind} ${name}`);
  return found;
}

function strings(value: unknown, where: string): string[] {
  assert.ok(Array.isArray(value) && value.every((v): v is string => typeof v === 'string'), `${where} must be a list of strings`);
  return value;
}

/** Every verb on every resource (and named object) the role's rules grant; a rule with anything but apiGroups, resources, resourceNames and verbs is a problem of its own. */
function grantsOf(role: Manifest, problems: string[]): Set<Grant> {
  const name = isRecord(role.metadata) ? String(role.metadata.name) : '?';
  const grants = new Set<Grant>();
  const rules = Array.isArray(role.rules) ? role.rules : [];
  rules.forEach((rule: unknown, i) => {
    const where = `${RBAC_NAME} ${String(role.kind)} ${name} rule ${i + 1}`;
    assert.ok(isRecord(rule), `${where} is not an object`);
    const unexpected = Object.keys(rule).filter((key) => !['apiGroups', 'resources', 'resourceNames', 'verbs'].includes(key));
    if (unexpected.length > 0) problems.push(`${where} has ${unexpected.join(', ')}: meshlet's rules name only apiGroups, resources, resourceNames and verbs`);
    const names: (string | undefined)[] = rule.resourceNames === undefined ? [undefined] : strings(rule.resourceNames, `${where} resourceNames`);
    for (const group of strings(rule.apiGroups, `${where} apiGroups`)) {
      for (const resource of strings(rule.resources, `${where} resources`)) {
        for (const verb of strings(rule.verbs, `${where} verbs`)) for (const object of names) grants.add(grant(verb, group, resource, object));
      }
    }
  });
  return grants;
}

/** What is wrong with the component's Role in meshlet-system (or with its having one), each naming the grant and the file. */
function namespacedRoleProblems(manifests: readonly Manifest[], c: Component): string[] {
  const role = manifests.find((m) => m.kind === 'Role' && isRecord(m.metadata) && m.metadata.name === c.account);
  if (role === undefined) return c.namespaced.length === 0 ? [] : [`${RBAC_NAME} has no Role ${c.account}; the ${c.name} needs ${c.namespaced.join(', ')}`];
  const problems: string[] = [];
  if (isRecord(role.metadata) && role.metadata.namespace !== NAMESPACE) problems.push(`Role ${c.account} must be in namespace ${NAMESPACE}`);
  const granted = grantsOf(role, problems);
  for (const g of c.namespaced) if (!granted.has(g)) problems.push(`Role ${c.account} does not grant "${g}", which the ${c.name} needs; add it to ${RBAC_NAME}`);
  for (const g of granted) if (!c.namespaced.includes(g)) problems.push(`Role ${c.account} grants "${g}", which the ${c.name} does not use; remove it from ${RBAC_NAME}`);
  return problems;
}

/** What is wrong with the component's ClusterRole, each naming the kind or rule and the file to edit; empty when it grants exactly what it needs. */
function roleProblems(manifests: readonly Manifest[], c: Component): string[] {
  const problems: string[] = [];
  const granted = grantsOf(find(manifests, 'ClusterRole', c.account), problems);
  const needed = new Map<Grant, string>();
  for (const kind of c.kinds) {
    for (const verb of WATCH_VERBS) needed.set(grant(verb, kind.group, kind.plural), `${kindName(kind)} is in ${c.kindsList} (${KINDS_FILE})`);
  }
  for (const extra of c.extra) needed.set(extra, `the ${c.name} needs it`);
  for (const [g, why] of needed) {
    if (!granted.has(g)) problems.push(`ClusterRole ${c.account} does not grant "${g}": ${why}; add it to a rule in ${RBAC_NAME}`);
  }
  for (const g of granted) {
    if (!needed.has(g)) problems.push(`ClusterRole ${c.account} grants "${g}", which nothing in ${c.kindsList} (${KINDS_FILE}) needs; remove it from ${RBAC_NAME}, or add the kind to ${c.kindsList} if the ${c.name} watches it`);
  }
  return problems;
}

test('each ClusterRole in daemonset/rbac.yaml grants exactly list and watch on its component\'s kinds (and the CA TokenReview and its root Secret), bound to its ServiceAccount', async () => {
  const manifests = await readManifests();
  for (const c of [AGENT, CA]) {
    const problems = [...roleProblems(manifests, c), ...namespacedRoleProblems(manifests, c)];
    assert.equal(problems.length, 0, problems.join('\n'));
    find(manifests, 'ServiceAccount', c.account);
    const bindings: [string, string][] = [['ClusterRoleBinding', 'ClusterRole'], ...(c.namespaced.length > 0 ? [['RoleBinding', 'Role'] as [string, string]] : [])];
    for (const [kind, roleKind] of bindings) {
      const binding = find(manifests, kind, c.account);
      assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name: c.account }, `${RBAC_NAME} ${kind} ${c.account}: roleRef`);
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: c.account, namespace: NAMESPACE }], `${RBAC_NAME} ${kind} ${c.account}: subjects`);
    }
  }
  const waypointProblems = roleProblems(manifests, WAYPOINT);
  assert.equal(waypointProblems.length, 0, waypointProblems.join('\n'));
  const waypointBindings = manifests.filter((m) => /Binding$/.test(String(m.kind)) && isRecord(m.roleRef) && m.roleRef.name === WAYPOINT_CLUSTER_ROLE);
  assert.deepEqual(waypointBindings.map((b) => String(b.kind)), [], `${RBAC_NAME}: ${WAYPOINT_CLUSTER_ROLE} is bound by the waypoint controller, per waypoint, not here`);
  // The CA's node account is the ztunnel's ServiceAccount, which may call nothing.
  assert.equal(DEFAULT_NODE_ACCOUNT, `system:serviceaccount:${NAMESPACE}:${ZTUNNEL_ACCOUNT}`, 'the CA\'s default node account is the ztunnel\'s ServiceAccount');
  find(manifests, 'ServiceAccount', ZTUNNEL_ACCOUNT);
  const ztunnelBindings = manifests.filter((m) => /Binding$/.test(String(m.kind)) && Array.isArray(m.subjects)
    && m.subjects.some((subject: unknown) => isRecord(subject) && subject.kind === 'ServiceAccount' && subject.name === ZTUNNEL_ACCOUNT));
  assert.deepEqual(ztunnelBindings.map((b) => `${String(b.kind)} ${isRecord(b.metadata) ? String(b.metadata.name) : ''}`), [], `${RBAC_NAME}: ${ZTUNNEL_ACCOUNT} is bound to no role`);
  assert.equal(ROOT_SECRET.namespace, NAMESPACE, 'the root Secret is in the namespace of the CA\'s Role');
  find(manifests, 'Namespace', NAMESPACE);
  for (const m of manifests) {
    const meta = isRecord(m.metadata) ? m.metadata : {};
    const labels = isRecord(meta.labels) ? meta.labels : {};
    const what = `${RBAC_NAME} ${String(m.kind)} ${String(meta.name)}`;
    assert.equal(labels['app.kubernetes.io/part-of'], 'meshlet', `${what}: label app.kubernetes.io/part-of`);
    if (m.kind !== 'Namespace') assert.ok(['agent', 'ca', 'ztunnel', 'waypoint'].includes(String(labels['app.kubernetes.io/component'])), `${what}: label app.kubernetes.io/component`);
    if (m.kind === 'ServiceAccount') assert.equal(meta.namespace, NAMESPACE, `${what}: namespace`);
  }
});

test('the role check names the kind and the file when a watched kind has no rule, or a rule has no kind', async () => {
  const manifests = await readManifests();
  const has = (problems: readonly string[], text: string): void => assert.ok(problems.some((p) => p.includes(text)), `no problem says ${JSON.stringify(text)}:\n${problems.join('\n')}`);
  const httpRoutes: WatchedKind = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true };
  const watchesMore = roleProblems(manifests, { ...AGENT, kinds: [...AGENT_KINDS, httpRoutes] });
  for (const verb of WATCH_VERBS) {
    has(watchesMore, `ClusterRole meshlet-agent does not grant "${verb} gateway.networking.k8s.io/httproutes": gateway.networking.k8s.io/v1 HTTPRoute is in AGENT_KINDS (${KINDS_FILE}); add it to a rule in ${RBAC_NAME}`);
  }
  const dropped = AGENT_KINDS[0]!;
  const watchesLess = roleProblems(manifests, { ...AGENT, kinds: AGENT_KINDS.slice(1) });
  for (const verb of WATCH_VERBS) {
    has(watchesLess, `ClusterRole meshlet-agent grants "${verb} ${dropped.group}/${dropped.plural}", which nothing in AGENT_KINDS (${KINDS_FILE}) needs; remove it from ${RBAC_NAME}`);
  }
  const otherSecret = namespacedRoleProblems(manifests, { ...CA, namespaced: [grant('get', '', 'secrets', 'other-root'), grant('create', '', 'secrets')] });
  has(otherSecret, `Role meshlet-ca does not grant "get /secrets named other-root", which the ca needs; add it to ${RBAC_NAME}`);
  has(otherSecret, `Role meshlet-ca grants "get /secrets named ${ROOT_SECRET.name}", which the ca does not use; remove it from ${RBAC_NAME}`);
});


const isPods = (kind: WatchedKind): boolean => kind.group === PODS.group && kind.plural === PODS.plural;

/** The agent and the waypoint list pods as the agent does (waypoint/config-source.ts). */
function fieldSelectorFor(c: Component, kind: WatchedKind): string | undefined {
  return (c === AGENT || c === WAYPOINT) && isPods(kind) ? AGENT_POD_FIELD_SELECTOR : undefined;
}

/** The source's list, then its watch from the list's resource version; resolves once the server has accepted the watch (HTTP 200) and closes it. */
async function listAndWatch(kc: KubeConfig, kind: WatchedKind, fieldSelector: string | undefined): Promise<{ names: string[] }> {
  const path = collectionPath(kind);
  const listed = await listCollection(kc, path, { fieldSelector, maxObjects: 1000 });
  let connected = false;
  let failure: unknown;
  const watch = new TrackedWatch(kc, {
    connected: () => (connected = true),
    ended: (_how, err) => (failure = err),
  });
  try {
    await watch.watch(path, { resourceVersion: listed.resourceVersion, fieldSelector }, () => undefined, () => undefined);
  } finally {
    watch.close();
  }
  assert.ok(connected, `watch ${path}: ${failure instanceof Error ? failure.message : String(failure)} (HTTP ${statusCodeOf(failure)})`);
  return { names: listed.items.map((item) => (isRecord(item.metadata) ? String(item.metadata.name) : '')) };
}

/** Refused by RBAC: 403, and the server says which user may not do what. */
async function assertForbidden(what: string, call: () => Promise<unknown>, account: string, namespace = NAMESPACE): Promise<void> {
  await assert.rejects(call, (err: unknown) => {
    assert.ok(err instanceof ApiException || statusCodeOf(err) !== undefined, `${what}: ${String(err)}`);
    const code = err instanceof ApiException ? err.code : statusCodeOf(err);
    assert.equal(code, 403, `${what}: expected 403 Forbidden, got ${String(err)}`);
    assert.match(err instanceof Error ? err.message : '', new RegExp(`system:serviceaccount:${namespace}:${account}`), what);
    return true;
  }, `${what} must be forbidden`);
}

test('under its own ServiceAccount each component makes its calls and is refused the rest', async (t) => {
  const cp = await startTestControlPlane(t, { crds: true });
  const applied = await cp.kubectl(['apply', '-f', RBAC_FILE.pathname]);
  assert.equal(applied.exitCode, 0, `kubectl apply -f ${RBAC_NAME}: ${applied.stderr}`);
  // A pod on the agent's node and a secret beside it: targets that exist, so a refusal can only be RBAC's.
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'target', namespace: NAMESPACE }, spec: { nodeName: AGENT_NODE, serviceAccountName: 'meshlet-ca', containers: [{ name: 'main', image: 'idle' }] } };
  for (const [what, args, input] of [
    ['pod target', ['apply', '-f', '-'], JSON.stringify(pod)],
    ['secret probe', ['-n', NAMESPACE, 'create', 'secret', 'generic', 'probe', '--from-literal=key=value'], undefined],
  ] as const) {
    const created = await cp.kubectl(args, input);
    assert.equal(created.exitCode, 0, `create ${what}: ${created.stderr}`);
  }
  // The authorizer sees new roles and bindings through its informers, a moment after the apply.
  for (const [account, verb, resource] of [['meshlet-agent', 'watch', 'namespaces'], ['meshlet-ca', 'create', 'tokenreviews.authentication.k8s.io']] as const) {
    await eventually(`RBAC to admit ${account}`, async () => (await cp.kubectl(['auth', 'can-i', verb, resource, `--as=system:serviceaccount:${NAMESPACE}:${account}`])).stdout.trim() === 'yes');
  }
  await eventually('RBAC to let meshlet-ca create secrets', async () => (await cp.kubectl(['auth', 'can-i', 'create', 'secrets', '-n', NAMESPACE, `--as=system:serviceaccount:${NAMESPACE}:${CA.account}`])).stdout.trim() === 'yes');
  const agent = await asServiceAccount(cp, AGENT.account, NAMESPACE);
  const ca = await asServiceAccount(cp, CA.account, NAMESPACE);
  const ztunnel = await asServiceAccount(cp, ZTUNNEL_ACCOUNT, NAMESPACE);

  await t.test('the agent lists and watches every kind in AGENT_KINDS', async () => {
    for (const kind of AGENT_KINDS) {
      const { names } = await listAndWatch(agent.kc, kind, fieldSelectorFor(AGENT, kind));
      if (isPods(kind)) assert.deepEqual(names, ['target'], `the agent's pods (${AGENT_POD_FIELD_SELECTOR})`);
    }
  });

  await t.test('the CA lists and watches every kind in CA_KINDS, reviews a token, and creates and reads its root Secret', async () => {
    for (const kind of CA_KINDS) await listAndWatch(ca.kc, kind, fieldSelectorFor(CA, kind));
    const review = await ca.kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: agent.token } },
    });
    assert.equal(review.status?.authenticated, true, `TokenReview of the agent's token: ${review.status?.error ?? ''}`);
    assert.equal(review.status?.user?.username, `system:serviceaccount:${NAMESPACE}:${AGENT.account}`);
    const core = ca.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedSecret({ namespace: ROOT_SECRET.namespace, body: { metadata: { name: ROOT_SECRET.name }, type: 'Opaque', data: { 'tls.crt': '' } } });
    const read = await core.readNamespacedSecret(ROOT_SECRET);
    assert.equal(read.metadata?.name, ROOT_SECRET.name);
  });

  await t.test('the agent may not write, read secrets or review tokens', async () => {
    const core = agent.kc.makeApiClient(CoreV1Api);
    const a = AGENT.account;
    await assertForbidden('the agent creating a pod', () => core.createNamespacedPod({ namespace: NAMESPACE, body: { ...pod, metadata: { name: 'intruder', namespace: NAMESPACE } } }), a);
    await assertForbidden('the agent listing secrets', () => core.listSecretForAllNamespaces(), a);
    await assertForbidden('the agent reading a secret', () => core.readNamespacedSecret({ name: 'probe', namespace: NAMESPACE }), a);
    await assertForbidden('the agent creating a tokenreview', () => agent.kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: ca.token } },
    }), a);
  });

  await t.test('the CA may not write pods, read secrets or watch what only the agent watches', async () => {
    const core = ca.kc.makeApiClient(CoreV1Api);
    const a = CA.account;
    await assertForbidden('the CA patching a pod', () => core.patchNamespacedPod({
      name: 'target', namespace: NAMESPACE, body: [{ op: 'add', path: '/metadata/labels', value: { patched: 'yes' } }],
    }), a);
    await assertForbidden('the CA listing secrets', () => core.listSecretForAllNamespaces(), a);
    await assertForbidden('the CA listing its namespace\'s secrets', () => core.listNamespacedSecret({ namespace: NAMESPACE }), a);
    await assertForbidden('the CA reading a secret', () => core.readNamespacedSecret({ name: 'probe', namespace: NAMESPACE }), a);
    // It never replaces or removes its root: a Secret that holds no usable root stops its start instead.
    const root = { ...ROOT_SECRET, body: { metadata: ROOT_SECRET, type: 'Opaque', data: {} } };
    await assertForbidden('the CA replacing its root Secret', () => core.replaceNamespacedSecret(root), a);
    await assertForbidden('the CA deleting its root Secret', () => core.deleteNamespacedSecret(ROOT_SECRET), a);
    await assertForbidden('the CA creating a secret in another namespace', () => core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: ROOT_SECRET.name } } }), a);
    const caKinds = new Set(CA.kinds.map(kindName));
    for (const kind of AGENT_KINDS.filter((k) => !caKinds.has(kindName(k)))) {
      await assertForbidden(`the CA listing ${kindName(kind)}`, () => listCollection(ca.kc, collectionPath(kind), { maxObjects: 1000 }), a);
    }
  });

  // A waypoint Gateway as a user writes one, in a namespace of theirs.
  const gateway = { apiVersion: `${GATEWAY_API}/v1`, kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'default' }, spec: { gatewayClassName: 'meshlet-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
  const created = await cp.kubectl(['apply', '-f', '-'], JSON.stringify(gateway));
  assert.equal(created.exitCode, 0, `create Gateway: ${created.stderr}`);
  const caApply = (path: string, body: unknown) => kubeApply(ca.kc, path, body, { fieldManager: FIELD_MANAGER, force: true });
  const gw = readGateway(JSON.parse(await kubectlOk(cp, ['-n', 'default', 'get', 'gateway', 'waypoint', '-o', 'json'])) as Record<string, unknown>);
  assert.ok(typeof gw !== 'string', String(gw));
  const objects = waypointObjects(gw, { image: 'meshlet', caUrl: 'https://meshlet-ca.meshlet-system.svc:15012', trustDomain: 'cluster.local', tokenAudience: 'meshlet-ca' }, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  /** An answer the API server refused by RBAC, naming the CA's user. */
  const forbidden = async (what: string, answer: Promise<KubeAnswer>) => {
    const got = await answer;
    assert.equal(got.status, 403, `${what}: expected 403 Forbidden, got ${got.status} ${answerMessage(got)}`);
    assert.match(answerMessage(got), new RegExp(`system:serviceaccount:${NAMESPACE}:${CA.account}`), what);
  };

  await t.test('the CA, as the waypoint controller, watches its kinds, applies a waypoint\'s objects and writes Gateway and GatewayClass status', async () => {
    for (const kind of CONTROLLER_KINDS) await listAndWatch(ca.kc, kind, undefined);
    for (const d of [objects.trustBundle, objects.serviceAccount, objects.clusterRoleBinding, objects.service, objects.deployment]) {
      // Deployments and bindings are read from the watch; the rest are read before they are applied.
      if (d !== objects.deployment && d !== objects.clusterRoleBinding) {
        const read = await kubeRequest(ca.kc, 'GET', d.path);
        assert.equal(read.status, 404, `get ${d.what} before it exists: ${answerMessage(read)}`);
      }
      const answer = await caApply(d.path, d.body);
      assert.equal(answer.status, 201, `apply ${d.what}: ${answerMessage(answer)}`);
      assert.equal((await caApply(d.path, d.body)).status, 200, `apply ${d.what} again`);
    }
    const cls = await kubeRequest(ca.kc, 'POST', GATEWAY_CLASSES_PATH, newGatewayClass('meshlet-waypoint'));
    assert.equal(cls.status, 201, `create GatewayClass: ${answerMessage(cls)}`);
    const accepted = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'test', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' };
    const classStatus = await caApply(`${classPath('meshlet-waypoint')}/status`, { apiVersion: `${GATEWAY_API}/v1`, kind: 'GatewayClass', metadata: { name: 'meshlet-waypoint' }, status: { conditions: [accepted] } });
    assert.equal(classStatus.status, 200, `GatewayClass status: ${answerMessage(classStatus)}`);
    const gatewayStatus = await caApply('/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/waypoint/status', { ...gateway, spec: undefined, status: { conditions: [accepted] } });
    assert.equal(gatewayStatus.status, 200, `Gateway status: ${answerMessage(gatewayStatus)}`);
  });

  await t.test('the waypoint controller\'s grants stop at its writes: no deletes, no Gateway spec, no lists of what it only reads, no secrets', async () => {
    const a = CA.account;
    const apps = ca.kc.makeApiClient(AppsV1Api);
    const core = ca.kc.makeApiClient(CoreV1Api);
    await assertForbidden('the CA deleting a Deployment', () => apps.deleteNamespacedDeployment({ name: 'waypoint', namespace: 'default' }), a);
    await assertForbidden('the CA deleting a Service', () => core.deleteNamespacedService({ name: 'waypoint', namespace: 'default' }), a);
    await assertForbidden('the CA deleting a ServiceAccount', () => core.deleteNamespacedServiceAccount({ name: 'waypoint', namespace: 'default' }), a);
    await assertForbidden('the CA creating a pod', () => core.createNamespacedPod({ namespace: 'default', body: { ...pod, metadata: { name: 'intruder', namespace: 'default' } } }), a);
    await assertForbidden('the CA reading a secret in a waypoint\'s namespace', () => core.readNamespacedSecret({ name: 'default-token', namespace: 'default' }), a);
    await assertForbidden('the CA requesting a token for a waypoint\'s ServiceAccount', () => core.createNamespacedServiceAccountToken({ name: 'waypoint', namespace: 'default', body: { spec: { audiences: ['meshlet-ca'] } } }), a);
    for (const resource of ['services', 'configmaps', 'serviceaccounts']) {
      await assertForbidden(`the CA listing ${resource}`, () => listCollection(ca.kc, `/api/v1/${resource}`, { maxObjects: 1000 }), a);
    }
    await forbidden('the CA applying a Gateway\'s spec', caApply('/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/waypoint', { ...gateway, spec: { ...gateway.spec, gatewayClassName: 'other' } }));
    await forbidden('the CA creating a Gateway', kubeRequest(ca.kc, 'POST', '/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways', { ...gateway, metadata: { name: 'intruder', namespace: 'default' } }));
    await forbidden('the CA applying a GatewayClass\'s spec', caApply(classPath('meshlet-waypoint'), { ...newGatewayClass('meshlet-waypoint'), spec: { controllerName: 'example.com/other' } }));
    await forbidden('the CA applying a DaemonSet', caApply('/apis/apps/v1/namespaces/default/daemonsets/waypoint', { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'waypoint', namespace: 'default' } }));
    await forbidden('the CA applying a RoleBinding', caApply('/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/waypoint', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'waypoint', namespace: 'default' } }));
  });

  await t.test('a waypoint\'s ServiceAccount, bound by the controller, lists and watches every kind in WAYPOINT_KINDS and may do nothing else', async () => {
    const [a, ns] = [gw.name, gw.namespace];
    await eventually('RBAC to admit the waypoint', async () => (await cp.kubectl(['auth', 'can-i', 'watch', 'httproutes.gateway.networking.k8s.io', `--as=system:serviceaccount:${ns}:${a}`])).stdout.trim() === 'yes');
    const waypoint = await asServiceAccount(cp, a, ns);
    for (const kind of WAYPOINT_KINDS) {
      const { names } = await listAndWatch(waypoint.kc, kind, fieldSelectorFor(WAYPOINT, kind));
      if (isPods(kind)) assert.deepEqual(names, ['target'], `the waypoint's pods (${AGENT_POD_FIELD_SELECTOR}), cluster-wide`);
    }
    const core = waypoint.kc.makeApiClient(CoreV1Api);
    await assertForbidden('the waypoint creating a pod', () => core.createNamespacedPod({ namespace: ns, body: { ...pod, metadata: { name: 'intruder', namespace: ns } } }), a, ns);
    await assertForbidden('the waypoint patching its Service', () => core.patchNamespacedService({
      name: a, namespace: ns, body: [{ op: 'add', path: '/metadata/labels/patched', value: 'yes' }],
    }), a, ns);
    await assertForbidden('the waypoint getting a pod', () => core.readNamespacedPod({ name: 'target', namespace: NAMESPACE }), a, ns);
    await assertForbidden('the waypoint deleting an EndpointSlice', () => waypoint.kc.makeApiClient(DiscoveryV1Api).deleteCollectionNamespacedEndpointSlice({ namespace: ns }), a, ns);
    await assertForbidden('the waypoint listing secrets', () => core.listSecretForAllNamespaces(), a, ns);
    await assertForbidden('the waypoint listing its namespace\'s secrets', () => core.listNamespacedSecret({ namespace: ns }), a, ns);
    await assertForbidden('the waypoint reading a secret', () => core.readNamespacedSecret({ name: 'probe', namespace: NAMESPACE }), a, ns);
    await assertForbidden('the waypoint listing configmaps', () => core.listConfigMapForAllNamespaces(), a, ns);
    await assertForbidden('the waypoint creating a tokenreview', () => waypoint.kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: ca.token } },
    }), a, ns);
    for (const path of ['/apis/apps/v1/deployments', '/apis/security.istio.io/v1/peerauthentications', CLUSTER_ROLE_BINDINGS_PATH]) {
      await assertForbidden(`the waypoint listing ${path}`, () => listCollection(waypoint.kc, path, { maxObjects: 1000 }), a, ns);
    }
    const status = await kubeApply(waypoint.kc, '/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/waypoint/status', { ...gateway, spec: undefined, status: { conditions: [] } }, { fieldManager: 'waypoint', force: true });
    assert.equal(status.status, 403, `the waypoint writing its Gateway's status: ${answerMessage(status)}`);
  });

  await t.test('the CA binds meshlet-waypoint and no other ClusterRole, changes no ClusterRole, and deletes the binding it made', async () => {
    // Roles that grant what the CA does not hold (a role within its own grants, its own, it could bind: the API server's rule).
    for (const role of ['meshlet-agent', 'system:node', 'cluster-admin']) {
      const name = `intruder-${role}`;
      await forbidden(`the CA binding ClusterRole ${role}`, caApply(`${CLUSTER_ROLE_BINDINGS_PATH}/${name}`, {
        ...objects.clusterRoleBinding.body, metadata: { name }, roleRef: { apiGroup: RBAC_API, kind: 'ClusterRole', name: role },
      }));
    }
    await forbidden('the CA adding itself to the cluster-admin binding', caApply(`${CLUSTER_ROLE_BINDINGS_PATH}/cluster-admin`, {
      apiVersion: `${RBAC_API}/v1`, kind: 'ClusterRoleBinding', metadata: { name: 'cluster-admin' },
      roleRef: { apiGroup: RBAC_API, kind: 'ClusterRole', name: 'cluster-admin' }, subjects: [{ kind: 'ServiceAccount', name: CA.account, namespace: NAMESPACE }],
    }));
    await forbidden('the CA widening meshlet-waypoint', caApply(`/apis/${RBAC_API}/v1/clusterroles/${WAYPOINT_CLUSTER_ROLE}`, {
      apiVersion: `${RBAC_API}/v1`, kind: 'ClusterRole', metadata: { name: WAYPOINT_CLUSTER_ROLE }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['list'] }],
    }));
    await forbidden('the CA binding meshlet-waypoint in a namespace', caApply('/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/waypoint', {
      apiVersion: `${RBAC_API}/v1`, kind: 'RoleBinding', metadata: { name: 'waypoint', namespace: 'default' },
      roleRef: { apiGroup: RBAC_API, kind: 'ClusterRole', name: WAYPOINT_CLUSTER_ROLE }, subjects: [{ kind: 'ServiceAccount', name: gw.name, namespace: gw.namespace }],
    }));
    const binding = JSON.parse(await kubectlOk(cp, ['get', 'clusterrolebinding', String((objects.clusterRoleBinding.body.metadata as { name: string }).name), '-o', 'json'])) as { metadata: { uid: string } };
    const deleted = await kubeDelete(ca.kc, objects.clusterRoleBinding.path, binding.metadata.uid);
    assert.equal(deleted.status, 200, `delete ${objects.clusterRoleBinding.what}: ${answerMessage(deleted)}`);
  });

  await t.test('the ztunnel\'s account may call nothing', async () => {
    const core = ztunnel.kc.makeApiClient(CoreV1Api);
    const a = ZTUNNEL_ACCOUNT;
    await assertForbidden('the ztunnel listing pods', () => listCollection(ztunnel.kc, collectionPath(PODS), { maxObjects: 1000 }), a);
    await assertForbidden('the ztunnel reading the CA\'s root Secret', () => core.readNamespacedSecret(ROOT_SECRET), a);
    await assertForbidden('the ztunnel creating a tokenreview', () => ztunnel.kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: ca.token } },
    }), a);
  });
});

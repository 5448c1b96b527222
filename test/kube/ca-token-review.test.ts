// The CA's TokenReview authenticator against a real API server, running on
// the meshlet-ca ServiceAccount's own token (so daemonset/rbac.yaml is what
// lets it review tokens and read pods): pod-bound ztunnel tokens are the
// node's, and each way a token can be wrong is refused with its code and a
// message that says what to check: garbage and oversized tokens (before any
// TokenReview), the wrong audience, another ServiceAccount, a token bound to
// no pod, an expired token, and a pod deleted, recreated elsewhere or
// terminating after its token was issued. A waypoint pod's token (its pod
// labelled by the waypoint controller, its Gateway present) is that
// waypoint's, for its own identity; a token of any other pod, or one bound
// to none, is no waypoint's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRefusal, REFUSAL_STATUS, refusalError, type Caller, type CallerAuthenticator, type Refusal, type RefusalCode } from '../../ca/caller.ts';
import { ApiPodLookup, WatchedPodLookup } from '../../ca/caller-pods.ts';
import { CaMetrics } from '../../ca/metrics.ts';
import { MAX_TOKEN_BYTES, TokenReviewAuthenticator } from '../../ca/token-review.ts';
import { ApiGatewayLookup, type GatewayLookup } from '../../ca/waypoint-callers.ts';
import { GATEWAY_NAME_LABEL, MANAGED_LABEL, MANAGED_VALUE } from '../../ca/waypoint-objects.ts';
import { CA_KINDS } from '../../lib/cluster/sources/kube-kinds.ts';
import { KubeSource } from '../../lib/cluster/sources/kube.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { applyObjects as apply, asServiceAccount, kubectlOk as kubectl, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { accountToken, mintToken as mint } from '../support/ca-tokens.ts';
import { eventually } from '../support/eventually.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url).pathname;
const NS = 'meshlet-system';
const ZTUNNEL = 'meshlet-ztunnel';
const INTRUDER = 'intruder';
const user = (account: string): string => `system:serviceaccount:${NS}:${account}`;


const node = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name } });
const serviceAccount = (name: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: NS } });
const pod = (name: string, account: string, nodeName: string, finalizers: string[] = []) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, finalizers },
  spec: { nodeName, serviceAccountName: account, containers: [{ name: 'ztunnel', image: 'registry.invalid/ztunnel' }] },
});

const APPS = 'demo';
const WAYPOINT = 'waypoint';
const waypointLabels = (gateway: string) => ({ [GATEWAY_NAME_LABEL]: gateway, [MANAGED_LABEL]: MANAGED_VALUE });
const appAccount = (name: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: APPS } });
/** A pod in the apps' namespace, as the waypoint controller's Deployment makes them when `labels` are the waypoint's. */
const appPod = (name: string, account: string, labels: Record<string, string>, finalizers: string[] = []) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: APPS, labels, finalizers },
  spec: { nodeName: 'node-1', serviceAccountName: account, containers: [{ name: 'waypoint', image: 'registry.invalid/meshlet' }] },
});
const gatewayOf = (name: string, className: string) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: APPS },
  spec: { gatewayClassName: className, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});

/** Pods are deleted at once: without a kubelet a bound pod's graceful deletion never finishes. */
const forceDelete = (cp: TestControlPlane, name: string): Promise<string> =>
  kubectl(cp, ['-n', NS, 'delete', 'pod', name, '--grace-period=0', '--force']);

/** A TokenRequest token of `account`, bound to `pod` unless it is undefined. */
const tokenOf = (cp: TestControlPlane, account: string, pod: string | undefined, audience?: string): Promise<string> => accountToken(cp, NS, account, pod, audience);

interface Counts {
  authenticated: number;
  rejected: number;
  failed: number;
  hit: number;
  miss: number;
}

async function counts(metrics: CaMetrics): Promise<Counts> {
  const [reviews, cache] = await Promise.all([metrics.tokenReviews.get(), metrics.reviewCache.get()]);
  const of = (values: typeof reviews.values, result: string): number => values.find((v) => v.labels.result === result)?.value ?? 0;
  return {
    authenticated: of(reviews.values, 'authenticated'), rejected: of(reviews.values, 'rejected'), failed: of(reviews.values, 'failed'),
    hit: of(cache.values, 'hit'), miss: of(cache.values, 'miss'),
  };
}

/** `after` is `before` plus `delta`. */
function assertCounted(before: Counts, after: Counts, delta: Partial<Counts>, what: string): void {
  const expected = { ...before };
  for (const [k, v] of Object.entries(delta) as [keyof Counts, number][]) expected[k] += v;
  assert.deepEqual(after, expected, `${what}: TokenReview and cache counters`);
}

async function assertAccepted(auth: CallerAuthenticator, token: string, node: string, what: string): Promise<void> {
  const answer = await auth.authenticate(token);
  assert.deepEqual(answer, { node } satisfies Caller, `${what}: ${isRefusal(answer) ? `${answer.refused}: ${answer.message}` : ''}`);
}

/** The refusal's code, the server's answer for it (status and reason) and its message. */
function assertRefusal(answer: Caller | Refusal, code: RefusalCode, message: RegExp, what: string): void {
  assert.ok(isRefusal(answer), `${what}: accepted as ${JSON.stringify(answer)}`);
  assert.equal(answer.refused, code, `${what}: ${answer.message}`);
  assert.match(answer.message, message, what);
  const err = refusalError(answer);
  assert.deepEqual({ status: err.status, reason: err.reason, message: err.message }, { status: REFUSAL_STATUS[code], reason: code, message: answer.message }, `${what}: the CA's answer`);
}

async function assertRefused(auth: CallerAuthenticator, token: string, code: RefusalCode, message: RegExp, what: string): Promise<void> {
  assertRefusal(await auth.authenticate(token), code, message, what);
}

/** Waits until the token is refused with `code` (the watch, or the API server, has caught up), then checks the message. */
async function assertRefusedSoon(auth: CallerAuthenticator, token: string, code: RefusalCode, message: RegExp, what: string): Promise<void> {
  const answer = await eventually(`${what} to be refused ${code}`, async () => {
    const a = await auth.authenticate(token);
    return isRefusal(a) && a.refused === code && message.test(a.message) ? a : false;
  });
  assertRefusal(answer, code, message, what);
}

test('the CA authenticates a ztunnel by its pod-bound ServiceAccount token and refuses every other', async (t) => {
  const cp = await startTestControlPlane(t, { crds: true });
  await kubectl(cp, ['apply', '-f', RBAC_FILE]);
  await apply(cp, node('node-1'), node('node-2'), serviceAccount(ZTUNNEL), serviceAccount(INTRUDER),
    pod('ztunnel-1', ZTUNNEL, 'node-1'), pod('ztunnel-2', ZTUNNEL, 'node-2'), pod('intruder-1', INTRUDER, 'node-1'));
  // The authorizer sees the new roles and bindings through its informers, a moment after the apply.
  for (const [verb, resource] of [['create', 'tokenreviews.authentication.k8s.io'], ['list', 'pods']] as const) {
    await eventually(`RBAC to let meshlet-ca ${verb} ${resource}`, async () => (await cp.kubectl(['auth', 'can-i', verb, resource, `--as=${user('meshlet-ca')}`])).stdout.trim() === 'yes');
  }
  const caKc = (await asServiceAccount(cp, 'meshlet-ca', NS)).kc;
  // What the CA will run: the pods its cluster source watches, the API server for any it does not hold yet.
  const pods = new WatchedPodLookup(new ApiPodLookup(caKc));
  const source = new KubeSource({ kubeconfig: caKc, kinds: CA_KINDS, log: silentLogger });
  t.after(() => source.stop());
  await source.start((update) => pods.update(update.objects));
  const metrics = new CaMetrics();
  // The API server's Gateways, each read recorded: the cheap checks come first, and a refusal they make reads none.
  const gatewayReads: string[] = [];
  const api = new ApiGatewayLookup(caKc);
  const gateways: GatewayLookup = { find: (namespace, name) => (gatewayReads.push(`${namespace}/${name}`), api.find(namespace, name)) };
  const auth = new TokenReviewAuthenticator({ kubeconfig: caKc, pods, gateways, metrics });
  const ztunnel1 = await tokenOf(cp, ZTUNNEL, 'ztunnel-1');

  await t.test('a ztunnel pod\'s token is its node\'s, reviewed once and then taken from the cache', async () => {
    const before = await counts(metrics);
    await assertAccepted(auth, ztunnel1, 'node-1', 'ztunnel-1\'s token');
    assertCounted(before, await counts(metrics), { authenticated: 1, miss: 1 }, 'the first use');
    await assertAccepted(auth, ztunnel1, 'node-1', 'ztunnel-1\'s token again');
    assertCounted(before, await counts(metrics), { authenticated: 1, miss: 1, hit: 1 }, 'the second use');
    // The node is the one the token names and the pod runs on, not a claim of the caller's.
    await assertAccepted(auth, await tokenOf(cp, ZTUNNEL, 'ztunnel-2'), 'node-2', 'ztunnel-2\'s token');
  });

  await t.test('garbage and oversized tokens are refused without a TokenReview', async () => {
    const before = await counts(metrics);
    const [header, claims] = ztunnel1.split('.') as [string, string];
    for (const [what, token] of [
      ['a node token', 'token-one-0123456789abcdef'],
      ['two parts', `${header}.${claims}`],
      ['base64url that is not JSON', 'aaaa.bbbb.cccc'],
      ['a header without alg', `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.${claims}.sig`],
      ['not base64url', `${header}.${claims}.s/g+`],
    ] as const) {
      await assertRefused(auth, token, 'malformed-token', /is not a JWT .*send the ztunnel pod's projected ServiceAccount token \(audience meshlet-ca\)/, what);
    }
    const oversized = /more than the 8192 a ServiceAccount token can be; send the ztunnel pod's projected ServiceAccount token/;
    await assertRefused(auth, 'a'.repeat(1 << 20), 'malformed-token', oversized, 'a 1 MiB token');
    await assertRefused(auth, `${ztunnel1}${'A'.repeat(MAX_TOKEN_BYTES)}`, 'malformed-token', oversized, 'a valid token padded past the limit');
    assertCounted(before, await counts(metrics), {}, 'garbage and oversized tokens');
  });

  await t.test('a token for another audience is refused as such', async () => {
    const before = await counts(metrics);
    await assertRefused(auth, await tokenOf(cp, ZTUNNEL, 'ztunnel-1', 'vault'), 'wrong-audience',
      /for audience vault, not meshlet-ca; project the ztunnel's ServiceAccount token with audience meshlet-ca/, 'audience vault');
    await assertRefused(auth, (await kubectl(cp, ['create', 'token', ZTUNNEL, '-n', NS])).trim(), 'wrong-audience',
      /for audience https:\/\/kubernetes\.default\.svc\.cluster\.local, not meshlet-ca/, 'the API server\'s own audience');
    assertCounted(before, await counts(metrics), { rejected: 2, miss: 2 }, 'two wrong audiences');
  });

  await t.test('a token of another ServiceAccount is not a node account\'s', async () => {
    const intruder = await tokenOf(cp, INTRUDER, 'intruder-1');
    const notNode = (account: string, allowed = ZTUNNEL) => new RegExp(`of ${user(account)}, which is not a meshlet node account \\(${user(allowed)}\\); .*check the DaemonSet's serviceAccountName`);
    await assertRefused(auth, intruder, 'not-a-node-account', notNode(INTRUDER), 'a pod-bound token of another account');
    await assertRefused(auth, await tokenOf(cp, 'meshlet-ca', undefined), 'not-a-node-account', notNode('meshlet-ca'), 'the CA\'s own account');
    // The node accounts are the CA's setting.
    const other = new TokenReviewAuthenticator({ kubeconfig: caKc, pods, metrics: new CaMetrics(), nodeAccounts: [user(INTRUDER)] });
    await assertAccepted(other, intruder, 'node-1', 'the intruder token where its account is a node account');
    await assertRefused(other, ztunnel1, 'not-a-node-account', notNode(ZTUNNEL, INTRUDER), 'the ztunnel token where its account is not');
  });

  await t.test('a node account\'s token bound to no pod is refused', async () => {
    await assertRefused(auth, await tokenOf(cp, ZTUNNEL, undefined), 'not-pod-bound',
      new RegExp(`the token of ${user(ZTUNNEL)} is not bound to a pod on a node \\(the review has no authentication\\.kubernetes\\.io/pod-name, authentication\\.kubernetes\\.io/pod-uid, authentication\\.kubernetes\\.io/node-name\\); send the token the kubelet projects`),
      'a token made without --bound-object-kind Pod');
  });

  await t.test('an expired token is refused with the API server\'s reason', async () => {
    const now = Math.floor(Date.now() / 1000);
    // The same claims signed with the same key, so only the expiry can be what the API server objects to.
    await assertAccepted(auth, await mint(cp, ztunnel1, { iat: now, nbf: now, exp: now + 600 }), 'node-1', 'a minted token that is still valid');
    const before = await counts(metrics);
    await assertRefused(auth, await mint(cp, ztunnel1, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), 'invalid-token',
      /the API server did not authenticate the token: .*expired.*; it may be expired, revoked \(its pod deleted\) or from another cluster/, 'a token expired an hour ago');
    assertCounted(before, await counts(metrics), { rejected: 1, miss: 1 }, 'the expired token');
  });

  await t.test('a token whose pod was deleted is refused: by the pod check once reviewed, by the TokenReview if not', async () => {
    await apply(cp, pod('ztunnel-gone', ZTUNNEL, 'node-1'));
    const reviewed = await tokenOf(cp, ZTUNNEL, 'ztunnel-gone');
    const fresh = await tokenOf(cp, ZTUNNEL, 'ztunnel-gone');
    await assertAccepted(auth, reviewed, 'node-1', 'the token before its pod is deleted');
    await forceDelete(cp, 'ztunnel-gone');
    // Its review is cached here, and the API server's own token cache passes it for a while too (even once a new
    // pod of the same name exists): the pod check is what refuses it. A token it has not reviewed it refuses at once.
    await assertRefusedSoon(auth, reviewed, 'pod-not-on-node', /bound to pod meshlet-system\/ztunnel-gone on node node-1, but that pod no longer exists/, 'the reviewed token');
    await assertRefusedSoon(auth, fresh, 'invalid-token', /the API server did not authenticate the token: .*service account token has been invalidated/, 'a token of the deleted pod never reviewed before');
  });

  await t.test('a token whose pod was recreated on another node is refused', async () => {
    await apply(cp, pod('ztunnel-moved', ZTUNNEL, 'node-1'));
    const token = await tokenOf(cp, ZTUNNEL, 'ztunnel-moved');
    await assertAccepted(auth, token, 'node-1', 'the token before its pod moves');
    await forceDelete(cp, 'ztunnel-moved');
    await apply(cp, pod('ztunnel-moved', ZTUNNEL, 'node-2'));
    await assertRefusedSoon(auth, token, 'pod-not-on-node', /bound to pod meshlet-system\/ztunnel-moved on node node-1, but that pod was recreated \(uid .*\): restart the ztunnel/, 'the old pod\'s token');
    await assertAccepted(auth, await tokenOf(cp, ZTUNNEL, 'ztunnel-moved'), 'node-2', 'the new pod\'s token');
  });

  await t.test('a token whose pod is terminating is refused', async () => {
    // The finalizer holds the pod in its terminating state.
    await apply(cp, pod('ztunnel-ending', ZTUNNEL, 'node-1', ['meshlet.test/hold']));
    const token = await tokenOf(cp, ZTUNNEL, 'ztunnel-ending');
    await assertAccepted(auth, token, 'node-1', 'the token before its pod terminates');
    await kubectl(cp, ['-n', NS, 'delete', 'pod', 'ztunnel-ending', '--wait=false']);
    const terminating = /bound to pod meshlet-system\/ztunnel-ending on node node-1, but that pod is terminating since \S+; a ztunnel gets certificates only while its own pod runs on its node/;
    await assertRefusedSoon(auth, token, 'pod-not-on-node', terminating, 'the terminating pod\'s token');
    // Read from the API server, as for a pod the watch does not hold yet: the same answers.
    const unwatched = new TokenReviewAuthenticator({ kubeconfig: caKc, pods: new WatchedPodLookup(new ApiPodLookup(caKc)), metrics: new CaMetrics() });
    await assertRefused(unwatched, token, 'pod-not-on-node', terminating, 'the terminating pod\'s token, its pod read from the API server');
    await assertAccepted(unwatched, ztunnel1, 'node-1', 'ztunnel-1\'s token, its pod read from the API server');
  });

  await t.test('a waypoint pod\'s token is that waypoint\'s, for its own identity; no other pod\'s token is a waypoint\'s', async () => {
    await apply(cp, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: APPS } }, ...[WAYPOINT, 'fake', 'other'].map(appAccount),
      gatewayOf(WAYPOINT, 'meshlet-waypoint'),
      appPod('waypoint-1', WAYPOINT, waypointLabels(WAYPOINT)),
      appPod('plain-1', WAYPOINT, { app: 'plain' }),
      appPod('fake-1', 'fake', waypointLabels('fake')),
      appPod('other-1', 'other', waypointLabels(WAYPOINT)));
    const appToken = (account: string, pod: string | undefined) => accountToken(cp, APPS, account, pod);
    const notWaypoint = (account: string, why: RegExp) => new RegExp(`of system:serviceaccount:${APPS}:${account}, which is not a meshlet node account \\(${user(ZTUNNEL)}\\); nor is it a waypoint's: ${why.source}`);

    const waypoint1 = await appToken(WAYPOINT, 'waypoint-1');
    const accepted = await auth.authenticate(waypoint1);
    assert.deepEqual(accepted, { waypoint: { namespace: APPS, serviceAccount: WAYPOINT, pod: 'waypoint-1' } } satisfies Caller, isRefusal(accepted) ? accepted.message : '');
    assert.deepEqual(gatewayReads, [`${APPS}/${WAYPOINT}`], 'its Gateway is read');

    gatewayReads.length = 0;
    await assertRefused(auth, await appToken(WAYPOINT, undefined), 'not-a-node-account',
      notWaypoint(WAYPOINT, /the token is bound to no pod \(the review has no authentication\.kubernetes\.io\/pod-name and authentication\.kubernetes\.io\/pod-uid\)/), 'the waypoint\'s account\'s token bound to no pod');
    await assertRefused(auth, await appToken(WAYPOINT, 'plain-1'), 'not-a-node-account',
      notWaypoint(WAYPOINT, /its pod demo\/plain-1 is not a waypoint's: it lacks the labels gateway\.networking\.k8s\.io\/gateway-name=waypoint and gateway\.istio\.io\/managed=meshlet\.dev-waypoint-controller/),
      'a pod of the waypoint\'s account without the controller\'s labels');
    await assertRefused(auth, await appToken('other', 'other-1'), 'not-a-node-account',
      notWaypoint('other', /its pod demo\/other-1 is not a waypoint's: it lacks the labels gateway\.networking\.k8s\.io\/gateway-name=other/),
      'a pod labelled as the waypoint\'s, under another account');
    assert.deepEqual(gatewayReads, [], 'no Gateway is read for a token bound to no pod, or to a pod that is no waypoint\'s');

    // Labelled by hand, under an account no waypoint Gateway names: refused, and so under a Gateway of a class meshlet does not serve.
    const fake = await appToken('fake', 'fake-1');
    await assertRefused(auth, fake, 'not-a-node-account',
      notWaypoint('fake', /its pod demo\/fake-1 carries the waypoint labels, but there is no Gateway demo\/fake of class istio-waypoint or meshlet-waypoint; .*labelling a pod by hand does not make it one/),
      'a labelled pod whose account no Gateway names');
    await apply(cp, gatewayOf('fake', 'someone-elses'));
    await assertRefused(auth, fake, 'not-a-node-account', notWaypoint('fake', /its pod demo\/fake-1 carries the waypoint labels, but Gateway demo\/fake has class "someone-elses", not istio-waypoint or meshlet-waypoint/), 'a Gateway of another class');
  });

  await t.test('a waypoint pod\'s token is refused once its pod terminates or its Gateway is deleted', async () => {
    await apply(cp, appPod('waypoint-ending', WAYPOINT, waypointLabels(WAYPOINT), ['meshlet.test/hold']));
    const ending = await accountToken(cp, APPS, WAYPOINT, 'waypoint-ending');
    assert.ok(!isRefusal(await auth.authenticate(ending)), 'the token before its pod terminates');
    await kubectl(cp, ['-n', APPS, 'delete', 'pod', 'waypoint-ending', '--wait=false']);
    await assertRefusedSoon(auth, ending, 'pod-not-on-node', /bound to pod demo\/waypoint-ending, but that pod is terminating since \S+; a waypoint gets certificates only while its own pod runs/, 'the terminating waypoint pod\'s token');

    const waypoint1 = await accountToken(cp, APPS, WAYPOINT, 'waypoint-1');
    assert.ok(!isRefusal(await auth.authenticate(waypoint1)), 'the token while its Gateway exists');
    await kubectl(cp, ['-n', APPS, 'delete', 'gateway.gateway.networking.k8s.io', WAYPOINT]);
    await assertRefused(auth, waypoint1, 'not-a-node-account', /its pod demo\/waypoint-1 carries the waypoint labels, but there is no Gateway demo\/waypoint/, 'the token once its Gateway is deleted');
  });

  await t.test('a CA that may not review tokens says so, and caches nothing', async () => {
    const metricsOf = new CaMetrics();
    const agentKc = (await asServiceAccount(cp, 'meshlet-agent', NS)).kc;
    const unauthorized = new TokenReviewAuthenticator({ kubeconfig: agentKc, pods, metrics: metricsOf });
    for (let i = 0; i < 2; i++) {
      await assertRefused(unauthorized, ztunnel1, 'review-unavailable',
        /could not review the token with the API server \(POST \/apis\/authentication\.k8s\.io\/v1\/tokenreviews: HTTP 403: .*meshlet-agent.*\); check .* may create tokenreviews \(ClusterRole meshlet-ca\)/, `attempt ${i + 1}`);
    }
    assertCounted(await counts(new CaMetrics()), await counts(metricsOf), { failed: 2, miss: 2 }, 'two refused reviews');
  });
});

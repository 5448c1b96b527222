// The TokenReview authenticator's bounds, against a stand-in API server on
// loopback: a token the API server rejected is refused again without a
// review for a short while (by hash, in a bounded cache), a review that
// failed is not held, and at most maxReviewsInFlight reviews run at once, a
// caller beyond that refused at once (503 reviews-busy, retry-after).
// test/kube/ca-token-review.test.ts runs it against a real API server.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { isRefusal, refusalError, type Caller, type Refusal } from '../../ca/caller.ts';
import type { PodLookup } from '../../ca/caller-pods.ts';
import { CaMetrics } from '../../ca/metrics.ts';
import { TokenReviewAuthenticator, type TokenReviewOptions } from '../../ca/token-review.ts';
import { ManualClock } from '../support/manual-clock.ts';

const START = 1_700_000_000_000;
const NODE_ACCOUNT = 'system:serviceaccount:meshlet-system:meshlet-ztunnel';

/** A JWT-shaped token (the API server, not the CA, checks its signature). */
const jwt = (subject: string): string =>
  [{ alg: 'RS256' }, { sub: subject, aud: ['meshlet-ca'], exp: Math.floor(START / 1000) + 3600 }].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.') + '.c2ln';

const GOOD = jwt('ztunnel-1');

/** Every caller's pod is ztunnel-1, running on node-1. */
const pods: PodLookup = { find: async () => ({ uid: 'uid-1', nodeName: 'node-1', serviceAccount: 'meshlet-ztunnel', terminated: undefined }) };

/** Answers TokenReviews: GOOD authenticates as ztunnel-1's token, every other token is rejected; `failing` answers 500. Can hold answers back. */
async function apiServer(t: TestContext) {
  const reviewed: string[] = [];
  let held: (() => void)[] | undefined;
  let onPending: (() => void) | undefined;
  const state = { failing: false };
  const answer = (res: ServerResponse, token: string): void => {
    if (state.failing) {
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', message: 'etcd is down' }));
      return;
    }
    const status = token === GOOD
      ? {
        authenticated: true, audiences: ['meshlet-ca'],
        user: {
          username: NODE_ACCOUNT,
          extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-1'], 'authentication.kubernetes.io/pod-uid': ['uid-1'], 'authentication.kubernetes.io/node-name': ['node-1'] },
        },
      }
      : { authenticated: false, error: 'invalid bearer token' };
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'TokenReview', status }));
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const token = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { spec: { token: string } }).spec.token;
      reviewed.push(token);
      if (held === undefined) return answer(res, token);
      held.push(() => answer(res, token));
      onPending?.();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromOptions({
    // Plain HTTP on loopback: the client library takes it only with TLS verification off.
    clusters: [{ name: 'test', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'meshlet-ca', token: 'the-ca-token' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'meshlet-ca' }],
    currentContext: 'test',
  });
  return {
    kubeconfig, reviewed, state,
    /** From now on reviews wait for release(). */
    hold: (): void => void (held = []),
    /** Settles once `n` reviews are waiting. */
    pending: (n: number): Promise<void> => new Promise((resolve) => {
      const check = (): void => void ((held?.length ?? 0) >= n && resolve());
      onPending = check;
      check();
    }),
    release: (): void => {
      const waiting = held ?? [];
      held = undefined;
      for (const send of waiting) send();
    },
  };
}

async function authenticator(t: TestContext, options: Partial<TokenReviewOptions> = {}) {
  const api = await apiServer(t);
  const clock = new ManualClock(START);
  const metrics = new CaMetrics();
  const auth = new TokenReviewAuthenticator({ kubeconfig: api.kubeconfig, pods, metrics, now: clock.now, ...options });
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
    return metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
  };
  return { api, clock, auth, value };
}

const refusedAs = (answer: Caller | Refusal): string => (isRefusal(answer) ? answer.refused : `accepted for ${answer.node}`);

test('a token the API server rejected is refused again without a TokenReview until its entry ages out', async (t) => {
  const { api, clock, auth, value } = await authenticator(t);
  const bad = jwt('someone');
  const first = await auth.authenticate(bad);
  assert.equal(refusedAs(first), 'invalid-token');
  assert.deepEqual(await auth.authenticate(bad), first, 'the same answer');
  assert.equal(api.reviewed.length, 1, 'one TokenReview for both');
  assert.deepEqual([await value('meshlet_ca_token_rejection_cache_total', { result: 'hit' }), await value('meshlet_ca_token_rejection_cache_total', { result: 'miss' })], [1, 1]);
  assert.equal(await value('meshlet_ca_token_rejection_cache_entries'), 1);

  clock.advance(9_999);
  await auth.authenticate(bad);
  assert.equal(api.reviewed.length, 1);
  clock.advance(1);
  assert.equal(refusedAs(await auth.authenticate(bad)), 'invalid-token');
  assert.equal(api.reviewed.length, 2, 'asked again after 10 s');

  // A good token is not held back by another's rejection.
  assert.equal(refusedAs(await auth.authenticate(GOOD)), 'accepted for node-1');
});

test('the rejection cache is bounded, and a review that failed is not held', async (t) => {
  const { api, auth, value } = await authenticator(t, { rejectedCache: { maxEntries: 2 } });
  const [a, b, c] = ['a', 'b', 'c'].map(jwt) as [string, string, string];
  for (const token of [a, b, c]) await auth.authenticate(token);
  assert.equal(await value('meshlet_ca_token_rejection_cache_entries'), 2);
  await auth.authenticate(c);
  assert.equal(api.reviewed.length, 3, 'c is held');
  await auth.authenticate(a);
  assert.equal(api.reviewed.length, 4, 'a, the oldest, made room for c');

  api.state.failing = true;
  const down = jwt('while the API server fails');
  for (let i = 0; i < 2; i++) assert.equal(refusedAs(await auth.authenticate(down)), 'review-unavailable');
  assert.equal(api.reviewed.length, 6, 'the CA could not decide, so it asks again');
});

test('at most maxReviewsInFlight TokenReviews at once; a caller beyond is refused at once, 503 reviews-busy with retry-after', async (t) => {
  const { api, auth, value } = await authenticator(t, { maxReviewsInFlight: 2 });
  api.hold();
  const waiting = [auth.authenticate(GOOD), auth.authenticate(jwt('slow'))];
  await api.pending(2);
  assert.equal(await value('meshlet_ca_token_reviews_in_flight'), 2);

  const busy = await auth.authenticate(jwt('third'));
  assert.ok(isRefusal(busy));
  assert.equal(busy.refused, 'reviews-busy');
  assert.match(busy.message, /already waiting on the API server for 2 TokenReviews, as many as it runs at once; retry in 1 s/);
  const err = refusalError(busy);
  assert.deepEqual([err.status, err.reason, err.headers], [503, 'reviews-busy', { 'retry-after': '1' }]);
  assert.equal(api.reviewed.length, 2, 'no review started for it');
  assert.equal(await value('meshlet_ca_token_reviews_busy_total'), 1);
  api.release();
  assert.deepEqual((await Promise.all(waiting)).map(refusedAs), ['accepted for node-1', 'invalid-token']);
  assert.equal(await value('meshlet_ca_token_reviews_in_flight'), 0);
  api.hold();
  const again = [auth.authenticate(jwt('fourth')), auth.authenticate(jwt('fifth'))];
  await api.pending(2);
  assert.equal(refusedAs(await auth.authenticate(GOOD)), 'accepted for node-1', 'from the cache, while every slot is taken');
  assert.equal(refusedAs(await auth.authenticate(jwt('slow'))), 'invalid-token', 'a rejection held needs no slot either');
  api.release();
  assert.deepEqual((await Promise.all(again)).map(refusedAs), ['invalid-token', 'invalid-token']);
});

test('maxReviewsInFlight must be a positive integer', async (t) => {
  const api = await apiServer(t);
  for (const maxReviewsInFlight of [0, 1.5]) {
    assert.throws(() => new TokenReviewAuthenticator({ kubeconfig: api.kubeconfig, pods, metrics: new CaMetrics(), maxReviewsInFlight }), { code: 'MESHLET_CONFIG' });
  }
});

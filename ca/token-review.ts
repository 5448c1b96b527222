// Callers authenticated by the Kubernetes API: each ztunnel sends its pod's
// projected ServiceAccount token (audience meshlet-ca), and the CA accepts it
// for node N only when, in this order (cheapest first, stopping at the first
// failure):
//   1. it is a JWT of bounded size (no network call for garbage);
//   2. the API server's TokenReview authenticates it for the CA's audience;
//   3. its user is a meshlet node account (the ztunnel's ServiceAccount);
//   4. it is bound to a pod and names that pod's node N (Kubernetes puts
//      both in a pod-bound token's user.extra);
//   5. that pod still exists as the same pod (UID), is not terminating, and
//      runs on N: a token outlives its pod by up to the API server's own
//      cache, and the CA's review cache, so this is checked on every call.
// A token whose user is not a node account (step 3) may still be a waypoint
// pod's, for its own identity alone: bound to a pod (no network call when it
// is not), then waypoint-callers.ts's checks, which say why that is safe.
// Successful reviews (step 2) are cached by token hash; steps 3-5 run every time.
// So that callers without a good token cannot make the CA ask the API server
// once per request: tokens the API server rejected are refused again without
// a review for a short while (also by hash, also bounded), and at most
// maxReviewsInFlight reviews run at once; a caller beyond that is refused at
// once (503 reviews-busy, retry-after) rather than queued.
import type { KubeConfig } from '@kubernetes/client-node';
import { ConfigError } from '../lib/core/errors.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { describeError } from '../lib/cluster/sources/kube-client.ts';
import { DEFAULT_NODE_ACCOUNT, DEFAULT_TOKEN_AUDIENCE } from '../lib/config/ca.ts';
import { expectOk, kubeRequest } from '../lib/cluster/kube-api.ts';
import { refusal, type Caller, type CallerAuthenticator, type Refusal } from './caller.ts';
import type { PodLookup, PodPlacement } from './caller-pods.ts';
import type { CaMetrics } from './metrics.ts';
import { DEFAULT_REJECTED_CACHE, DEFAULT_REVIEW_CACHE, ReviewCache, type ReviewCacheOptions } from './review-cache.ts';
import { ApiGatewayLookup, isNotAWaypoint, WaypointCallers, type GatewayLookup } from './waypoint-callers.ts';

/** The ztunnel DaemonSet's ServiceAccount (daemonset/rbac.yaml). */
export const DEFAULT_NODE_ACCOUNTS: readonly string[] = [DEFAULT_NODE_ACCOUNT];
/** A projected ServiceAccount token is about 1.2 KB of ASCII; anything longer is not one, and is refused unread. */
export const MAX_TOKEN_BYTES = 8192;
/**
 * TokenReviews in flight at once. A ztunnel's token is reviewed once per
 * cache age, so even a whole cluster's ztunnels starting together wait only
 * moments; a flood of unknown tokens gets no more of the API server than this.
 */
export const DEFAULT_MAX_REVIEWS_IN_FLIGHT = 32;
/** What a caller refused for want of a free review slot is told to wait. */
const BUSY_RETRY_SECONDS = 1;

const REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';

export interface TokenReviewOptions {
  /** The CA's own credentials: its ServiceAccount may create tokenreviews and list pods. */
  kubeconfig: KubeConfig;
  pods: PodLookup;
  /** Waypoint Gateways, for the waypoint callers' check; default the API server's, on `kubeconfig`. */
  gateways?: GatewayLookup;
  metrics: CaMetrics;
  audience?: string;
  /** Usernames ("system:serviceaccount:<namespace>:<name>") whose tokens may request certificates. */
  nodeAccounts?: readonly string[];
  cache?: Partial<Omit<ReviewCacheOptions, 'now'>>;
  /** Tokens the API server rejected, refused again without a review while held. */
  rejectedCache?: Partial<Omit<ReviewCacheOptions, 'now'>>;
  /** TokenReviews at once (default DEFAULT_MAX_REVIEWS_IN_FLIGHT); a caller beyond is refused reviews-busy. */
  maxReviewsInFlight?: number;
  reviewTimeoutMs?: number;
  now?: () => number;
}

/** What a successful TokenReview said of the token's user. */
interface ReviewedUser {
  username: string;
  extra: Record<string, readonly string[]>;
}

type Review = { authenticated: true; audiences: string[]; user: ReviewedUser } | { authenticated: false; error: string };

export class TokenReviewAuthenticator implements CallerAuthenticator {
  readonly #o: TokenReviewOptions;
  readonly #audience: string;
  readonly #accounts: ReadonlySet<string>;
  readonly #cache: ReviewCache<ReviewedUser>;
  readonly #rejected: ReviewCache<Refusal>;
  readonly #maxInFlight: number;
  readonly #waypoints: WaypointCallers;
  #inFlight = 0;

  constructor(options: TokenReviewOptions) {
    const accounts = options.nodeAccounts ?? DEFAULT_NODE_ACCOUNTS;
    const bad = accounts.filter((a) => !SERVICE_ACCOUNT_USER.test(a));
    if (accounts.length === 0 || bad.length > 0) {
      throw new ConfigError(`node accounts (--node-account) must be one or more "system:serviceaccount:<namespace>:<name>"; got ${JSON.stringify(accounts)}`);
    }
    this.#o = options;
    this.#audience = options.audience ?? DEFAULT_TOKEN_AUDIENCE;
    this.#accounts = new Set(accounts);
    this.#cache = new ReviewCache({ ...DEFAULT_REVIEW_CACHE, ...options.cache, now: options.now ?? Date.now });
    this.#rejected = new ReviewCache({ ...DEFAULT_REJECTED_CACHE, ...options.rejectedCache, now: options.now ?? Date.now });
    this.#maxInFlight = options.maxReviewsInFlight ?? DEFAULT_MAX_REVIEWS_IN_FLIGHT;
    this.#waypoints = new WaypointCallers(options.pods, options.gateways ?? new ApiGatewayLookup(options.kubeconfig));
    if (!Number.isSafeInteger(this.#maxInFlight) || this.#maxInFlight < 1) throw new ConfigError(`the TokenReviews the CA runs at once (maxReviewsInFlight) must be a positive whole number, got ${this.#maxInFlight}`);
  }

  async authenticate(bearer: string): Promise<Caller | Refusal> {
    if (bearer.length > MAX_TOKEN_BYTES) {
      return refusal('malformed-token', `the bearer token is ${bearer.length} characters long, more than the ${MAX_TOKEN_BYTES} a ServiceAccount token can be; send the ztunnel pod's projected ServiceAccount token (audience ${this.#audience})`);
    }
    const claims = unverifiedClaims(bearer);
    if (claims === undefined) {
      return refusal('malformed-token', `the bearer token is not a JWT (three base64url parts, a JSON header and claims); send the ztunnel pod's projected ServiceAccount token (audience ${this.#audience}), not a node token`);
    }
    const reviewed = await this.#reviewed(bearer, claims);
    if ('refused' in reviewed) return reviewed;
    const { username, extra } = reviewed;
    const [, namespace, account] = SERVICE_ACCOUNT_USER.exec(username) ?? [];
    if (namespace === undefined || account === undefined) return this.#notNodeAccount(username, 'it is not a ServiceAccount\'s token');
    if (!this.#accounts.has(username)) return this.#asWaypoint(username, namespace, account, extra);
    const podName = single(extra, EXTRA_POD_NAME);
    const podUid = single(extra, EXTRA_POD_UID);
    const node = single(extra, EXTRA_NODE_NAME);
    if (podName === undefined || podUid === undefined || node === undefined) {
      const missing = [[EXTRA_POD_NAME, podName], [EXTRA_POD_UID, podUid], [EXTRA_NODE_NAME, node]].filter(([, v]) => v === undefined).map(([k]) => k);
      return refusal('not-pod-bound', `the token of ${username} is not bound to a pod on a node (the review has no ${missing.join(', ')}); send the token the kubelet projects into the ztunnel pod (a serviceAccountToken volume), not one made without --bound-object-kind Pod or a Secret's token`);
    }
    return this.#onNode(namespace, podName, podUid, node);
  }

  /** A token of an account that is not a node account: a waypoint pod's, for its own identity, or refused. */
  async #asWaypoint(username: string, namespace: string, serviceAccount: string, extra: Record<string, readonly string[]>): Promise<Caller | Refusal> {
    const podName = single(extra, EXTRA_POD_NAME);
    const podUid = single(extra, EXTRA_POD_UID);
    if (podName === undefined || podUid === undefined) {
      return this.#notNodeAccount(username, `the token is bound to no pod (the review has no ${EXTRA_POD_NAME} and ${EXTRA_POD_UID}), and a waypoint presents the token the kubelet projects into its pod`);
    }
    const answer = await this.#waypoints.authenticate({ namespace, serviceAccount, podName, podUid });
    return isNotAWaypoint(answer) ? this.#notNodeAccount(username, answer.notWaypoint) : answer;
  }

  #notNodeAccount(username: string, notWaypoint: string): Refusal {
    return refusal('not-a-node-account', `the token is of ${username || 'an unnamed user'}, which is not a meshlet node account (${[...this.#accounts].join(', ')}); nor is it a waypoint's: ${notWaypoint}; only the ztunnel's ServiceAccount may request certificates for its node's pods, and a waypoint pod the waypoint controller deployed for its own identity: check the DaemonSet's serviceAccountName and the CA's node accounts, or the waypoint's Gateway and pod`);
  }

  /** The reviewed user, from the caches or the API server. */
  async #reviewed(bearer: string, claims: Record<string, unknown>): Promise<ReviewedUser | Refusal> {
    const metrics = this.#o.metrics;
    const cached = this.#cache.get(bearer);
    metrics.reviewCache.inc({ result: cached === undefined ? 'miss' : 'hit' });
    if (cached !== undefined) return cached;
    const rejected = this.#rejected.get(bearer);
    metrics.rejectedCache.inc({ result: rejected === undefined ? 'miss' : 'hit' });
    metrics.rejectedCacheEntries.set(this.#rejected.size);
    if (rejected !== undefined) return rejected;
    if (this.#inFlight >= this.#maxInFlight) {
      metrics.reviewsBusy.inc();
      return refusal('reviews-busy', `the CA is already waiting on the API server for ${this.#inFlight} TokenReviews, as many as it runs at once; retry in ${BUSY_RETRY_SECONDS} s (many callers with new or unknown tokens at once: check the CA's log for refused tokens and the API server's latency)`, BUSY_RETRY_SECONDS);
    }
    let review: Review;
    metrics.reviewsInFlight.set(++this.#inFlight);
    try {
      review = await this.#review(bearer);
    } catch (err) {
      metrics.tokenReviews.inc({ result: 'failed' });
      // Not held: the CA could not decide, so the next call asks again.
      return refusal('review-unavailable', `the CA could not review the token with the API server (${describeError(err)}); check the CA's connection to the API server and that its ServiceAccount may create tokenreviews (ClusterRole meshlet-ca)`);
    } finally {
      metrics.reviewsInFlight.set(--this.#inFlight);
    }
    metrics.tokenReviews.inc({ result: review.authenticated ? 'authenticated' : 'rejected' });
    if (!review.authenticated) {
      // The API server folds a wrong audience into "invalid bearer token"; the claims tell which it is.
      const audiences = audiencesOf(claims.aud);
      return this.#hold(bearer, !audiences.includes(this.#audience) ? this.#wrongAudience(audiences)
        : refusal('invalid-token', `the API server did not authenticate the token: ${review.error}; it may be expired, revoked (its pod deleted) or from another cluster: check that the ztunnel sends the token file the kubelet keeps fresh`));
    }
    if (!review.audiences.includes(this.#audience)) return this.#hold(bearer, this.#wrongAudience(review.audiences));
    // Authenticated, so the claims are the API server's own: their expiry bounds the cache entry.
    this.#cache.set(bearer, review.user, typeof claims.exp === 'number' ? claims.exp * 1000 : 0);
    return review.user;
  }

  /** Holds the API server's rejection of this token for a while: asking again would get the same answer. */
  #hold(bearer: string, rejection: Refusal): Refusal {
    this.#rejected.set(bearer, rejection, Number.POSITIVE_INFINITY);
    this.#o.metrics.rejectedCacheEntries.set(this.#rejected.size);
    return rejection;
  }

  #wrongAudience(audiences: readonly string[]): Refusal {
    return refusal('wrong-audience', `the token is for audience ${audiences.length === 0 ? '(none)' : audiences.join(', ')}, not ${this.#audience}; project the ztunnel's ServiceAccount token with audience ${this.#audience} (serviceAccountToken.audience in the DaemonSet)`);
  }

  async #onNode(namespace: string, podName: string, podUid: string, node: string): Promise<Caller | Refusal> {
    const pod = `${namespace}/${podName}`;
    let found: PodPlacement | undefined;
    try {
      found = await this.#o.pods.find(namespace, podName, podUid);
    } catch (err) {
      return refusal('review-unavailable', `the CA could not read pod ${pod} from the API server (${describeError(err)}); check the CA's connection to the API server and that its ServiceAccount may list pods (ClusterRole meshlet-ca)`);
    }
    const refuse = (why: string) => refusal('pod-not-on-node', `the token is bound to pod ${pod} on node ${node}, but ${why}; a ztunnel gets certificates only while its own pod runs on its node`);
    if (found === undefined) return refuse('that pod no longer exists');
    if (found.uid !== podUid) return refuse(`that pod was recreated (uid ${found.uid}, the token's is ${podUid}): restart the ztunnel so it reads its new pod's token`);
    if (found.terminated !== undefined) return refuse(`that pod is ${found.terminated}`);
    if (found.nodeName !== node) return refuse(`that pod ${found.nodeName === undefined ? 'is not scheduled' : `runs on node ${found.nodeName}`}`);
    return { node };
  }

  async #review(token: string): Promise<Review> {
    const answer = await kubeRequest(this.#o.kubeconfig, 'POST', REVIEW_PATH, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.#audience] },
    }, this.#o.reviewTimeoutMs);
    const body = expectOk('POST', REVIEW_PATH, answer);
    const status = isRecord(body) && isRecord(body.status) ? body.status : {};
    if (status.authenticated !== true) {
      return { authenticated: false, error: typeof status.error === 'string' && status.error !== '' ? status.error : 'no reason given' };
    }
    const user = isRecord(status.user) ? status.user : {};
    const extra: Record<string, readonly string[]> = {};
    if (isRecord(user.extra)) for (const [k, v] of Object.entries(user.extra)) extra[k] = strings(v);
    return { authenticated: true, audiences: strings(status.audiences), user: { username: typeof user.username === 'string' ? user.username : '', extra } };
  }
}

/** The claims of a JWT-shaped string, unverified (the API server verifies), or undefined when it is not one. */
function unverifiedClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p))) return undefined;
  const json = (part: string): unknown => {
    try {
      return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
  };
  const header = json(parts[0]!);
  const claims = json(parts[1]!);
  return isRecord(header) && typeof header.alg === 'string' && isRecord(claims) ? claims : undefined;
}

const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

/** A JWT's aud: one string or a list. */
const audiencesOf = (aud: unknown): string[] => (typeof aud === 'string' ? [aud] : strings(aud));

function single(extra: Record<string, readonly string[]>, key: string): string | undefined {
  const values = extra[key];
  return values?.length === 1 && values[0] !== '' ? values[0] : undefined;
}

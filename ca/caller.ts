// Who is calling the CA: the node a bearer token speaks for (a ztunnel), the
// waypoint pod it is (waypoint-callers.ts), or why the CA refuses it. The
// server takes any CallerAuthenticator: the Kubernetes TokenReview one
// (token-review.ts) in a mesh, doubles in unit tests.
import { SignRefusal } from './errors.ts';

/**
 * Each refusal's stable code (the `error` of the CA's answer and the `reason`
 * label of meshlet_ca_refusals_total) and its HTTP status: 401 when the token
 * itself is no good, 403 when it is good but may not request certificates,
 * 503 when the CA could not decide.
 */
export const REFUSAL_STATUS = {
  /** The request carries no bearer token. */
  'unauthenticated': 401,
  /** Not a JWT of bounded size: refused before any network call. */
  'malformed-token': 401,
  /** A valid token, but not for the CA's audience. */
  'wrong-audience': 401,
  /** The API server does not authenticate it: expired, revoked, or not its signature. */
  'invalid-token': 401,
  /** Authenticated, but neither as a meshlet node account nor as a waypoint pod the waypoint controller deployed. */
  'not-a-node-account': 403,
  /** A node account's token that names no pod or no node. */
  'not-pod-bound': 403,
  /** The token's pod is gone, recreated, terminating, or (a ztunnel's) not on the node the token names. */
  'pod-not-on-node': 403,
  /** A waypoint asking for an identity other than its own (its pod's namespace and ServiceAccount). */
  'not-own-identity': 403,
  /** The API server could not be asked (unreachable, or it refused the CA itself). */
  'review-unavailable': 503,
  /** As many TokenReviews as the CA runs at once are in flight: refused at once rather than queued; retry shortly. */
  'reviews-busy': 503,
} as const satisfies Record<string, 401 | 403 | 503>;

export type RefusalCode = keyof typeof REFUSAL_STATUS;

/** A ztunnel: the node whose ztunnel holds the token; it may hold the identities of that node's pods. */
export interface NodeCaller {
  node: string;
  waypoint?: undefined;
}

/** The pod a waypoint's token is bound to; it may hold `namespace`/`serviceAccount`, its own identity, and no other. */
export interface WaypointPod {
  namespace: string;
  serviceAccount: string;
  pod: string;
}

export interface WaypointCaller {
  waypoint: WaypointPod;
  node?: undefined;
}

/** An authenticated caller. */
export type Caller = NodeCaller | WaypointCaller;

export interface Refusal {
  refused: RefusalCode;
  /** What the operator should check. */
  message: string;
  /** When the caller may try again (the answer's retry-after); absent: no sooner than it would anyway. */
  retryAfterSeconds?: number;
}

export interface CallerAuthenticator {
  authenticate(bearer: string): Promise<Caller | Refusal>;
}

export const refusal = (refused: RefusalCode, message: string, retryAfterSeconds?: number): Refusal =>
  (retryAfterSeconds === undefined ? { refused, message } : { refused, message, retryAfterSeconds });

export const isRefusal = (answer: Caller | Refusal): answer is Refusal => 'refused' in answer;

/** The caller as logs and messages name it: "node node-1", "waypoint pod demo/waypoint-5d9f". */
export const callerName = (caller: Caller): string =>
  (caller.waypoint === undefined ? `node ${caller.node}` : `waypoint pod ${caller.waypoint.namespace}/${caller.waypoint.pod}`);

/**
 * The caller's signing-rate bucket: its node, or its waypoint's identity (shared
 * by its replicas, so the table grows with the waypoints, not with their pods).
 * Node names hold no space, so the two never meet.
 */
export const rateKey = (caller: Caller): string =>
  (caller.waypoint === undefined ? caller.node : `waypoint ${caller.waypoint.namespace}/${caller.waypoint.serviceAccount}`);

/** The log fields that name the caller. */
export const callerFields = (caller: Caller | undefined): Record<string, string | null> =>
  (caller?.waypoint === undefined ? { node: caller?.node ?? null } : { waypoint: `${caller.waypoint.namespace}/${caller.waypoint.pod}` });

/** The error the server answers a refusal with (and counts by its code). */
export const refusalError = (r: Refusal): SignRefusal =>
  new SignRefusal(REFUSAL_STATUS[r.refused], r.refused, r.message, r.retryAfterSeconds === undefined ? {} : { 'retry-after': String(r.retryAfterSeconds) });

// ServiceAccount tokens as the kubelet gets them for projected volumes: a
// TokenRequest with the node's own credentials (the Node authorizer lets a
// node ask for the ServiceAccount of a pod bound to it), bound to that pod so
// that the token dies with it, and refreshed at 80 % of its life as kubelet's
// token manager does: of the life asked for (an API server that extends
// tokens, as --service-account-extend-token-expiration does by default,
// still sees them refreshed on time), or of the life granted when shorter,
// and at least daily.
import type { CoreV1Api } from '@kubernetes/client-node';

/** The kubelet's default expirationSeconds for a projected token. */
export const DEFAULT_TOKEN_SECONDS = 3600;
const REFRESH_FRACTION = 0.8;
const MAX_REFRESH_MS = 24 * 3600 * 1000;

export interface BoundTokenRequest {
  namespace: string;
  serviceAccount: string;
  /** The pod the token is bound to. */
  pod: { name: string; uid: string };
  /** Unset or empty: the API server's own audiences. */
  audiences?: readonly string[];
  expirationSeconds?: number;
}

export interface BoundToken {
  token: string;
  /** When to ask for the next one (ms since the epoch). */
  refreshAt: number;
}

/** Asks the API server for a token bound to the pod; `now` is the caller's clock. */
export async function requestBoundToken(core: CoreV1Api, request: BoundTokenRequest, now: number): Promise<BoundToken> {
  const seconds = request.expirationSeconds ?? DEFAULT_TOKEN_SECONDS;
  const answer = await core.createNamespacedServiceAccountToken({
    namespace: request.namespace,
    name: request.serviceAccount,
    body: {
      spec: {
        audiences: [...(request.audiences ?? [])],
        expirationSeconds: seconds,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: request.pod.name, uid: request.pod.uid },
      },
    },
  });
  const token = answer.status?.token;
  if (!token) throw new Error(`the TokenRequest for ServiceAccount ${request.namespace}/${request.serviceAccount} was answered without a token`);
  const granted = answer.status?.expirationTimestamp ? new Date(answer.status.expirationTimestamp).getTime() - now : seconds * 1000;
  const lifeMs = Math.max(0, Math.min(seconds * 1000, granted));
  return { token, refreshAt: now + Math.min(lifeMs * REFRESH_FRACTION, MAX_REFRESH_MS) };
}

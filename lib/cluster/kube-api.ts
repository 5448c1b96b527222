// Single calls to the API server on a kubeconfig's credentials (the CA's:
// TokenReview, the root Secret, the waypoint controller's server-side applies
// and deletes; the agent's: its own DaemonSet at shutdown): a JSON request
// that answers with its status, so each caller decides what a 404 or 409
// means.
import type { KubeConfig } from '@kubernetes/client-node';
// Deep imports, not the package index (whose value import loads the generated API code, see sources/kube-client.ts).
import { HttpMethod, RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { fetch } from 'undici';
import { KubeApiError } from '../core/errors.ts';
import { isRecord } from './objects.ts';
import { describeError } from './sources/kube-client.ts';

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

export interface KubeAnswer {
  status: number;
  /** The parsed JSON body. */
  body: unknown;
}

/**
 * One request on the kubeconfig's credentials. Rejects with KubeApiError
 * status 0 when the API server could not be reached or did not answer JSON
 * in time; any HTTP status is an answer.
 */
export function kubeRequest(kc: KubeConfig, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<KubeAnswer> {
  return send(kc, method, path, body, 'application/json', timeoutMs);
}

/** Who applies, as server-side apply records it in managedFields. */
export interface ApplyOptions {
  fieldManager: string;
  /** Take over fields another manager set (a controller's own objects and status). */
  force: boolean;
  timeoutMs?: number;
}

/**
 * Server-side apply of `body` (a complete object as its manager wants it) at
 * `path` (an object or its status subresource); the answer holds the object
 * as the server stored it. Fields this manager applied before and omits now
 * are removed.
 */
export function kubeApply(kc: KubeConfig, path: string, body: unknown, options: ApplyOptions): Promise<KubeAnswer> {
  const query = new URLSearchParams({ fieldManager: options.fieldManager, ...(options.force ? { force: 'true' } : {}) });
  // JSON is YAML: the apply content type takes it as it is.
  return send(kc, 'PATCH', `${path}?${query}`, body, 'application/apply-patch+yaml', options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
}

/**
 * Deletes the object at `path` if it is still the one with `uid` (a
 * precondition: one of the same name made since is left alone, answered 409).
 */
export function kubeDelete(kc: KubeConfig, path: string, uid: string, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<KubeAnswer> {
  return send(kc, 'DELETE', path, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid } }, 'application/json', timeoutMs);
}

const METHODS = { GET: HttpMethod.GET, POST: HttpMethod.POST, PATCH: HttpMethod.PATCH, DELETE: HttpMethod.DELETE } as const;

async function send(kc: KubeConfig, method: keyof typeof METHODS, path: string, body: unknown, contentType: string, timeoutMs: number): Promise<KubeAnswer> {
  const server = kc.getCurrentCluster()?.server;
  if (server === undefined) throw new KubeApiError(0, 'the kubeconfig has no current cluster');
  const ctx = new RequestContext(server + path, METHODS[method]);
  await kc.applySecurityAuthentication(ctx);
  // The kubeconfig builds a dispatcher per call; close it after.
  const dispatcher = ctx.getDispatcher();
  try {
    let status: number;
    let text: string;
    try {
      const res = await fetch(server + path, {
        method, dispatcher, signal: AbortSignal.timeout(timeoutMs),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headers: { ...ctx.getHeaders(), accept: 'application/json', ...(body === undefined ? {} : { 'content-type': contentType }) },
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      throw new KubeApiError(0, `${method} ${path}: ${describeError(err)}`, { cause: err });
    }
    try {
      return { status, body: JSON.parse(text) as unknown };
    } catch {
      throw new KubeApiError(status, `${method} ${path}: HTTP ${status}: the answer is not JSON`);
    }
  } finally {
    await dispatcher?.destroy();
  }
}

/** The API server's own words for a failed request ("secrets \"x\" is forbidden: …"), or "". */
export function answerMessage(answer: KubeAnswer): string {
  return isRecord(answer.body) && typeof answer.body.message === 'string' ? answer.body.message : '';
}

/** The answer of a request that must succeed (200 or 201); anything else is a KubeApiError with the server's message. */
export function expectOk(method: string, path: string, answer: KubeAnswer): unknown {
  if (answer.status === 200 || answer.status === 201) return answer.body;
  const detail = answerMessage(answer);
  throw new KubeApiError(answer.status, `${method} ${path}: HTTP ${answer.status}${detail ? `: ${detail}` : ''}`);
}

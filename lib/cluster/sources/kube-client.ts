// The two requests a kind's informer makes, on the kubeconfig's credentials:
// a paginated list that takes the same field selector as the watch (which
// client-node's makeInformer cannot pass), and a watch that reports how each
// connection ended and can be closed for good, even mid-connect. Also what
// every caller of the API needs from a failed call: its status and message.
// Deep imports, not the package index: any value import of the index loads
// all the generated API code (72 MiB of anonymous RSS), which the waypoint,
// a user of this module, must not carry (see in-cluster.ts).
import type { KubeConfig } from '@kubernetes/client-node';
import { ApiException } from '@kubernetes/client-node/dist/gen/apis/exception.js';
import { HttpMethod, RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { setHeaderOptions } from '@kubernetes/client-node/dist/middleware.js';
import { PatchStrategy } from '@kubernetes/client-node/dist/patch.js';
import { Watch } from '@kubernetes/client-node/dist/watch.js';
import { fetch } from 'undici';
import { KubeApiError, MeshletError, ObjectLimitError } from '../../core/errors.ts';
import { isRecord, type KubeObject } from '../objects.ts';
import type { KubeCredentials } from './kube-credentials.ts';

export interface ListOptions {
  fieldSelector?: string;
  /** More objects than this is refused (ObjectLimitError) before the rest is read. */
  maxObjects: number;
  signal?: AbortSignal;
}

export interface ListResult {
  items: KubeObject[];
  /** Where a watch of the same collection starts. */
  resourceVersion: string;
}

/** Objects per page: big collections arrive in pieces instead of one response the server must build whole. */
const PAGE_SIZE = 500;
/** A list that takes longer is abandoned and retried: a stuck request must not stall the kind forever. */
const LIST_TIMEOUT_MS = 60_000;

/** "fetch failed" says nothing; its cause ("connect ECONNREFUSED 127.0.0.1:6443") does. Ours say it already. */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    const message = typeof body === 'string' ? (statusMessage(body) ?? body) : isRecord(body) && typeof body.message === 'string' ? body.message : undefined;
    return `HTTP ${err.code}${message ? `: ${message}` : ''}`;
  }
  if (!(err instanceof Error)) return String(err);
  return err.cause instanceof Error && !(err instanceof MeshletError) ? `${err.message}: ${err.cause.message}` : err.message;
}

/** Request options for an RFC 7386 merge patch (lists replace, maps merge, null deletes); client-node would send a JSON Patch. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The HTTP status of a failed call: a list (KubeApiError), a watch (client-node's Error with statusCode) or a generated API call (ApiException). */
export function statusCodeOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.statusCode;
  if (err instanceof ApiException) return err.code;
  const code = isRecord(err) ? err.statusCode : undefined;
  return typeof code === 'number' ? code : undefined;
}

function statusMessage(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    return isRecord(body) && typeof body.message === 'string' ? body.message : undefined;
  } catch {
    return undefined;
  }
}

/** Every object of the collection at `path`, page by page, at one resource version. */
export async function listCollection(kc: KubeCredentials, path: string, options: ListOptions): Promise<ListResult> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const ctx = new RequestContext(server + path, HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  // One connection for all pages; the kubeconfig builds a new dispatcher per call, so close it after.
  const dispatcher = ctx.getDispatcher();
  const headers = { ...ctx.getHeaders(), accept: 'application/json' };
  const items: KubeObject[] = [];
  let continueToken: string | undefined;
  try {
    for (;;) {
      const url = new URL(server + path);
      url.searchParams.set('limit', String(PAGE_SIZE));
      if (options.fieldSelector !== undefined) url.searchParams.set('fieldSelector', options.fieldSelector);
      if (continueToken !== undefined) url.searchParams.set('continue', continueToken);
      const timeout = AbortSignal.timeout(LIST_TIMEOUT_MS);
      const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
      let status: number;
      let text: string;
      try {
        const res = await fetch(url, { headers, dispatcher, signal });
        status = res.status;
        text = await res.text();
      } catch (err) {
        throw new KubeApiError(0, `GET ${path}: ${describeError(err)}`, { cause: err });
      }
      if (status !== 200) {
        const detail = statusMessage(text);
        throw new KubeApiError(status, `GET ${path}: HTTP ${status}${detail === undefined ? '' : `: ${detail}`}`);
      }
      const body: unknown = JSON.parse(text);
      if (!isRecord(body) || !Array.isArray(body.items)) throw new KubeApiError(status, `GET ${path}: the response is not a list`);
      for (const item of body.items) if (isRecord(item)) items.push(item);
      if (items.length > options.maxObjects) throw new ObjectLimitError(`${path} has more than ${options.maxObjects} objects`);
      const meta = isRecord(body.metadata) ? body.metadata : {};
      continueToken = typeof meta.continue === 'string' && meta.continue !== '' ? meta.continue : undefined;
      if (continueToken === undefined) return { items, resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '' };
    }
  } finally {
    await dispatcher?.destroy();
  }
}

/**
 * How a watch connection ended: client-node's own inactivity cut ('timeout',
 * resumed from the last resource version), the server closing it, 410 Gone
 * (client-node relists), or an error (client-node reports it and stops).
 */
export type WatchEnd = 'timeout' | 'closed' | 'gone' | 'error';

export interface WatchHooks {
  /** The server accepted a watch (HTTP 200). */
  connected(): void;
  /** `err` is what client-node passed: null for a close, the error otherwise. */
  ended(how: WatchEnd, err: unknown): void;
}

function classify(err: unknown, gone: boolean): WatchEnd {
  if (gone || statusCodeOf(err) === 410) return 'gone';
  if (err === null || err === undefined) return 'closed';
  return err instanceof Error && err.name === 'TimeoutError' ? 'timeout' : 'error';
}

/**
 * client-node's Watch, asking for bookmarks (they keep a quiet kind's
 * resource version fresh, so a resumed watch is less often too old), telling
 * how each connection ended, and closable: client-node's ListWatch may start
 * a watch after its stop() (its reconnect delay does not check), so close()
 * aborts every open connection and refuses new ones.
 */
export class TrackedWatch extends Watch {
  readonly #hooks: WatchHooks;
  readonly #open = new Set<AbortController>();
  #closed = false;

  constructor(kc: KubeCredentials, hooks: WatchHooks) {
    // Watch calls only getCurrentCluster and applySecurityAuthentication (KubeCredentials) on its config.
    super(kc as KubeConfig);
    this.#hooks = hooks;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.#closed) {
      const refused = new AbortController();
      refused.abort();
      return refused;
    }
    let gone = false;
    let ended = false;
    let controller: AbortController | undefined;
    const onEvent = (phase: string, obj: unknown, raw?: unknown): void => {
      if (phase === 'ERROR' && isRecord(obj) && obj.code === 410) gone = true;
      callback(phase, obj, raw);
    };
    const onDone = (err: unknown): void => {
      ended = true;
      if (controller) this.#open.delete(controller);
      if (!this.#closed) this.#hooks.ended(classify(err, gone), err);
      done(err);
    };
    controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, onEvent, onDone);
    if (this.#closed) controller.abort();
    else if (!ended) {
      this.#open.add(controller);
      this.#hooks.connected();
    }
    return controller;
  }

  close(): void {
    this.#closed = true;
    for (const controller of this.#open) controller.abort();
    this.#open.clear();
  }
}

// The list+watch protocol of client-node's ListWatch (dist/cache.js), on our
// list (kube-client.ts listCollection) and client-node's Watch: list when
// there is no resource version, watch from it, resume after a timeout or a
// server close (backing off 1 s doubling to 30 s between reconnects that saw
// no event), relist after 410 Gone, follow bookmarks, stop on any other
// error and report it. Ours because ListWatch's module imports the
// serializer, which loads all the generated models: 21 MiB of anonymous RSS
// in the waypoint, for two string conversions. Objects stay the plain JSON
// the API server sent, as ListWatch (whose list we supplied) left them.
import { isRecord, type KubeObject } from '../objects.ts';

export interface ListWatchHandlers {
  /** The whole collection and the version a watch of it starts from. */
  list(): Promise<{ items: KubeObject[]; resourceVersion: string }>;
  /** ADDED or MODIFIED. */
  put(obj: KubeObject): void;
  /** DELETED. */
  remove(obj: KubeObject): void;
  /** The loop has stopped on `err`; start() it again to retry. */
  error(err: unknown): void;
}

/** What the loop needs of a Watch (TrackedWatch's signature). */
export interface WatchStarter {
  watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController>;
}

export interface ListWatchOptions {
  path: string;
  watch: WatchStarter;
  fieldSelector?: string;
  /** The wait between reconnects (cancellable by the caller's stop). */
  delay(ms: number): Promise<void>;
  handlers: ListWatchHandlers;
}

/** ListWatch's reconnect backoff. */
const BASE_RECONNECT_DELAY_MS = 1000;
const MAX_RECONNECT_DELAY_MS = 30_000;

const resourceVersionOf = (obj: unknown): string => {
  const meta = isRecord(obj) && isRecord(obj.metadata) ? obj.metadata : {};
  return typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
};

export class ListWatchLoop {
  readonly #o: ListWatchOptions;
  #resourceVersion = '';
  #stopped = false;
  #reconnectDelayMs = 0;
  #hasConnected = false;
  #request: AbortController | undefined;

  constructor(options: ListWatchOptions) {
    this.#o = options;
  }

  latestResourceVersion(): string {
    return this.#resourceVersion;
  }

  /** Lists (unless a resource version is held) and watches; resolves once the watch is requested or the loop reported an error. */
  start(): Promise<void> {
    this.#stopped = false;
    this.#reconnectDelayMs = 0;
    this.#hasConnected = false;
    return this.#done(null);
  }

  stop(): void {
    this.#stopped = true;
    this.#abort();
  }

  #abort(): void {
    this.#request?.abort();
    this.#request = undefined;
  }

  async #done(err: unknown): Promise<void> {
    this.#abort();
    const code = isRecord(err) ? (err.statusCode ?? err.code) : undefined;
    if (code === 410) this.#resourceVersion = '';
    else if (err instanceof Error && err.name === 'TimeoutError') this.#reconnectDelayMs = 0;
    else if (err !== null && err !== undefined) {
      this.#o.handlers.error(err);
      return;
    }
    if (this.#stopped) return;
    if (!this.#resourceVersion) {
      let list;
      try {
        list = await this.#o.handlers.list();
      } catch (listError) {
        this.#o.handlers.error(listError);
        return;
      }
      this.#resourceVersion = list.resourceVersion;
    }
    const queryParams: Record<string, string> = { resourceVersion: this.#resourceVersion };
    if (this.#o.fieldSelector !== undefined) queryParams.fieldSelector = this.#o.fieldSelector;
    if (this.#reconnectDelayMs > 0 && this.#hasConnected) await this.#o.delay(this.#reconnectDelayMs);
    if (this.#hasConnected) this.#reconnectDelayMs = Math.min(this.#reconnectDelayMs > 0 ? this.#reconnectDelayMs * 2 : BASE_RECONNECT_DELAY_MS, MAX_RECONNECT_DELAY_MS);
    this.#hasConnected = true;
    this.#request = await this.#o.watch.watch(this.#o.path, queryParams, (phase, obj) => this.#event(phase, obj), (end) => void this.#done(end));
  }

  #event(phase: string, obj: unknown): void {
    if (phase === 'ERROR') {
      if (isRecord(obj) && obj.code === 410) this.#resourceVersion = '';
      return;
    }
    if (isRecord(obj) && (phase === 'ADDED' || phase === 'MODIFIED')) this.#o.handlers.put(obj);
    else if (isRecord(obj) && phase === 'DELETED') this.#o.handlers.remove(obj);
    this.#reconnectDelayMs = 0;
    this.#resourceVersion = resourceVersionOf(obj);
  }
}

// One kind's list+watch, supervised. ListWatchLoop (list-watch.ts: client-node's
// ListWatch protocol without its module's cost) does the watch protocol
// (resume from the last resource version after client-node's 30 s inactivity
// cut or a server close, relist on 410 Gone); around it this adds what
// client-node 2.0's ListWatch lacks: the field selector on the list call, a
// restart with capped backoff after the errors that leave the loop stopped, a cache keyed by UID (a
// pod recreated under the same name replaces the old one), a bound on its
// size, and health for `status`.
import { KubeApiError, ObjectLimitError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Scheduler } from '../../core/clock.ts';
import { isRecord, type KubeObject } from '../objects.ts';
import { describeError, listCollection, statusCodeOf, TrackedWatch, type ListResult, type WatchEnd } from './kube-client.ts';
import type { KubeCredentials } from './kube-credentials.ts';
import { ListWatchLoop } from './list-watch.ts';
import { apiVersionOf, collectionPath, kindName, type WatchedKind } from './kube-kinds.ts';
import type { InformerStatus, UnreadableObject } from './source.ts';

export interface Backoff {
  /** First retry after an error; doubles per consecutive failure. */
  initialMs: number;
  maxMs: number;
  /** Retry of a kind the server does not serve (its CRD is not installed) or that is over the object cap. */
  slowMs: number;
}

export interface KindInformerOptions {
  kubeconfig: KubeCredentials;
  kind: WatchedKind;
  /** Applied to the list and the watch alike. */
  fieldSelector?: string;
  maxObjects: number;
  backoff: Backoff;
  timers: Scheduler;
  /** In [0, 1): spreads the retries of many agents after an API server restart. */
  random: () => number;
  log: Logger;
  /** The cache changed (`objects`), or only the informer's health did. */
  onChange: (objects: boolean) => void;
}

type Informer = ListWatchLoop;

function keyOf(obj: KubeObject): string {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  if (typeof meta.uid === 'string' && meta.uid !== '') return meta.uid;
  return `${String(meta.namespace ?? '')}/${String(meta.name ?? '')}`;
}

const resourceVersionOf = (obj: KubeObject): unknown => (isRecord(obj.metadata) ? obj.metadata.resourceVersion : undefined);

/** `obj` is `old` at the same resource version. */
function sameVersion(old: KubeObject | undefined, obj: KubeObject): boolean {
  const version = resourceVersionOf(obj);
  return old !== undefined && version !== undefined && resourceVersionOf(old) === version;
}

/** The same objects at the same resource versions. */
function sameVersions(a: ReadonlyMap<string, KubeObject>, b: ReadonlyMap<string, KubeObject>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, obj] of b) if (!sameVersion(a.get(key), obj)) return false;
  return true;
}

export class KindInformer {
  readonly kind: WatchedKind;
  readonly name: string;
  readonly #o: KindInformerOptions;
  readonly #apiVersion: string;
  #cache = new Map<string, KubeObject>();
  #informer: Informer | undefined;
  #watch: TrackedWatch | undefined;
  /** Aborts the informer's list in flight on stop. */
  #abort = new AbortController();
  #timers = new Set<unknown>();
  #stopped = false;
  #failures = 0;
  #retrying = false;
  #synced = false;
  #missing = false;
  #overLimit: string | undefined;
  #lastError: string | undefined;
  #restarts = 0;
  #lists = 0;
  #watches = 0;

  constructor(options: KindInformerOptions) {
    this.#o = options;
    this.kind = options.kind;
    this.name = kindName(options.kind);
    this.#apiVersion = apiVersionOf(options.kind);
  }

  /** Listed once, or answered definitively that it cannot be: not served (404) or over the cap. */
  get settled(): boolean {
    return this.#synced || this.#missing || this.#overLimit !== undefined;
  }

  objects(): IterableIterator<KubeObject> {
    return this.#cache.values();
  }

  /** What the consumer should show while the kind is over the cap. */
  refusal(): UnreadableObject | undefined {
    return this.#overLimit === undefined ? undefined : { object: `${this.name} objects`, reason: this.#overLimit };
  }

  status(): InformerStatus {
    const status: InformerStatus = {
      kind: this.name,
      synced: this.#synced,
      resourceVersion: this.#informer?.latestResourceVersion() ?? '',
      restarts: this.#restarts,
      lists: this.#lists,
      watches: this.#watches,
      objects: this.#cache.size,
    };
    if (this.#missing) status.missing = true;
    if (this.#o.fieldSelector !== undefined) status.fieldSelector = this.#o.fieldSelector;
    if (this.#lastError !== undefined) status.lastError = this.#lastError;
    return status;
  }

  start(): void {
    this.#run(true);
  }

  stop(): void {
    this.#stopped = true;
    for (const handle of this.#timers) this.#o.timers.clear(handle);
    this.#timers.clear();
    this.#abort.abort();
    this.#retire();
  }

  /** Starts the list+watch: a fresh one lists first; the current one resumes its watch from its resource version. */
  #run(fresh: boolean): void {
    if (this.#stopped) return;
    if (fresh || !this.#informer) this.#informer = this.#create();
    const informer = this.#informer;
    informer.start().catch((err: unknown) => this.#failed(informer, err));
  }

  #create(): Informer {
    this.#retire();
    const watch = new TrackedWatch(this.#o.kubeconfig, {
      connected: () => this.#connected(informer),
      ended: (how) => this.#ended(informer, how),
    });
    const current = (): boolean => !this.#stopped && this.#informer === informer;
    const informer: Informer = new ListWatchLoop({
      path: collectionPath(this.kind),
      watch,
      fieldSelector: this.#o.fieldSelector,
      delay: (ms) => this.#delay(ms),
      handlers: {
        list: () => this.#list(informer),
        put: (obj) => current() && this.#put(obj),
        remove: (obj) => current() && this.#remove(obj),
        error: (err) => this.#failed(informer, err),
      },
    });
    this.#watch = watch;
    return informer;
  }

  #retire(): void {
    this.#informer?.stop();
    this.#watch?.close();
    this.#informer = undefined;
    this.#watch = undefined;
  }

  /** ListWatch's wait between reconnects, on our timers so that stop() cancels it. */
  #delay(ms: number): Promise<void> {
    return new Promise((resolve) => this.#after(ms, resolve));
  }

  #after(ms: number, fn: () => void): void {
    const handle = this.#o.timers.set(() => {
      this.#timers.delete(handle);
      fn();
    }, ms);
    this.#timers.add(handle);
  }

  async #list(informer: Informer): Promise<ListResult> {
    let result;
    try {
      result = await listCollection(this.#o.kubeconfig, collectionPath(this.kind), {
        fieldSelector: this.#o.fieldSelector,
        maxObjects: this.#o.maxObjects,
        signal: this.#abort.signal,
      });
    } catch (err) {
      throw err instanceof ObjectLimitError ? new ObjectLimitError(this.#limitReason()) : err;
    }
    const { items, resourceVersion } = result;
    if (this.#informer === informer && !this.#stopped) {
      for (const item of items) this.#stamp(item);
      // The list is the whole truth: replacing the cache drops objects deleted or recreated (new UID) while no watch ran.
      const cache = new Map(items.map((item) => [keyOf(item), item]));
      // A relist after an API server restart mostly finds what it had: no update for that.
      const changed = !sameVersions(this.#cache, cache) || this.#overLimit !== undefined;
      this.#cache = cache;
      this.#lists += 1;
      this.#synced = true;
      this.#missing = false;
      this.#overLimit = undefined;
      this.#recovered(informer);
      this.#o.onChange(changed);
    }
    return { items, resourceVersion };
  }

  /**
   * List responses omit each item's apiVersion and kind; consumers need them.
   * managedFields (server-side apply's bookkeeping, often a third of a pod's
   * JSON) nothing of meshlet reads: dropped, as client-go informers' transform
   * commonly does, so every cached object costs less memory.
   */
  #stamp(obj: KubeObject): void {
    obj.apiVersion ??= this.#apiVersion;
    obj.kind ??= this.kind.kind;
    if (isRecord(obj.metadata)) delete obj.metadata.managedFields;
  }

  #put(obj: KubeObject): void {
    this.#stamp(obj);
    const key = keyOf(obj);
    const old = this.#cache.get(key);
    // As ListWatch did: an object at the version already held is no change.
    if (old === obj || (resourceVersionOf(obj) !== '' && sameVersion(old, obj))) return;
    if (!this.#cache.has(key) && this.#cache.size >= this.#o.maxObjects) {
      this.#refuse();
      return;
    }
    this.#cache.set(key, obj);
    this.#o.onChange(true);
  }

  #remove(obj: KubeObject): void {
    if (this.#cache.delete(keyOf(obj))) this.#o.onChange(true);
  }

  #limitReason(): string {
    const { maxObjects, backoff } = this.#o;
    return `${this.name}: more than ${maxObjects} objects; meshlet holds at most that many of one kind, so the kind keeps what it held before (if anything) and is relisted every ${backoff.slowMs / 1000} s; raise the limit or select fewer objects`;
  }

  /** Over the cap mid-watch: stop watching (the cache would drift from the cluster) and relist later. */
  #refuse(): void {
    const reason = this.#limitReason();
    this.#overLimit = reason;
    this.#lastError = reason;
    this.#o.log.error('kubernetes kind over the object limit', { kind: this.name, error: reason });
    this.#retire();
    this.#retryAfter(this.#o.backoff.slowMs, true, true);
    this.#o.onChange(true);
  }

  #connected(informer: Informer): void {
    if (this.#stopped || this.#informer !== informer) return;
    this.#watches += 1;
    this.#failures = 0;
    this.#recovered(informer);
  }

  /** A list or a watch went through: what was wrong is over. */
  #recovered(informer: Informer): void {
    if (this.#lastError === undefined || this.#overLimit !== undefined) return;
    this.#o.log.info('kubernetes list/watch recovered', { kind: this.name, resourceVersion: informer.latestResourceVersion() });
    this.#lastError = undefined;
  }

  /**
   * ListWatch resumes by itself after a timeout or a close and relists after
   * 410; an error arrives again as its 'error' event (#failed).
   */
  #ended(informer: Informer, how: WatchEnd): void {
    if (this.#stopped || this.#informer !== informer) return;
    if (how === 'gone') this.#o.log.info('kubernetes watch expired (410 Gone); relisting', { kind: this.name });
    else if (how === 'closed') this.#o.log.info('kubernetes watch closed by the server; resuming', { kind: this.name, resourceVersion: informer.latestResourceVersion() });
    if (how === 'closed' || how === 'gone') this.#restarts += 1;
  }

  /**
   * A ListWatch that reports an error has stopped. 404 on a kind never
   * listed: not served (its CRD is not installed), polled slowly and not
   * holding back sync. Over the cap: refused, relisted slowly. Anything else:
   * restarted with capped exponential backoff, resuming from its resource
   * version when it has one.
   */
  #failed(informer: Informer, err: unknown): void {
    if (this.#stopped || this.#informer !== informer) return;
    const code = statusCodeOf(err);
    // A refused watch is an Error named after its status text alone ("Forbidden"): say which request and status.
    const message = code === undefined || err instanceof KubeApiError ? describeError(err) : `watch ${collectionPath(this.kind)}: HTTP ${code}: ${describeError(err)}`;
    const { backoff } = this.#o;
    if (this.#retrying) {
      this.#lastError = message;
      return;
    }
    if (err instanceof ObjectLimitError) {
      const changed = this.#overLimit !== message;
      this.#overLimit = message;
      this.#lastError = message;
      this.#retryAfter(backoff.slowMs, true, true);
      if (!changed) return;
      this.#o.log.error('kubernetes kind over the object limit', { kind: this.name, error: message });
      this.#o.onChange(true);
      return;
    }
    if (code === 404 && !this.#synced) {
      if (!this.#missing) this.#o.log.warn('kubernetes kind not served; is its CustomResourceDefinition installed?', { kind: this.name, retryMs: backoff.slowMs });
      this.#missing = true;
      this.#lastError = `not served by the API server (404): install its CustomResourceDefinition; retried every ${backoff.slowMs / 1000} s`;
      this.#retryAfter(backoff.slowMs, true, false);
      this.#o.onChange(false);
      return;
    }
    const delay = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(this.#failures, 30) * (0.8 + 0.4 * this.#o.random()));
    this.#failures += 1;
    if (this.#lastError !== message) this.#o.log.warn('kubernetes list/watch failed; retrying', { kind: this.name, error: message, retryMs: Math.round(delay) });
    this.#lastError = message;
    this.#retryAfter(delay, false, true);
  }

  /** One retry at a time: a second failure report of the same stopped ListWatch changes nothing. */
  #retryAfter(ms: number, fresh: boolean, counts: boolean): void {
    if (this.#retrying) return;
    this.#retrying = true;
    this.#after(ms, () => {
      this.#retrying = false;
      if (counts) this.#restarts += 1;
      this.#run(fresh);
    });
  }
}

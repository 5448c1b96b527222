// Cluster state from the Kubernetes API: one supervised list+watch per kind
// (kube-informer.ts). Like the file source, every update carries every object
// the caches hold, as the API server returns them (with apiVersion and kind
// set; shared with the caches, so consumers read them and never mutate), and
// the events of one turn of the event loop become one update.
//
// Synced: every kind has listed once, or is known not to be listable: not
// served (404, a CRD that is not installed) or over the object cap. Those two
// are polled slowly and reported in status() (and an over-cap kind in each
// update's `unreadable`) rather than holding the rest back forever.
import type { KubeConfig } from '@kubernetes/client-node';
// Deep imports, not the package index (whose value import loads the generated API code, see kube-client.ts).
import { HttpMethod, RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { ConfigError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { KubeObject } from '../objects.ts';
import { loadKubeconfigFile } from '../kubeconfig-file.ts';
import { describeError } from './kube-client.ts';
import type { KubeCredentials } from './kube-credentials.ts';
import { KindInformer, type Backoff } from './kube-informer.ts';
import { realScheduler, type Scheduler } from '../../core/clock.ts';
import { kindName, PODS, type WatchedKind } from './kube-kinds.ts';
import type { ClusterSource, ClusterSourceStatus, ClusterUpdate, UnreadableObject } from './source.ts';

export { AGENT_KINDS, CA_KINDS, type WatchedKind } from './kube-kinds.ts';

/**
 * Objects held per kind, at most. Far above what one kind holds in the
 * clusters meshlet targets (pods on one node: about 110), it bounds memory
 * against a runaway controller; a kind beyond it is refused and reported.
 */
export const DEFAULT_MAX_OBJECTS_PER_KIND = 50_000;

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000, slowMs: 30_000 };

export interface KubeSourceOptions {
  /** A loaded KubeConfig (or InClusterCredentials), or the path of a kubeconfig file (read by start()). */
  kubeconfig: KubeCredentials | string;
  kinds: readonly WatchedKind[];
  /** Pods are listed and watched with this field selector, e.g. "spec.nodeName=node-1" (a kubelet's) or "spec.hostNetwork=false" (the agent's). */
  podFieldSelector?: string;
  log: Logger;
  maxObjectsPerKind?: number;
  backoff?: Partial<Backoff>;
  timers?: Scheduler;
  /** Stamps changedAtMs. */
  now?: () => number;
  /** Jitter of the retry backoff, in [0, 1). */
  random?: () => number;
}

export class KubeSource implements ClusterSource {
  readonly #o: KubeSourceOptions;
  #server: string;
  #informers: KindInformer[] = [];
  #onUpdate: ((update: ClusterUpdate) => void) | undefined;
  #settleStart: (() => void) | undefined;
  #pending: NodeJS.Immediate | undefined;
  #dirty = false;
  #changedAtMs: number | undefined;
  #synced = false;
  #stopped = false;

  constructor(options: KubeSourceOptions) {
    this.#o = options;
    this.#server = typeof options.kubeconfig === 'string' ? '' : (options.kubeconfig.getCurrentCluster()?.server ?? '');
  }

  get synced(): boolean {
    return this.#synced;
  }

  status(): ClusterSourceStatus {
    return { name: 'kubernetes', synced: this.#synced, server: this.#server, informers: this.#informers.map((i) => i.status()) };
  }

  /**
   * Resolves once the first update (every kind settled) is delivered, or on
   * stop(); an unreachable API server is retried, not an error. Rejects with
   * ConfigError for what retrying cannot fix: a kubeconfig that cannot be
   * read, has no current cluster, or whose credentials cannot be loaded.
   */
  async start(onUpdate: (update: ClusterUpdate) => void): Promise<void> {
    const names = this.#o.kinds.map(kindName);
    const twice = names.find((name, i) => names.indexOf(name) !== i);
    if (twice !== undefined) throw new ConfigError(`kind ${twice} is listed twice; list each kind once`);
    const kubeconfig = await loadKubeConfig(this.#o.kubeconfig);
    this.#server = await checkCredentials(kubeconfig, describeKubeconfig(this.#o.kubeconfig, kubeconfig));
    if (this.#stopped) return;
    this.#onUpdate = onUpdate;
    const synced = new Promise<void>((resolve) => (this.#settleStart = resolve));
    const backoff = { ...DEFAULT_BACKOFF, ...this.#o.backoff };
    this.#informers = this.#o.kinds.map((kind) => new KindInformer({
      kubeconfig,
      kind,
      fieldSelector: isPods(kind) ? this.#o.podFieldSelector : undefined,
      maxObjects: this.#o.maxObjectsPerKind ?? DEFAULT_MAX_OBJECTS_PER_KIND,
      backoff,
      timers: this.#o.timers ?? realScheduler,
      random: this.#o.random ?? Math.random,
      log: this.#o.log,
      onChange: (objects) => this.#changed(objects),
    }));
    for (const informer of this.#informers) informer.start();
    this.#schedule();
    return synced;
  }

  stop(): void {
    this.#stopped = true;
    this.#onUpdate = undefined;
    clearImmediate(this.#pending);
    for (const informer of this.#informers) informer.stop();
    this.#settleStart?.();
    this.#settleStart = undefined;
  }

  #changed(objects: boolean): void {
    if (objects) {
      this.#dirty = true;
      this.#changedAtMs = (this.#o.now ?? Date.now)();
    }
    this.#schedule();
  }

  /** Every event of this turn of the loop lands before the update is built: one update per burst. */
  #schedule(): void {
    if (this.#pending || this.#stopped) return;
    this.#pending = setImmediate(() => {
      this.#pending = undefined;
      this.#deliver();
    });
  }

  #deliver(): void {
    const onUpdate = this.#onUpdate;
    if (!onUpdate) return;
    if (!this.#synced) {
      if (!this.#informers.every((i) => i.settled)) return;
      this.#synced = true;
      const unserved = this.#informers.filter((i) => i.status().missing).map((i) => i.name);
      this.#o.log.info('kubernetes source synced', { server: this.#server, kinds: this.#informers.length, ...(unserved.length > 0 ? { notServed: unserved } : {}) });
    } else if (!this.#dirty) {
      return;
    }
    this.#dirty = false;
    const objects: KubeObject[] = [];
    const unreadable: UnreadableObject[] = [];
    for (const informer of this.#informers) {
      for (const obj of informer.objects()) objects.push(obj);
      const refusal = informer.refusal();
      if (refusal) unreadable.push(refusal);
    }
    const update: ClusterUpdate = { objects, unreadable };
    if (this.#changedAtMs !== undefined) update.changedAtMs = this.#changedAtMs;
    onUpdate(update);
    this.#settleStart?.();
    this.#settleStart = undefined;
  }
}

const isPods = (kind: WatchedKind): boolean => kind.group === PODS.group && kind.plural === PODS.plural;

function describeKubeconfig(given: KubeCredentials | string, loaded: KubeCredentials): string {
  if (typeof given === 'string') return `kubeconfig ${given}`;
  return isKubeConfig(loaded) ? `kubeconfig context "${loaded.getCurrentContext()}"` : 'in-cluster configuration';
}

const isKubeConfig = (c: KubeCredentials): c is KubeConfig => 'getCurrentContext' in c;

const loadKubeConfig = async (given: KubeCredentials | string): Promise<KubeCredentials> => (typeof given === 'string' ? loadKubeconfigFile(given, 'kubeconfig') : given);

/** The server URL, once the current context's credentials load (certificate and key files, exec plugins). */
async function checkCredentials(kubeconfig: KubeCredentials, where: string): Promise<string> {
  const server = kubeconfig.getCurrentCluster()?.server;
  if (!server) throw new ConfigError(`${where} has no current cluster with a server URL; set current-context to a context whose cluster has a server`);
  try {
    const ctx = new RequestContext(server, HttpMethod.GET);
    await kubeconfig.applySecurityAuthentication(ctx);
    await ctx.getDispatcher()?.destroy();
  } catch (err) {
    throw new ConfigError(`${where}: cannot load the credentials for ${server}: ${describeError(err)}; check the user's certificate, key and token, and the cluster's CA`);
  }
  return server;
}

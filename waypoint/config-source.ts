// The waypoint's view of the cluster from the Kubernetes API: one KubeSource
// over WAYPOINT_KINDS (lib/cluster/sources), each update built into a new
// WaypointConfig (config.ts) and handed on whole. An update that cannot be
// built at all (it should not happen: each object is judged alone) leaves
// the last config in effect and is logged.
import type { Logger } from '../lib/core/log.ts';
import { InClusterCredentials } from '../lib/cluster/sources/in-cluster.ts';
import { AGENT_POD_FIELD_SELECTOR, WAYPOINT_KINDS } from '../lib/cluster/sources/kube-kinds.ts';
import { KubeSource } from '../lib/cluster/sources/kube.ts';
import type { ClusterSource, ClusterSourceStatus, ClusterUpdate } from '../lib/cluster/sources/source.ts';
import { WaypointConfigBuilder, type ConfigRejection, type ConfigWarning, type WaypointConfig, type WaypointSelf } from './config.ts';

export interface ConfigSourceOptions {
  self: WaypointSelf;
  log: Logger;
  /** Where objects come from; default a KubeSource over WAYPOINT_KINDS with `kubeconfig`. */
  source?: ClusterSource;
  /** A kubeconfig file; absent: the pod's in-cluster configuration. */
  kubeconfig?: string;
  /** Each new config, in order. */
  onConfig(config: WaypointConfig): void;
}

/** What `/config` shows. */
export interface ConfigStatus {
  synced: boolean;
  version: number | null;
  /** The waypoint's Gateway is in the state (the waypoint serves nothing until it is). */
  gateway: boolean;
  source: ClusterSourceStatus;
  rejected: readonly ConfigRejection[];
  warnings: readonly ConfigWarning[];
}

export class WaypointConfigSource {
  readonly #o: ConfigSourceOptions;
  readonly #builder: WaypointConfigBuilder;
  readonly #source: ClusterSource;
  #config: WaypointConfig | undefined;

  constructor(options: ConfigSourceOptions) {
    this.#o = options;
    this.#builder = new WaypointConfigBuilder(options.self);
    this.#source = options.source ?? new KubeSource({
      // Without --kubeconfig, the pod's own credentials, without client-node's KubeConfig (see in-cluster.ts).
      kubeconfig: options.kubeconfig ?? new InClusterCredentials(),
      kinds: WAYPOINT_KINDS,
      podFieldSelector: AGENT_POD_FIELD_SELECTOR,
      log: options.log,
    });
  }

  get config(): WaypointConfig | undefined {
    return this.#config;
  }

  /** The first config is built: the source has listed every kind once. */
  get synced(): boolean {
    return this.#config !== undefined && this.#source.synced;
  }

  /** Resolves once the first config is built (or on stop()); rejects only for what retrying cannot fix (a bad kubeconfig). */
  start(): Promise<void> {
    return this.#source.start((update) => this.#apply(update));
  }

  stop(): void {
    this.#source.stop();
  }

  status(): ConfigStatus {
    const c = this.#config;
    return { synced: this.synced, version: c?.version ?? null, gateway: c?.gateway !== undefined, source: this.#source.status(), rejected: c?.rejected ?? [], warnings: c?.warnings ?? [] };
  }

  #apply(update: ClusterUpdate): void {
    let config: WaypointConfig;
    try {
      config = this.#builder.build(update.objects, update.unreadable);
    } catch (error) {
      this.#o.log.error('config_update_failed', { error, keeping: this.#config?.version ?? null });
      return;
    }
    const previous = this.#config;
    this.#config = config;
    const rejected = config.rejected.length;
    if (!previous || rejected !== previous.rejected.length || (previous.gateway === undefined) !== (config.gateway === undefined)) {
      this.#o.log.info('config', { version: config.version, services: config.view.services.size, workloads: config.view.workloads.size, rejected, gateway: config.gateway !== undefined });
    }
    for (const r of config.rejected) if (!previous?.rejected.some((p) => p.object === r.object && p.reason === r.reason)) this.#o.log.warn('object_rejected', { ...r });
    this.#o.onConfig(config);
  }
}

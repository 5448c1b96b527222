// The waypoint controller (in the CA process, DESIGN.md): every Gateway of
// class istio-waypoint or meshlet-waypoint becomes a waypoint, that is a
// ServiceAccount, a Service and a Deployment running `meshlet waypoint`
// (waypoint-objects.ts), applied server-side and owned by the Gateway so
// that deleting it deletes them, and a ClusterRoleBinding of its
// ServiceAccount to the ClusterRole meshlet-waypoint, which the controller
// deletes itself once the Gateway is gone (cluster-scoped, it is not
// garbage-collected with it); its status says whether it is accepted,
// whether it serves, and at which addresses. The two GatewayClasses are
// created when missing and accepted (waypoint-classes.ts).
//
// One watch (KubeSource, CONTROLLER_KINDS) of Gateways, GatewayClasses,
// Deployments, whose status tells when a waypoint has an available replica,
// and ClusterRoleBindings: every snapshot, the controller's bindings (by
// label) whose Gateway is not in it are deleted, so a Gateway deleted while
// the controller was down loses its binding at the first list after start.
// Each Gateway is its own piece of work in a bounded queue with retries
// (work-queue.ts): it is reconciled when anything it depends on changed (its
// own version, its class's, its Deployment's), and every resync period in
// any case, which also re-applies what someone changed or deleted behind the
// controller's back (the Service and ServiceAccount are not watched). A
// Gateway that cannot be deployed, or whose objects the API server refuses,
// gets the reason in its status and is not retried until it changes; one
// whose work keeps failing is parked and reported; neither stops the others.
import { createHash } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { realScheduler, wholeSecond, type Scheduler } from '../lib/core/clock.ts';
import { KubeApiError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { KubeSource } from '../lib/cluster/sources/kube.ts';
import { CONTROLLER_KINDS, GATEWAYS, kindName } from '../lib/cluster/sources/kube-kinds.ts';
import type { ClusterSourceStatus, ClusterUpdate } from '../lib/cluster/sources/source.ts';
import { answerMessage, kubeApply, kubeDelete, kubeRequest } from '../lib/cluster/kube-api.ts';
import type { CaMetrics } from './metrics.ts';
import { applyWaypoint } from './waypoint-apply.ts';
import { classAcceptance, classPath, controllerNameOf, GATEWAY_CLASSES_PATH, newGatewayClass } from './waypoint-classes.ts';
import { classNameOf, keyOf, readGateway, rejectionOf, WAYPOINT_CLASSES, WAYPOINT_CONTROLLER_NAME, type WaypointGateway } from './waypoint-gateway.ts';
import { bindingGatewayKey, bindingName, CLUSTER_ROLE_BINDINGS_PATH, FIELD_MANAGER, waypointObjects, type WaypointSettings } from './waypoint-objects.ts';
import { readiness } from './waypoint-readiness.ts';
import { gatewayStatus, statusApply, statusUpToDate, type Outcome } from './waypoint-status.ts';
import { WorkQueue, type RetryPolicy, type WorkQueueStatus } from './work-queue.ts';

/** Every Gateway is reconciled again this often, changed or not. */
export const DEFAULT_RESYNC_MS = 10 * 60_000;
/** As Istio's gateway deployment controller: five tries, then wait for a change. */
export const DEFAULT_RETRY: RetryPolicy = { initialMs: 1000, maxMs: 30_000, attempts: 5 };
/** Gateways reconciled at once: each is a handful of API calls in a row. */
const CONCURRENCY = 4;
/** As many as the source holds of one kind (DEFAULT_MAX_OBJECTS_PER_KIND), plus the classes, plus as many bindings to delete. */
const MAX_KEYS = 100_002;
/** Messages in a condition, at most (metav1.Condition allows 32 KiB; an operator reads far less). */
const MAX_MESSAGE = 2048;

export interface WaypointControllerOptions {
  /** The CA's own credentials (daemonset/rbac.yaml grants what the controller does). */
  kubeconfig: KubeConfig;
  settings: WaypointSettings;
  /** The mesh root's certificate, copied into each waypoint namespace. */
  rootCertPem: string;
  log: Logger;
  metrics?: CaMetrics;
  resyncMs?: number;
  retry?: Partial<RetryPolicy>;
  timers?: Scheduler;
  random?: () => number;
  now?: () => number;
}

/** One Gateway as the controller last saw and handled it. */
interface GatewayState {
  /** What it depends on, as last reconciled: its version, its class's, its Deployment's. */
  inputs: string;
  /** A digest of the objects last applied; until it changes (or a resync), they are not applied again. */
  applied?: string;
  clusterIps: string[];
  /** The status last written, so the same one is never written twice in a row. */
  written?: string;
  outcome?: Outcome['kind'] | 'ready' | 'ignored';
  /** What is wrong, when it is not ready. */
  problem?: string;
}

export interface WaypointGatewayReport {
  gateway: string;
  /** ignored: its GatewayClass names another controller. */
  state: 'ready' | 'deploying' | 'rejected' | 'failed' | 'ignored' | 'pending';
  problem?: string;
}

export interface WaypointControllerStatus {
  source: ClusterSourceStatus;
  gateways: WaypointGatewayReport[];
  queue: WorkQueueStatus;
}

const CLASS_KEY = 'GatewayClass ';
const BINDING_KEY = 'ClusterRoleBinding ';
const isClassKey = (key: string): boolean => key.startsWith(CLASS_KEY);
const isBindingKey = (key: string): boolean => key.startsWith(BINDING_KEY);
/** The binding name of the Gateway `namespace/name` (namespaces hold no "/"). */
const bindingOf = (key: string): string => bindingName(key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1));
const isDeleting = (obj: KubeObject): boolean => isRecord(obj.metadata) && obj.metadata.deletionTimestamp !== undefined && obj.metadata.deletionTimestamp !== null;
const versionOf = (obj: KubeObject | undefined): string => (obj && isRecord(obj.metadata) ? String(obj.metadata.resourceVersion ?? '') : '-');
const truncate = (text: string): string => (text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text);

export class WaypointController {
  readonly #o: WaypointControllerOptions;
  readonly #source: KubeSource;
  readonly #queue: WorkQueue;
  readonly #timers: Scheduler;
  #gateways = new Map<string, KubeObject>();
  #classes = new Map<string, KubeObject>();
  #deployments = new Map<string, KubeObject>();
  /** Every ClusterRoleBinding, by name: a waypoint's name may be taken by one meshlet does not manage. */
  #bindings = new Map<string, KubeObject>();
  /** The controller's bindings whose Gateway is gone, by name, and the version each was queued for deletion at. */
  readonly #orphans = new Map<string, string>();
  readonly #states = new Map<string, GatewayState>();
  /** Each class's version as last handled ('' for absent). */
  readonly #classVersions = new Map<string, string>();
  /** A foreign class is reported once per version. */
  readonly #foreignReported = new Map<string, string>();
  /** What the watch could not read, as last reported (reported again only when it changes). */
  #unreadable = '';
  #resync: unknown;
  #stopped = false;

  constructor(options: WaypointControllerOptions) {
    this.#o = options;
    this.#timers = options.timers ?? realScheduler;
    this.#source = new KubeSource({ kubeconfig: options.kubeconfig, kinds: CONTROLLER_KINDS, log: options.log, timers: this.#timers, ...(options.random ? { random: options.random } : {}) });
    this.#queue = new WorkQueue({
      name: 'waypoint gateways',
      work: (key) => (isClassKey(key) ? this.#reconcileClass(key.slice(CLASS_KEY.length))
        : isBindingKey(key) ? this.#deleteOrphan(key.slice(BINDING_KEY.length)) : this.#reconcileGateway(key)),
      concurrency: CONCURRENCY,
      maxKeys: MAX_KEYS,
      retry: { ...DEFAULT_RETRY, ...options.retry },
      timers: this.#timers,
      random: options.random ?? Math.random,
      log: options.log,
    });
  }

  /** Resolves once the watch has listed everything once and the first reconciles are queued. */
  async start(): Promise<void> {
    await this.#source.start((update) => this.#update(update));
    if (this.#stopped) return;
    this.#scheduleResync();
    this.#o.log.info('waypoint controller started', { controllerName: WAYPOINT_CONTROLLER_NAME, classes: WAYPOINT_CLASSES, image: this.#o.settings.image, caUrl: this.#o.settings.caUrl });
  }

  stop(): void {
    this.#stopped = true;
    this.#timers.clear(this.#resync);
    this.#source.stop();
    this.#queue.stop();
  }

  status(): WaypointControllerStatus {
    const parked = new Map(this.#queue.status().parked.map((p) => [p.key, p.error]));
    const gateways = [...this.#states].map(([gateway, s]): WaypointGatewayReport => {
      const failing = parked.get(gateway);
      if (failing !== undefined) return { gateway, state: 'failed', problem: failing };
      const state = s.outcome === 'ready' ? 'ready' : s.outcome === 'deployed' ? 'deploying' : (s.outcome ?? 'pending');
      return { gateway, state, ...(s.problem === undefined ? {} : { problem: s.problem }) };
    });
    return { source: this.#source.status(), gateways, queue: this.#queue.status() };
  }

  #scheduleResync(): void {
    this.#resync = this.#timers.set(() => {
      if (this.#stopped) return;
      for (const s of this.#states.values()) {
        s.applied = undefined;
        s.written = undefined;
      }
      for (const key of this.#states.keys()) this.#queue.add(key);
      for (const name of WAYPOINT_CLASSES) this.#queue.add(CLASS_KEY + name);
      for (const name of this.#orphans.keys()) this.#queue.add(BINDING_KEY + name);
      this.#scheduleResync();
    }, this.#o.resyncMs ?? DEFAULT_RESYNC_MS);
  }

  /** The watch's full snapshot: index it, and queue whatever changed. */
  #update(update: ClusterUpdate): void {
    const gateways = new Map<string, KubeObject>();
    const classes = new Map<string, KubeObject>();
    const deployments = new Map<string, KubeObject>();
    const bindings = new Map<string, KubeObject>();
    for (const obj of update.objects) {
      if (obj.kind === 'Gateway' && obj.apiVersion === 'gateway.networking.k8s.io/v1') {
        const key = keyOf(obj);
        if (key !== undefined && WAYPOINT_CLASSES.includes(classNameOf(obj) ?? '')) gateways.set(key, obj);
      } else if (obj.kind === 'GatewayClass') {
        const name = isRecord(obj.metadata) ? obj.metadata.name : undefined;
        if (typeof name === 'string' && WAYPOINT_CLASSES.includes(name)) classes.set(name, obj);
      } else if (obj.kind === 'Deployment') {
        const key = keyOf(obj);
        if (key !== undefined) deployments.set(key, obj);
      } else if (obj.kind === 'ClusterRoleBinding') {
        const name = isRecord(obj.metadata) ? obj.metadata.name : undefined;
        if (typeof name === 'string') bindings.set(name, obj);
      }
    }
    const unreadable = update.unreadable.map((u) => `${u.object}: ${u.reason}`).join('\n');
    if (unreadable !== this.#unreadable && unreadable !== '') this.#o.log.warn('waypoint controller cannot read', { unreadable: update.unreadable });
    this.#unreadable = unreadable;
    this.#gateways = gateways;
    this.#classes = classes;
    this.#deployments = deployments;
    this.#bindings = bindings;
    for (const name of WAYPOINT_CLASSES) {
      const version = classes.has(name) ? versionOf(classes.get(name)) : '';
      if (this.#classVersions.get(name) !== version) {
        this.#classVersions.set(name, version);
        this.#queue.add(CLASS_KEY + name);
      }
    }
    for (const [key, obj] of gateways) {
      const inputs = `${versionOf(obj)} ${versionOf(classes.get(classNameOf(obj) ?? ''))} ${versionOf(deployments.get(key))} ${versionOf(bindings.get(bindingOf(key)))}`;
      const state = this.#states.get(key);
      if (state?.inputs === inputs) continue;
      if (state) state.inputs = inputs;
      else this.#states.set(key, { inputs, clusterIps: [] });
      this.#queue.add(key);
    }
    for (const key of this.#states.keys()) {
      if (gateways.has(key)) continue;
      this.#states.delete(key);
      this.#queue.forget(key);
    }
    // Gateways the watch cannot hold (over the object cap) are not known to be gone: delete nothing then.
    const gatewaysUnreadable = update.unreadable.some((u) => u.object.startsWith(`${kindName(GATEWAYS)} `));
    if (!gatewaysUnreadable) this.#findOrphans();
  }

  /** Queues the deletion of each of the controller's bindings whose Gateway is gone or going, once per version. */
  #findOrphans(): void {
    const orphans = new Map<string, string>();
    for (const [name, binding] of this.#bindings) {
      if (this.#isOrphan(name, binding)) orphans.set(name, versionOf(binding));
    }
    for (const [name, version] of orphans) {
      if (this.#orphans.get(name) !== version) this.#queue.add(BINDING_KEY + name);
    }
    for (const name of this.#orphans.keys()) {
      if (!orphans.has(name)) this.#queue.forget(BINDING_KEY + name);
    }
    this.#orphans.clear();
    for (const [name, version] of orphans) this.#orphans.set(name, version);
  }

  /** One of the controller's bindings (its labels and role) with no Gateway of a waypoint class, or a Gateway being deleted, or not under the name it would have. */
  #isOrphan(name: string, binding: KubeObject): boolean {
    const key = bindingGatewayKey(binding);
    if (key === undefined) return false;
    const gw = this.#gateways.get(key);
    return gw === undefined || isDeleting(gw) || bindingOf(key) !== name;
  }

  /** Deletes the binding if it is still an orphan, and still the same object (its uid). */
  async #deleteOrphan(name: string): Promise<void> {
    const binding = this.#bindings.get(name);
    if (binding === undefined || !this.#isOrphan(name, binding)) return;
    const uid = isRecord(binding.metadata) ? String(binding.metadata.uid ?? '') : '';
    const answer = await kubeDelete(this.#o.kubeconfig, `${CLUSTER_ROLE_BINDINGS_PATH}/${encodeURIComponent(name)}`, uid);
    if (answer.status === 200 || answer.status === 202) {
      this.#o.log.info('waypoint ClusterRoleBinding deleted: its Gateway is gone', { clusterRoleBinding: name, gateway: bindingGatewayKey(binding) ?? null });
      return;
    }
    // 404: gone already; 409: another binding of that name since (the watch shows it next, and it is judged then).
    if (answer.status === 404 || answer.status === 409) return;
    this.#refusedOrRetry(answer.status, `delete ClusterRoleBinding ${name}: HTTP ${answer.status}: ${answerMessage(answer)}`, 'may the CA delete clusterrolebindings (ClusterRole meshlet-ca)? retried at the next resync');
  }

  #now(): string {
    // metav1.Time: whole seconds, no fraction.
    return wholeSecond((this.#o.now ?? Date.now)()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  /** Creates the class when it is missing; accepts it when it names this controller. */
  async #reconcileClass(name: string): Promise<void> {
    const { kubeconfig: kc, log } = this.#o;
    const cls = this.#classes.get(name);
    if (cls === undefined) {
      const answer = await kubeRequest(kc, 'POST', GATEWAY_CLASSES_PATH, newGatewayClass(name));
      if (answer.status === 201) log.info('GatewayClass created', { gatewayClass: name, controllerName: WAYPOINT_CONTROLLER_NAME });
      else if (answer.status !== 409) this.#refusedOrRetry(answer.status, `create GatewayClass ${name}: HTTP ${answer.status}: ${answerMessage(answer)}`, 'Gateway API CRDs installed? (the controller retries at each resync)');
      return;
    }
    const controller = controllerNameOf(cls);
    if (controller !== WAYPOINT_CONTROLLER_NAME) {
      if (this.#foreignReported.get(name) !== versionOf(cls)) {
        this.#foreignReported.set(name, versionOf(cls));
        log.warn('GatewayClass belongs to another controller; its Gateways are left to it', {
          gatewayClass: name, controllerName: controller,
          fix: `to have meshlet serve them, delete the GatewayClass ${name} (its Gateways stay) once that controller is gone: meshlet creates it again naming ${WAYPOINT_CONTROLLER_NAME}`,
        });
      }
      return;
    }
    const acceptance = classAcceptance(cls, this.#now());
    if (acceptance === undefined) return;
    const answer = await kubeApply(kc, `${classPath(name)}/status`, acceptance, { fieldManager: FIELD_MANAGER, force: true });
    if (answer.status !== 200 && answer.status !== 404) this.#refusedOrRetry(answer.status, `write GatewayClass ${name} status: HTTP ${answer.status}: ${answerMessage(answer)}`, 'retried at the next resync');
  }

  /** Throws what is worth retrying soon; logs the rest, which waits for the resync. */
  #refusedOrRetry(status: number, message: string, hint: string): void {
    if (status === 0 || status === 409 || status === 429 || status >= 500) throw new KubeApiError(status, message);
    this.#o.log.error('waypoint controller request refused', { error: message, hint });
  }

  async #reconcileGateway(key: string): Promise<void> {
    const obj = this.#gateways.get(key);
    const state = this.#states.get(key);
    if (obj === undefined || state === undefined) return;
    const gw = readGateway(obj);
    if (typeof gw === 'string') {
      this.#o.log.warn('Gateway skipped', { gateway: key, reason: gw });
      return;
    }
    if (gw.deleting) return;
    const cls = this.#classes.get(gw.className);
    if (cls !== undefined && controllerNameOf(cls) !== WAYPOINT_CONTROLLER_NAME) {
      state.outcome = 'ignored';
      state.problem = `GatewayClass ${gw.className} names controller ${JSON.stringify(controllerNameOf(cls))}, not ${WAYPOINT_CONTROLLER_NAME}`;
      return;
    }
    const outcome = await this.#deploy(key, gw, state);
    state.outcome = outcome.kind === 'deployed' && outcome.ready ? 'ready' : outcome.kind;
    state.problem = outcome.kind === 'rejected' ? outcome.rejection.message : outcome.kind === 'failed' ? outcome.message : outcome.ready ? undefined : outcome.message;
    this.#o.metrics?.waypointReconciles.inc({ outcome: state.outcome });
    await this.#writeStatus(key, gw, obj.status, outcome, state);
  }

  async #deploy(key: string, gw: WaypointGateway, state: GatewayState): Promise<Outcome> {
    const rejection = rejectionOf(gw);
    if (rejection) {
      state.applied = undefined;
      return { kind: 'rejected', rejection: { ...rejection, message: truncate(rejection.message) } };
    }
    const objects = waypointObjects(gw, this.#o.settings, this.#o.rootCertPem);
    const digest = createHash('sha256').update(JSON.stringify(objects)).digest('hex');
    const deployment = this.#deployments.get(key);
    const binding = this.#bindings.get(bindingOf(key));
    // A Deployment or binding deleted behind the controller's back is applied again at once (the watch sees it go).
    if (state.applied !== digest || deployment === undefined || binding === undefined) {
      const result = await applyWaypoint({ kubeconfig: this.#o.kubeconfig, log: this.#o.log, objects, deployment, binding });
      if (!result.applied) {
        state.applied = undefined;
        this.#o.log.warn('waypoint not deployed', { gateway: key, reason: result.refused });
        return { kind: 'failed', message: truncate(result.refused) };
      }
      if (state.applied !== digest) this.#o.log.info('waypoint applied', { gateway: key, clusterIps: result.clusterIps });
      state.applied = digest;
      state.clusterIps = result.clusterIps;
    }
    const { ready, message } = readiness(gw.namespace, gw.name, this.#deployments.get(key));
    return { kind: 'deployed', clusterIps: state.clusterIps, ready, message: truncate(message) };
  }

  async #writeStatus(key: string, gw: WaypointGateway, stored: unknown, outcome: Outcome, state: GatewayState): Promise<void> {
    const status = gatewayStatus(gw, outcome, this.#now());
    const text = JSON.stringify(status);
    if (statusUpToDate(stored, status) || state.written === text) {
      state.written = text;
      return;
    }
    const path = `/apis/gateway.networking.k8s.io/v1/namespaces/${encodeURIComponent(gw.namespace)}/gateways/${encodeURIComponent(gw.name)}/status`;
    const answer = await kubeApply(this.#o.kubeconfig, path, statusApply(gw, status), { fieldManager: FIELD_MANAGER, force: true });
    if (answer.status === 200) state.written = text;
    // 404: deleted meanwhile; the watch says so next.
    else if (answer.status !== 404) this.#refusedOrRetry(answer.status, `write Gateway ${key} status: HTTP ${answer.status}: ${answerMessage(answer)}`, 'retried when the Gateway changes or at the next resync');
  }
}

// The node agent: cluster state in, BPF maps and ztunnel state out. One
// reconcile runs at a time; changes that arrive meanwhile fold into the next.
import type { Server, ServerResponse } from 'node:http';
import { listenAdmin, sendJson, streamEvents } from '../lib/core/admin-http.ts';
import type { AgentEnrolled, AgentStatus } from '../lib/mesh/agent-status.ts';
import type { DropWatch } from './bpf/drop-watch.ts';
import type { Datapath } from './datapath.ts';
import { CniGate } from './cni-gate.ts';
import type { CniInstall } from './cni-install.ts';
import { DropLog } from './drop-log.ts';
import { Enrollment } from './enrollment.ts';
import { StrictSweeps } from './strict-sweeps.ts';
import type { Logger } from '../lib/core/log.ts';
import { ClusterState, type Rejection } from '../lib/cluster/cluster-state.ts';
import type { EndpointWarning } from '../lib/cluster/endpoint-slices.ts';
import type { ClusterSource, ClusterUpdate } from '../lib/cluster/sources/source.ts';
import { emptyMeshState, type MeshState } from '../lib/mesh/kinds.ts';
import type { Workload } from '../lib/mesh/model.ts';
import { WaypointIndex, type WaypointProblem } from '../lib/mesh/waypoints.ts';
import type { ZtunnelControl } from './ztunnel-client.ts';
import { parseServiceCidrs, type AgentConfig } from '../lib/config/agent.ts';

/** This node's mesh addresses: no pod may claim one. */
const MESH_ADDRESS_FIELDS = ['captureIp4', 'captureIp6', 'inboundSourceIp4', 'inboundSourceIp6', 'probeSourceIp4', 'probeSourceIp6'] as const;

/** The agent's own settings; the rest of AgentConfig configures its dependencies (command.ts). */
export type NodeAgentConfig = Pick<AgentConfig, 'node' | 'kubeletCgroupRoot' | 'cgroupDriver' | 'ztunnelCgroup' | 'bpfDir' | 'rootNamespace' | 'serviceCidrs' | 'adminSocket'>
  & Partial<Pick<AgentConfig, (typeof MESH_ADDRESS_FIELDS)[number]>>;

export interface NodeAgentDeps {
  source: ClusterSource;
  /** Loads or adopts the capture layer: the first thing start() does. */
  openDatapath: () => Promise<Datapath>;
  control: ZtunnelControl;
  log: Logger;
  /** Puts the CNI plugin on the node and keeps its list of ambient namespaces; absent: no plugin holds pods for this agent. */
  cni?: CniInstall;
  /** Runs `retry` after `delayMs` (a failed reconcile's retry). Default: a timer that does not hold the process. */
  schedule?: (retry: () => void, delayMs: number) => void;
}

const RETRY_MS = 1000;

const unrefTimer = (retry: () => void, delayMs: number): void => {
  setTimeout(retry, delayMs).unref();
};

export class NodeAgent {
  #opts: NodeAgentConfig;
  #log: Logger;
  #control: ZtunnelControl;
  #cluster: ClusterState;
  #openDatapath: () => Promise<Datapath>;
  #schedule: (retry: () => void, delayMs: number) => void;
  #datapath!: Datapath;
  #enrollment!: Enrollment;
  #sweeps!: StrictSweeps;
  #source: ClusterSource;
  #admin: Server | undefined;
  #drops: DropLog;
  #cni: CniInstall | undefined;
  #gate: CniGate;
  #dropWatch: DropWatch | undefined;
  /** Open `flows --follow` streams of drops. */
  #followers = new Set<ServerResponse>();
  #byIp = new Map<string, Workload>();
  #byUid = new Map<string, Workload>();
  #pending: ClusterUpdate | undefined;
  /** The newest update the source delivered: what a retry applies. */
  #latest: ClusterUpdate | undefined;
  #running = false;
  #drained: Promise<void> = Promise.resolve();
  #state: MeshState = emptyMeshState();
  #rejected: Rejection[] = [];
  #endpointWarnings: EndpointWarning[] = [];
  #waypointWarnings: WaypointProblem[] = [];
  #startedAt = new Date().toISOString();
  #reconciledAt: string | undefined;
  #lastError: string | undefined;

  constructor(opts: NodeAgentConfig, deps: NodeAgentDeps) {
    this.#opts = opts;
    this.#log = deps.log;
    this.#control = deps.control;
    this.#source = deps.source;
    this.#openDatapath = deps.openDatapath;
    this.#schedule = deps.schedule ?? unrefTimer;
    const meshAddresses = MESH_ADDRESS_FIELDS.flatMap((f) => (opts[f] === undefined ? [] : [opts[f]]));
    this.#cluster = new ClusterState({ rootNamespace: opts.rootNamespace, serviceCidrs: parseServiceCidrs(opts.serviceCidrs), meshAddresses });
    this.#drops = new DropLog(opts.node);
    this.#cni = deps.cni;
    this.#gate = new CniGate(() => {
      if (this.#latest) this.#onState(this.#latest);
    });
  }

  async start(): Promise<void> {
    const o = this.#opts;
    this.#datapath = await this.#openDatapath();
    await this.#datapath.attachZtunnel(o.ztunnelCgroup);
    this.#enrollment = new Enrollment({ datapath: this.#datapath, kubeletCgroupRoot: o.kubeletCgroupRoot, cgroupDriver: o.cgroupDriver, node: o.node, log: this.#log });
    await this.#enrollment.adopt();
    this.#sweeps = new StrictSweeps(this.#datapath, this.#log);
    this.#dropWatch = this.#datapath.watchDrops(
      (e) => {
        const enrolled = this.#enrollment.byCgroupId(e.cgroupId);
        this.#drops.record(e, this.#byUid.get(enrolled?.uid ?? ''), (ip) => this.#byIp.get(ip), enrolled?.inbound?.failClosed);
      },
      (err) => this.#log.error('reading drop events failed', { error: err.message }),
    );
    this.#admin = await listenAdmin(o.adminSocket, {
      '/status': () => this.status(),
      '/enrolled': (): AgentEnrolled => ({ node: this.#opts.node, enrolledPods: this.#enrollment.enrolled() }),
      '/healthz': () => ({ ok: true }),
      '/readyz': (_req, res) => {
        const notReady = this.#notReady();
        sendJson(res, notReady.length === 0 ? 200 : 503, { ready: notReady.length === 0, notReady });
      },
      '/cni/add': (req, res) => this.#gate.handle(req, res),
      '/flows': (req, res, url) => (url.searchParams.get('follow') === '1' ? streamEvents((l) => this.#drops.subscribe(l), this.#followers, req, res) : { flows: this.#drops.list() }),
    });
    this.#control.start();
    // Chained once the agent answers the plugin: until its first reconcile it answers "starting", and the pod is retried.
    await this.#cni?.start();
    await this.#source.start((update) => this.#onState(update));
    this.#log.info('agent started', { node: o.node, bpfDir: o.bpfDir });
  }

  /**
   * Stops reconciling and serving. With `uninstall`, nothing of meshlet then
   * stays attached to the node's pods or its ztunnel, nor pinned; only after
   * that does the agent let go of the ztunnel, which takes new connections
   * until then (ztunnel.ts), so none meets a ztunnel that stopped first.
   */
  async stop(options: { uninstall?: boolean } = {}): Promise<void> {
    this.#source.stop();
    this.#dropWatch?.stop();
    for (const res of this.#followers) res.end();
    await new Promise((resolve) => (this.#admin ? this.#admin.close(resolve) : resolve(undefined)));
    try {
      // No pod waits for an agent that is going: the plugin leaves the node's CNI config before capture leaves the kernel.
      if (options.uninstall) await this.#cni?.remove();
      else this.#cni?.stop();
      if (options.uninstall) await this.#removeFromKernel();
    } finally {
      this.#control.stop();
    }
  }

  async #removeFromKernel(): Promise<void> {
    const roots = [this.#opts.kubeletCgroupRoot, this.#opts.ztunnelCgroup];
    const detached = await this.#datapath.removeFromKernel(roots);
    this.#log.info('removed from the kernel: programs detached, pins removed', { detached, roots, bpfDir: this.#opts.bpfDir });
  }

  /** Why the agent is not ready: its cluster state is not read or not applied, or the ztunnel does not hold it. */
  #notReady(): string[] {
    const reasons: string[] = [];
    if (!this.#source.synced) reasons.push('the cluster state has not been read in full yet');
    if (this.#lastError) reasons.push(`the last reconcile failed: ${this.#lastError}`);
    else if (!this.#reconciledAt) reasons.push('no reconcile has finished yet');
    const control = this.#control.status();
    if (!control.connected) reasons.push('not connected to the ztunnel');
    else if (!control.inSync) reasons.push(`the ztunnel does not hold the agent's state${control.lastError ? ` (${control.lastError})` : ''}`);
    return reasons;
  }

  async status(): Promise<AgentStatus> {
    const notReady = this.#notReady();
    const status: AgentStatus = {
      node: this.#opts.node,
      startedAt: this.#startedAt,
      ready: notReady.length === 0,
      notReady,
      datapath: await this.#datapath.status(),
      enrolledPods: this.#enrollment.enrolled(),
      strictSweeps: this.#sweeps.status(),
      rejected: [...this.#rejected, ...this.#enrollment.refused()],
      policyWarnings: this.#state.authorizationPolicies.flatMap((p) => p.warnings.map((warning) => ({ policy: `AuthorizationPolicy ${p.key}`, warning }))),
      endpointWarnings: this.#endpointWarnings,
      waypointWarnings: this.#waypointWarnings,
      ztunnel: this.#control.status(),
      source: this.#source.status(),
      counts: { workloads: this.#state.workloads.length, services: this.#state.services.length, nodes: this.#state.nodes.length },
    };
    if (this.#reconciledAt) status.reconciledAt = this.#reconciledAt;
    if (this.#lastError) status.lastError = this.#lastError;
    return status;
  }

  /** Settles once no reconcile is running or waiting: everything the source delivered so far has been applied, or has failed. */
  idle(): Promise<void> {
    return this.#drained;
  }

  #onState(update: ClusterUpdate): void {
    this.#latest = update;
    this.#pending = update;
    if (!this.#running) this.#drained = this.#drain();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#pending) {
      const read = this.#pending;
      this.#pending = undefined;
      try {
        await this.#reconcile(read);
        this.#reconciledAt = new Date().toISOString();
        this.#lastError = undefined;
      } catch (err) {
        this.#lastError = err instanceof Error ? err.message : String(err);
        this.#log.error('reconcile failed; will retry on the next change', { error: this.#lastError });
        // Retry soon with the newest input: the failed one unless something newer arrived, never an older one.
        this.#schedule(() => this.#onState(this.#latest ?? read), RETRY_MS);
      }
    }
    this.#running = false;
  }

  async #reconcile(read: ClusterUpdate): Promise<void> {
    const started = performance.now();
    const waitMs = read.changedAtMs === undefined ? undefined : Date.now() - read.changedAtMs;
    const { state, rejected, endpointWarnings } = this.#cluster.update(this.#gate.withAddresses(read.objects));
    this.#endpointWarnings = endpointWarnings;
    const unreadable = read.unreadable.map((u) => ({ ...u, rule: 'unreadable', since: new Date().toISOString() }));
    this.#rejected = [...rejected, ...unreadable];
    for (const r of this.#rejected) this.#log.warn('object rejected', { object: r.object, reason: r.reason });
    this.#state = state;
    this.#waypointWarnings = [...new WaypointIndex(state).problems()];
    for (const w of this.#waypointWarnings) this.#log.warn('waypoint binding', { ...w });
    this.#byIp = new Map(state.workloads.flatMap((w) => w.ips.map((ip) => [ip, w] as const)));
    this.#byUid = new Map(state.workloads.map((w) => [w.uid, w]));
    const converted = performance.now();
    // The ztunnel must know a pod before its traffic is redirected to it.
    const acked = await this.#control.push(state);
    if (!acked && this.#control.status().connected) this.#log.warn('ztunnel did not acknowledge the new state; it is being resynced', { error: this.#control.status().lastError });
    const pushed = performance.now();
    const enrolledBefore = this.#enrollment.enrolled();
    const changed = await this.#enrollment.reconcile(state);
    // After the tighter modes are in the kernel: nothing they refuse can connect anew meanwhile.
    this.#sweeps.afterReconcile(enrolledBefore, this.#enrollment.enrolled());
    await this.#cni?.setAmbientNamespaces(CniGate.ambientNamespaces(read.objects));
    this.#gate.settled({ state, enrolledUids: new Set(this.#enrollment.enrolled().map((p) => p.uid)), rejected: [...this.#rejected, ...this.#enrollment.refused()], ready: true });
    // Where enrollment latency goes, per phase, whenever capture changed.
    if (changed.enrolled + changed.unenrolled > 0) {
      const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
      this.#log.info('reconciled', { ...changed, ...(waitMs === undefined ? {} : { waitMs: ms(0, waitMs) }), stateMs: ms(started, converted), ztunnelMs: ms(converted, pushed), datapathMs: ms(pushed, performance.now()) });
    }
  }
}

// The node agent: cluster state in, BPF maps and ztunnel state out. One
// reconcile runs at a time; changes that arrive meanwhile fold into the next.
import type { Server, ServerResponse } from 'node:http';
import { listenAdmin, streamEvents } from '../lib/core/admin-http.ts';
import type { AgentEnrolled, AgentStatus } from '../lib/mesh/agent-status.ts';
import { BpfDatapath } from './bpf/datapath.ts';
import type { DropWatch } from './bpf/drop-watch.ts';
import { DropLog } from './drop-log.ts';
import { Enrollment } from './enrollment.ts';
import type { Logger } from '../lib/core/log.ts';
import { ClusterState, type Rejection } from '../lib/cluster/cluster-state.ts';
import { StateFileSource, type StateFileRead } from '../lib/cluster/sources/file.ts';
import { emptyMeshState, type MeshState, type Workload } from '../lib/mesh/model.ts';
import { ZtunnelControlClient } from './ztunnel-client.ts';

export interface AgentOptions {
  node: string;
  stateFile: string;
  podCgroupRoot: string;
  ztunnelCgroup: string;
  bpfDir: string;
  captureIp4: string;
  captureIp6?: string;
  inboundSourceIp4?: string;
  inboundSourceIp6?: string;
  probeSourceIp4?: string;
  probeSourceIp6?: string;
  rootNamespace: string;
  controlSocket: string;
  adminSocket: string;
}

export class NodeAgent {
  #opts: AgentOptions;
  #log: Logger;
  #control: ZtunnelControlClient;
  #cluster: ClusterState;
  #datapath!: BpfDatapath;
  #enrollment!: Enrollment;
  #source: StateFileSource;
  #admin: Server | undefined;
  #drops: DropLog;
  #dropWatch: DropWatch | undefined;
  /** Open `flows --follow` streams of drops. */
  #followers = new Set<ServerResponse>();
  #byIp = new Map<string, Workload>();
  #byUid = new Map<string, Workload>();
  #pending: StateFileRead | undefined;
  #running = false;
  #state: MeshState = emptyMeshState();
  #rejected: Rejection[] = [];
  #startedAt = new Date().toISOString();
  #reconciledAt: string | undefined;
  #lastError: string | undefined;

  constructor(opts: AgentOptions, log: Logger) {
    this.#opts = opts;
    this.#log = log;
    this.#control = new ZtunnelControlClient(opts.controlSocket, log);
    this.#cluster = new ClusterState({ rootNamespace: opts.rootNamespace });
    this.#drops = new DropLog(opts.node);
    this.#source = new StateFileSource(opts.stateFile, (read) => this.#onState(read));
  }

  async start(): Promise<void> {
    const o = this.#opts;
    this.#datapath = await BpfDatapath.open({
      pinDir: o.bpfDir,
      ztunnelIp4: o.captureIp4,
      ...(o.captureIp6 ? { ztunnelIp6: o.captureIp6 } : {}),
      ...(o.inboundSourceIp4 ? { inboundSourceIp4: o.inboundSourceIp4 } : {}),
      ...(o.inboundSourceIp6 ? { inboundSourceIp6: o.inboundSourceIp6 } : {}),
      ...(o.probeSourceIp4 ? { nodeIp4: o.probeSourceIp4 } : {}),
      ...(o.probeSourceIp6 ? { nodeIp6: o.probeSourceIp6 } : {}),
    });
    await this.#datapath.attachZtunnel(o.ztunnelCgroup);
    this.#enrollment = new Enrollment(this.#datapath, o.podCgroupRoot, o.node, this.#log);
    await this.#enrollment.adopt();
    this.#dropWatch = this.#datapath.watchDrops(
      (e) => this.#drops.record(e, this.#byUid.get(this.#enrollment.byCgroupId(e.cgroupId)?.uid ?? ''), (ip) => this.#byIp.get(ip)),
      (err) => this.#log.error('reading drop events failed', { error: err.message }),
    );
    this.#admin = await listenAdmin(o.adminSocket, {
      '/status': () => this.status(),
      '/enrolled': (): AgentEnrolled => ({ node: this.#opts.node, enrolledPods: this.#enrollment.enrolled() }),
      '/healthz': () => ({ ok: true }),
      '/flows': (req, res, url) => (url.searchParams.get('follow') === '1' ? streamEvents((l) => this.#drops.subscribe(l), this.#followers, req, res) : { flows: this.#drops.list() }),
    });
    this.#control.start();
    await this.#source.start();
    this.#log.info('agent started', { node: o.node, bpfDir: o.bpfDir });
  }

  async stop(): Promise<void> {
    this.#source.stop();
    this.#control.stop();
    this.#dropWatch?.stop();
    for (const res of this.#followers) res.end();
    await new Promise((resolve) => (this.#admin ? this.#admin.close(resolve) : resolve(undefined)));
  }

  async status(): Promise<AgentStatus> {
    const status: AgentStatus = {
      node: this.#opts.node,
      startedAt: this.#startedAt,
      datapath: await this.#datapath.status(),
      enrolledPods: this.#enrollment.enrolled(),
      rejected: this.#rejected,
      policyWarnings: this.#state.authorizationPolicies.flatMap((p) => p.warnings.map((warning) => ({ policy: `AuthorizationPolicy ${p.key}`, warning }))),
      ztunnel: this.#control.status(),
      counts: { workloads: this.#state.workloads.length, services: this.#state.services.length, nodes: this.#state.nodes.length },
    };
    if (this.#reconciledAt) status.reconciledAt = this.#reconciledAt;
    if (this.#lastError) status.lastError = this.#lastError;
    return status;
  }

  #onState(read: StateFileRead): void {
    this.#pending = read;
    if (!this.#running) void this.#drain();
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
        // Retry the same input soon unless something newer arrived.
        setTimeout(() => this.#onState(this.#pending ?? read), 1000).unref();
      }
    }
    this.#running = false;
  }

  async #reconcile(read: StateFileRead): Promise<void> {
    const started = performance.now();
    const waitMs = read.changedAtMs === undefined ? undefined : Date.now() - read.changedAtMs;
    const { state, rejected } = this.#cluster.update(read.objects);
    const unreadable = read.unreadable.map((u) => ({ object: `${this.#opts.stateFile} document ${u.document}`, reason: u.reason, since: new Date().toISOString() }));
    this.#rejected = [...rejected, ...unreadable];
    for (const r of this.#rejected) this.#log.warn('object rejected', { object: r.object, reason: r.reason });
    this.#state = state;
    this.#byIp = new Map(state.workloads.flatMap((w) => w.ips.map((ip) => [ip, w] as const)));
    this.#byUid = new Map(state.workloads.map((w) => [w.uid, w]));
    const converted = performance.now();
    // The ztunnel must know a pod before its traffic is redirected to it.
    const acked = await this.#control.push(state);
    if (!acked && this.#control.status().connected) this.#log.warn('ztunnel did not acknowledge the new state', {});
    const pushed = performance.now();
    const changed = await this.#enrollment.reconcile(state);
    // Where enrollment latency goes, per phase, whenever capture changed.
    if (changed.enrolled + changed.unenrolled > 0) {
      const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
      this.#log.info('reconciled', { ...changed, ...(waitMs === undefined ? {} : { waitMs: ms(0, waitMs) }), stateMs: ms(started, converted), ztunnelMs: ms(converted, pushed), datapathMs: ms(pushed, performance.now()) });
    }
  }
}

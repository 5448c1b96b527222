// Keeps the kernel's capture in step with which pods on this node are
// enrolled. Enrolling is a map update plus attaches; un-enrolling deletes the
// pod's map entry first, so capture stops at once, and never touches
// connections already redirected (they live on in the ztunnel). A pod the
// kernel's per-pod tables have no room for is refused as a pod the cluster
// state rejects is: a new one is not enrolled, an enrolled one keeps what it
// had; the refusal shows among the rejected objects, rule 'no-room'.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { EnrollmentDatapath, NoRoom, PodCapture } from './datapath.ts';
import type { MirroredMap } from './bpf/mirror.ts';
import type { Rejection } from '../lib/cluster/cluster-state.ts';
import { EXCLUDE_OUTBOUND_PORTS_ANNOTATION } from '../lib/cluster/convert.ts';
import type { EnrolledPod, InboundEnforcement } from '../lib/mesh/agent-status.ts';
import { inboundEnforcement, portLevelPorts } from './inbound-mode.ts';
import { CGROUP_DRIVERS, detectCgroupDriver, kubepodsCgroup, listPodCgroups, PodCgroupError, resolvePodCgroupDir, type CgroupDriver, type QosClass } from '../lib/cluster/cgroup-layout.ts';
import type { CgroupDriverSetting } from '../lib/config/agent.ts';
import { ConfigError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';
import { PolicyStore } from '../lib/policy/index.ts';
import type { MeshState } from '../lib/mesh/kinds.ts';
import { WaypointIndex } from '../lib/mesh/waypoints.ts';
import type { Workload } from '../lib/mesh/model.ts';

export interface EnrollmentOptions {
  datapath: EnrollmentDatapath;
  /** The node's kubelet cgroup root (it holds kubepods.slice or kubepods): pod cgroups are found below it from UID and QoS class. */
  kubeletCgroupRoot: string;
  /** The kubelet's cgroup driver; auto: the one whose kubepods cgroup exists under the root. */
  cgroupDriver: CgroupDriverSetting;
  /** This node: only its pods are enrolled here. */
  node: string;
  log: Logger;
}

/** Where to look first for a workload that carries no QoS class: a pod without resources is BestEffort (the other classes are tried next). */
const UNKNOWN_QOS: QosClass = 'BestEffort';

/** What fills each per-pod table, so a refusal says what to cut. */
const TABLE_FILLED_BY: Readonly<Record<MirroredMap, string>> = {
  pods: 'enrolled pods on this node',
  excluded_ports: `ports in the pods' ${EXCLUDE_OUTBOUND_PORTS_ANNOTATION} annotations`,
  port_mode: 'port-level mTLS modes (PeerAuthentication portLevelMtls) of the pods',
  probe_ports: "the pods' probe ports",
};

/** Why the pod is refused, naming the table, its fill and what fills it. */
function noRoomReason(room: NoRoom, enrolled: boolean): string {
  const effect = enrolled ? 'its update is not applied; the kernel keeps its previous entries' : 'it is not enrolled (not captured)';
  return `the node's BPF table ${room.map} has room for ${room.free} more of its ${room.capacity} entries and the pod needs ${room.needed}; `
    + `${effect} until pods leaving the node free room or it needs fewer (the table holds the ${TABLE_FILLED_BY[room.map]})`;
}

export class Enrollment {
  #datapath: EnrollmentDatapath;
  #root: string;
  #driverSetting: CgroupDriverSetting;
  /** The configured driver, or the detected one once detection succeeded. */
  #driver: CgroupDriver | undefined;
  #node: string;
  #log: Logger;
  #current = new Map<string, EnrolledPod>();
  /** Per enrolled pod, the QoS class its cgroup was found for: a workload that says another is looked up again. */
  #foundFor = new Map<string, QosClass | undefined>();
  /** Pods the datapath had no room for, by UID. */
  #refused = new Map<string, Rejection>();

  constructor(opts: EnrollmentOptions) {
    this.#datapath = opts.datapath;
    this.#root = opts.kubeletCgroupRoot;
    this.#driverSetting = opts.cgroupDriver;
    this.#driver = opts.cgroupDriver === 'auto' ? undefined : opts.cgroupDriver;
    this.#node = opts.node;
    this.#log = opts.log;
  }

  enrolled(): EnrolledPod[] {
    return [...this.#current.values()];
  }

  /** Pods the kernel's tables had no room for at their latest try, as rejected objects (rule 'no-room'). */
  refused(): Rejection[] {
    return [...this.#refused.values()];
  }

  /** The layouts pods are looked for in: the configured driver's, or both while it is auto. */
  #drivers(): readonly CgroupDriver[] {
    return this.#driverSetting === 'auto' ? CGROUP_DRIVERS : [this.#driverSetting];
  }

  /**
   * After a restart: take over what the pinned maps say is enrolled, so
   * nothing is attached twice. Only the kubepods trees are walked, never the
   * node's other cgroups (the agent's, the ztunnel's, system services).
   */
  async adopt(): Promise<void> {
    for (const driver of this.#drivers()) await this.#datapath.learnAttachments(join(this.#root, kubepodsCgroup(driver)));
    const ids = new Set((await this.#datapath.enrolledCgroupIds()).map(String));
    const pods = (await Promise.all(this.#drivers().map((d) => listPodCgroups(this.#root, d)))).flat();
    for (const pod of pods) {
      const st = await stat(pod.dir, { bigint: true }).catch(() => undefined);
      if (!st?.isDirectory() || !ids.has(String(st.ino))) continue;
      this.#current.set(pod.uid, { uid: pod.uid, namespace: '', name: '', cgroupPath: pod.dir, cgroupId: String(st.ino), ips: [], excludeOutboundPorts: [], since: new Date().toISOString() });
      this.#foundFor.set(pod.uid, pod.qos);
    }
    if (this.#current.size > 0) this.#log.info('adopted enrolled pods from pinned maps', { pods: this.#current.size });
  }

  /** The kubelet's cgroup driver; refuses (ConfigError naming the flags) when auto cannot tell. */
  async #cgroupDriver(): Promise<CgroupDriver> {
    if (this.#driver) return this.#driver;
    const fix = `set --cgroup-driver to the kubelet's (systemd or cgroupfs) and --kubelet-cgroup-root to the kubelet's cgroup root (the directory holding kubepods.slice or kubepods; --kubelet-cgroup-root is ${this.#root})`;
    let detected: CgroupDriver | undefined;
    try {
      detected = await detectCgroupDriver(this.#root);
    } catch (err) {
      if (err instanceof PodCgroupError) throw new ConfigError(`cannot tell the kubelet's cgroup driver: ${err.message}; ${fix}`);
      throw err;
    }
    if (!detected) throw new ConfigError(`cannot tell the kubelet's cgroup driver: ${this.#root} holds neither kubepods.slice (systemd) nor kubepods (cgroupfs); ${fix}`);
    this.#log.info('kubelet cgroup driver detected', { driver: detected, root: this.#root });
    return (this.#driver = detected);
  }

  /** The pod's cgroup directory and id, or undefined (logged) while it has none. */
  async #locate(w: Workload, driver: CgroupDriver): Promise<{ dir: string; cgroupId: string } | undefined> {
    const pod = `${w.namespace}/${w.name}`;
    try {
      const { dir } = await resolvePodCgroupDir(this.#root, w.uid, w.qosClass ?? UNKNOWN_QOS, driver);
      const st = await stat(dir, { bigint: true });
      return { dir, cgroupId: String(st.ino) };
    } catch (err) {
      const missing = err instanceof PodCgroupError || (err as NodeJS.ErrnoException).code === 'ENOENT';
      if (!missing) throw err;
      this.#log.warn('pod cgroup not found; will retry', { pod, reason: (err as Error).message });
      return undefined;
    }
  }

  /** The enrolled pod whose cgroup has this id. */
  byCgroupId(id: bigint): EnrolledPod | undefined {
    for (const p of this.#current.values()) if (p.cgroupId === String(id)) return p;
    return undefined;
  }

  /** Brings capture in line with `state`; returns how many pods it enrolled (or updated) and un-enrolled. */
  async reconcile(state: MeshState): Promise<{ enrolled: number; unenrolled: number }> {
    const desired = new Map<string, Workload>();
    for (const w of state.workloads) if (w.node === this.#node && w.enrolled) desired.set(w.uid, w);
    const policies = new PolicyStore(state.authorizationPolicies, state.peerAuthentications);
    const portLevel = portLevelPorts(state.peerAuthentications);
    const waypoints = new WaypointIndex(state);

    const changed: { workload: Workload; inbound: InboundEnforcement | undefined }[] = [];
    for (const w of desired.values()) {
      const inbound = inboundEnforcement(w, policies, portLevel, waypoints.guarded(w));
      const have = this.#current.get(w.uid);
      const sameCgroup = this.#foundFor.has(w.uid) && this.#foundFor.get(w.uid) === w.qosClass;
      // The pod's addresses are in its pods entry: the kernel checks its connections' sources against them.
      const same = have && isDeepStrictEqual(have.ips, w.ips) && isDeepStrictEqual(have.excludeOutboundPorts, w.excludeOutboundPorts) && isDeepStrictEqual(have.inbound, inbound);
      if (have && sameCgroup && same) {
        have.namespace = w.namespace;
        have.name = w.name;
        continue;
      }
      changed.push({ workload: w, inbound });
    }
    // A refusal stands while the pod still waits for its change: gone or back in step, it is moot.
    const waiting = new Set(changed.map((c) => c.workload.uid));
    for (const uid of this.#refused.keys()) if (!waiting.has(uid)) this.#refused.delete(uid);
    // Only pods to (re-)enroll need the driver: a node that cannot tell still lets go below.
    let driver: CgroupDriver | undefined;
    let refusal: ConfigError | undefined;
    if (changed.length > 0) {
      try {
        driver = await this.#cgroupDriver();
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        refusal = err;
      }
    }
    // All at once: a namespace label enrolls many pods in one reconcile.
    const found = driver === undefined ? [] : await Promise.all(changed.map(async (c) => ({ ...c, at: await this.#locate(c.workload, driver) })));
    const enroll: { workload: Workload; capture: PodCapture; cgroupId: string }[] = [];
    /** Enrolled pods whose cgroup is now another (their QoS class changed): the old one is let go. */
    const moved: EnrolledPod[] = [];
    for (const { workload: w, inbound, at } of found) {
      if (!at) continue;
      const have = this.#current.get(w.uid);
      if (have && have.cgroupPath !== at.dir) moved.push(have);
      enroll.push({ workload: w, cgroupId: at.cgroupId, capture: { cgroupPath: at.dir, ips: w.ips, excludeOutboundPorts: w.excludeOutboundPorts, inbound } });
    }
    const leave = [...this.#current.values()].filter((p) => !desired.has(p.uid));

    if (leave.length + moved.length > 0) {
      await this.#datapath.unenroll([...leave, ...moved].map((p) => p.cgroupPath));
      for (const p of leave) {
        this.#current.delete(p.uid);
        this.#foundFor.delete(p.uid);
        this.#log.info('pod un-enrolled', { pod: `${p.namespace}/${p.name}`, uid: p.uid });
      }
      for (const p of moved) this.#log.info('pod cgroup moved; capture follows it', { pod: `${p.namespace}/${p.name}`, uid: p.uid, from: p.cgroupPath });
    }
    if (refusal) throw refusal;
    let written = 0;
    let dropped = 0;
    if (enroll.length > 0) {
      const noRoom = new Map((await this.#datapath.enroll(enroll.map((e) => e.capture))).map((r) => [r.cgroupPath, r]));
      const since = new Date().toISOString();
      for (const { workload: w, capture, cgroupId } of enroll) {
        const previous = this.#current.get(w.uid);
        const room = noRoom.get(capture.cgroupPath);
        if (room) {
          // Let go of its old cgroup already: nothing of it is captured now.
          const movedAway = previous !== undefined && previous.cgroupPath !== capture.cgroupPath;
          if (movedAway) {
            this.#current.delete(w.uid);
            this.#foundFor.delete(w.uid);
            dropped += 1;
          }
          this.#refuse(w, noRoomReason(room, previous !== undefined && !movedAway), since);
          continue;
        }
        this.#refused.delete(w.uid);
        written += 1;
        this.#current.set(w.uid, {
          uid: w.uid, namespace: w.namespace, name: w.name, cgroupPath: capture.cgroupPath, cgroupId, ips: w.ips,
          excludeOutboundPorts: w.excludeOutboundPorts, since: previous?.since ?? since, ...(capture.inbound ? { inbound: capture.inbound } : {}),
        });
        this.#foundFor.set(w.uid, w.qosClass);
        this.#log.info('pod enrolled', { pod: `${w.namespace}/${w.name}`, uid: w.uid });
      }
    }
    return { enrolled: written, unenrolled: leave.length + dropped };
  }

  /** Records a refusal, keeping its first sighting while the reason stays the same. */
  #refuse(w: Workload, reason: string, now: string): void {
    const object = `Pod ${w.namespace}/${w.name}`;
    const previous = this.#refused.get(w.uid);
    if (previous?.reason !== reason) this.#log.warn('pod refused enrollment', { pod: `${w.namespace}/${w.name}`, uid: w.uid, reason });
    this.#refused.set(w.uid, { object, reason, rule: 'no-room', since: previous?.reason === reason ? previous.since : now });
  }
}

// Keeps the kernel's capture in step with which pods on this node are
// enrolled. Enrolling is a map update plus attaches; un-enrolling deletes the
// pod's map entry first, so capture stops at once, and never touches
// connections already redirected (they live on in the ztunnel).
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { EnrollmentDatapath, PodCapture } from './datapath.ts';
import type { EnrolledPod, InboundEnforcement } from '../lib/mesh/agent-status.ts';
import { inboundEnforcement, portLevelPorts } from './inbound-mode.ts';
import type { Logger } from '../lib/core/log.ts';
import { PolicyStore } from '../lib/policy/index.ts';
import type { MeshState } from '../lib/mesh/kinds.ts';
import type { Workload } from '../lib/mesh/model.ts';

export interface EnrollmentOptions {
  datapath: EnrollmentDatapath;
  /** cgroup v2 directory holding one cgroup per pod, named by pod UID. */
  podCgroupRoot: string;
  /** This node: only its pods are enrolled here. */
  node: string;
  log: Logger;
}

export class Enrollment {
  #datapath: EnrollmentDatapath;
  #podCgroupRoot: string;
  #node: string;
  #log: Logger;
  #current = new Map<string, EnrolledPod>();

  constructor(opts: EnrollmentOptions) {
    this.#datapath = opts.datapath;
    this.#podCgroupRoot = opts.podCgroupRoot;
    this.#node = opts.node;
    this.#log = opts.log;
  }

  /** Pod cgroups are named by pod UID under the node's pod cgroup root. */
  cgroupOf(uid: string): string {
    return join(this.#podCgroupRoot, uid);
  }

  enrolled(): EnrolledPod[] {
    return [...this.#current.values()];
  }

  /** After a restart: take over what the pinned maps say is enrolled, so nothing is attached twice. */
  async adopt(): Promise<void> {
    await this.#datapath.learnAttachments(this.#podCgroupRoot);
    const ids = new Set((await this.#datapath.enrolledCgroupIds()).map(String));
    let entries: string[] = [];
    try {
      entries = await readdir(this.#podCgroupRoot);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const uid of entries) {
      const path = this.cgroupOf(uid);
      const st = await stat(path, { bigint: true }).catch(() => undefined);
      if (!st?.isDirectory() || !ids.has(String(st.ino))) continue;
      this.#current.set(uid, { uid, namespace: '', name: '', cgroupPath: path, cgroupId: String(st.ino), excludeOutboundPorts: [], since: new Date().toISOString() });
    }
    if (this.#current.size > 0) this.#log.info('adopted enrolled pods from pinned maps', { pods: this.#current.size });
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

    const changed: { workload: Workload; inbound: InboundEnforcement | undefined }[] = [];
    for (const w of desired.values()) {
      const inbound = inboundEnforcement(w, policies, portLevel);
      const have = this.#current.get(w.uid);
      if (have && isDeepStrictEqual(have.excludeOutboundPorts, w.excludeOutboundPorts) && isDeepStrictEqual(have.inbound, inbound)) {
        have.namespace = w.namespace;
        have.name = w.name;
        continue;
      }
      changed.push({ workload: w, inbound });
    }
    // All at once: a namespace label enrolls many pods in one reconcile.
    const found = await Promise.all(changed.map(async (c) => {
      const cgroupPath = this.cgroupOf(c.workload.uid);
      return { ...c, cgroupPath, st: await stat(cgroupPath, { bigint: true }).catch(() => undefined) };
    }));
    const enroll: { workload: Workload; capture: PodCapture; cgroupId: string }[] = [];
    for (const { workload: w, inbound, cgroupPath, st } of found) {
      if (!st) {
        this.#log.warn('pod cgroup not found; will retry', { pod: `${w.namespace}/${w.name}`, cgroup: cgroupPath });
        continue;
      }
      enroll.push({ workload: w, cgroupId: String(st.ino), capture: { cgroupPath, excludeOutboundPorts: w.excludeOutboundPorts, inbound } });
    }
    const leave = [...this.#current.values()].filter((p) => !desired.has(p.uid));

    if (leave.length > 0) {
      await this.#datapath.unenroll(leave.map((p) => p.cgroupPath));
      for (const p of leave) {
        this.#current.delete(p.uid);
        this.#log.info('pod un-enrolled', { pod: `${p.namespace}/${p.name}`, uid: p.uid });
      }
    }
    if (enroll.length > 0) {
      await this.#datapath.enroll(enroll.map((e) => e.capture));
      const since = new Date().toISOString();
      for (const { workload: w, capture, cgroupId } of enroll) {
        const previous = this.#current.get(w.uid);
        this.#current.set(w.uid, {
          uid: w.uid, namespace: w.namespace, name: w.name, cgroupPath: capture.cgroupPath, cgroupId,
          excludeOutboundPorts: w.excludeOutboundPorts, since: previous?.since ?? since, ...(capture.inbound ? { inbound: capture.inbound } : {}),
        });
        this.#log.info('pod enrolled', { pod: `${w.namespace}/${w.name}`, uid: w.uid });
      }
    }
    return { enrolled: enroll.length, unenrolled: leave.length };
  }
}

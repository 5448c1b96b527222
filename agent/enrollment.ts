// Keeps the kernel's capture in step with which pods on this node are
// enrolled. Enrolling is a map update plus attaches; un-enrolling deletes the
// pod's map entry first, so capture stops at once, and never touches
// connections already redirected (they live on in the ztunnel).
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { BpfDatapath, PodCapture } from './bpf/datapath.ts';
import type { Workload } from './state/model.ts';
import type { Logger } from './log.ts';

export interface EnrolledPod {
  uid: string;
  namespace: string;
  name: string;
  cgroupPath: string;
  excludeOutboundPorts: number[];
  since: string;
}

export class Enrollment {
  #datapath: BpfDatapath;
  #podCgroupRoot: string;
  #node: string;
  #log: Logger;
  #current = new Map<string, EnrolledPod>();

  constructor(datapath: BpfDatapath, podCgroupRoot: string, node: string, log: Logger) {
    this.#datapath = datapath;
    this.#podCgroupRoot = podCgroupRoot;
    this.#node = node;
    this.#log = log;
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
      this.#current.set(uid, { uid, namespace: '', name: '', cgroupPath: path, excludeOutboundPorts: [], since: new Date().toISOString() });
    }
    if (this.#current.size > 0) this.#log.info('adopted enrolled pods from pinned maps', { pods: this.#current.size });
  }

  async reconcile(workloads: readonly Workload[]): Promise<void> {
    const desired = new Map<string, Workload>();
    for (const w of workloads) if (w.node === this.#node && w.enrolled) desired.set(w.uid, w);

    const enroll: { workload: Workload; capture: PodCapture }[] = [];
    for (const w of desired.values()) {
      const have = this.#current.get(w.uid);
      if (have && isDeepStrictEqual(have.excludeOutboundPorts, w.excludeOutboundPorts)) {
        have.namespace = w.namespace;
        have.name = w.name;
        continue;
      }
      const cgroupPath = this.cgroupOf(w.uid);
      if (!(await stat(cgroupPath).catch(() => undefined))) {
        this.#log.warn('pod cgroup not found; will retry', { pod: `${w.namespace}/${w.name}`, cgroup: cgroupPath });
        continue;
      }
      enroll.push({ workload: w, capture: { cgroupPath, excludeOutboundPorts: w.excludeOutboundPorts } });
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
      for (const { workload: w, capture } of enroll) {
        this.#current.set(w.uid, { uid: w.uid, namespace: w.namespace, name: w.name, cgroupPath: capture.cgroupPath, excludeOutboundPorts: w.excludeOutboundPorts, since });
        this.#log.info('pod enrolled', { pod: `${w.namespace}/${w.name}`, uid: w.uid });
      }
    }
  }
}

// What the node agent needs from the capture layer, and no more: the BPF
// loader (bpf/datapath.ts) implements it on the kernel, the agent's unit
// tests with a recording double.
import type { BpfError } from '../lib/core/errors.ts';
import type { DatapathStatus, InboundEnforcement } from '../lib/mesh/agent-status.ts';
import type { DropEvent, DropWatch } from './bpf/drop-watch.ts';
import type { MirroredMap } from './bpf/mirror.ts';
import type { SweepResult } from './bpf/strict-sweep.ts';

/** How one enrolled pod is captured. */
export interface PodCapture {
  cgroupPath: string;
  /**
   * The pod's own addresses (the first of each family counts): the kernel
   * marks a redirected connection from any other source address, and the
   * ztunnel refuses it (source_mismatch). None: every one is refused.
   */
  ips: string[];
  excludeOutboundPorts: number[];
  /** Absent: PERMISSIVE, nothing enforced. */
  inbound?: InboundEnforcement;
}

/**
 * A pod the kernel's per-pod tables have no room for: nothing of it was
 * written, so a new pod stays out and an enrolled one keeps its entries.
 */
export interface NoRoom {
  cgroupPath: string;
  /** The first table without room. */
  map: MirroredMap;
  /** New entries the pod needs there. */
  needed: number;
  /** Entries the table has left. */
  free: number;
  /** The table's max_entries, shared by every pod on the node. */
  capacity: number;
}

/** Enrollment's part: which pod cgroups are captured, and how. */
export interface EnrollmentDatapath {
  /** Takes in where our programs are already attached below root, so nothing is attached twice. */
  learnAttachments(root: string): Promise<void>;
  /** Cgroup ids the pinned maps hold as enrolled (after a restart: what to adopt). */
  enrolledCgroupIds(): Promise<bigint[]>;
  /** Enrolls pods, or brings enrolled ones up to date, all at once; returns those left out, whole, for want of room. */
  enroll(pods: PodCapture[]): Promise<NoRoom[]>;
  /** Stops capture of these cgroups first, then detaches. */
  unenroll(cgroupPaths: string[]): Promise<void>;
}

/** The node agent's part besides enrollment: the ztunnel's own hook, drop events, status. */
export interface Datapath extends EnrollmentDatapath {
  attachZtunnel(cgroupPath: string): Promise<void>;
  /** Uninstall: detaches every program below roots and removes the pins; returns the attachments removed. */
  removeFromKernel(roots: readonly string[]): Promise<number>;
  /** Streams inbound drops until stop(); errors end the watch and go to onError. */
  watchDrops(onDrop: (e: DropEvent) => void, onError: (err: BpfError) => void): DropWatch;
  status(): Promise<DatapathStatus>;
  /** Ends the pod's established connections that its inbound enforcement (already enrolled) does not admit. */
  closeInadmissible(pod: PodCapture): Promise<SweepResult>;
}

// What `GET /status` on the agent's admin socket returns; `meshlet status`
// renders it. `GET /enrolled` is its cheap part, for pollers: no BPF map reads.
import type { DatapathStatus } from './bpf/datapath.ts';
import type { EnrolledPod } from './enrollment.ts';
import type { Rejection } from './state/cluster-state.ts';
import type { ControlStatus } from './ztunnel-client.ts';

export interface AgentStatus {
  node: string;
  startedAt: string;
  /** Time of the last successful reconcile. */
  reconciledAt?: string;
  lastError?: string;
  datapath: DatapathStatus;
  enrolledPods: EnrolledPod[];
  rejected: Rejection[];
  /** What accepted policies cannot enforce at L4, and how they fail closed instead. */
  policyWarnings: { policy: string; warning: string }[];
  ztunnel: ControlStatus;
  counts: { workloads: number; services: number; nodes: number };
}

export interface AgentEnrolled {
  node: string;
  enrolledPods: EnrolledPod[];
}

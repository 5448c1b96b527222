// The agent's admin API as JSON: what `GET /status` on its admin socket
// returns and `meshlet status` renders. `GET /enrolled` is its cheap part, for
// pollers: no BPF map reads. The CLI reads these types without importing the
// agent.
import type { Rejection } from '../cluster/cluster-state.ts';
import type { EndpointWarning } from '../cluster/endpoint-slices.ts';
import type { NodeAddresses } from '../config/addresses.ts';
import type { ClusterSourceStatus } from '../cluster/sources/source.ts';
import type { WaypointProblem } from './waypoints.ts';

export type InboundMode = 'STRICT' | 'PERMISSIVE';

/**
 * What the ingress hook enforces for one enrolled pod: its mode, per-port
 * overrides, and the probe ports the node address may reach under STRICT.
 */
export interface InboundEnforcement {
  /** The pod's default. */
  mode: InboundMode;
  /** Per destination port, overriding the default. */
  portModes?: Record<number, InboundMode>;
  /** Ports the node address may reach under STRICT. */
  probePorts?: number[];
  /** Rejected policies whose fail-closed stand-ins apply to the pod ("Kind namespace/name"): why it is stricter than its valid policies say. */
  failClosed?: string[];
}

export interface DatapathStatus {
  programs: { name: string; id: number }[];
  /** What the kernel's node_config holds: the capture address and the sources STRICT admits. */
  addresses: Partial<Omit<NodeAddresses, 'nodeIp4' | 'nodeIp6'>>;
  maps: { name: string; entries: number; maxEntries: number }[];
  /** True when open() found the programs already pinned (agent restart). */
  adopted?: boolean;
}

export interface EnrolledPod {
  uid: string;
  namespace: string;
  name: string;
  cgroupPath: string;
  /** cgroup v2 id (the directory's inode), in decimal: the kernel's name for the pod. */
  cgroupId: string;
  /** The addresses the kernel vouches for as this pod's: its redirected connections from any other source are refused (source_mismatch). */
  ips: string[];
  excludeOutboundPorts: number[];
  inbound?: InboundEnforcement;
  since: string;
}

/**
 * Established connections the agent ended because a pod's inbound
 * enforcement tightened: admitted under the looser one, refused by the new.
 */
export interface StrictSweepStatus {
  /** Since the agent started. */
  closed: number;
  /** The kernel refused to end these. */
  failed: number;
  /** The latest sweeps that ended something, could not, or failed; newest last. */
  recent: { pod: string; at: string; closed: number; failed: number; error?: string }[];
}

/** The agent's end of the control channel to its ztunnel. */
export interface ControlStatus {
  connected: boolean;
  /** The ztunnel acknowledged the agent's latest state: what it serves is what the agent computed. */
  inSync: boolean;
  /** Last version the ztunnel acknowledged. */
  ackedVersion: number;
  /** Messages the ztunnel refused (or left unanswered); each one was followed by a full snapshot. */
  refused: number;
  lastError?: string;
}

export interface AgentStatus {
  node: string;
  startedAt: string;
  /** Cluster state read, reconciled, and held by the ztunnel as the agent computed it (`GET /readyz`). */
  ready: boolean;
  /** Why not ready, one line each. */
  notReady: string[];
  /** Time of the last successful reconcile. */
  reconciledAt?: string;
  lastError?: string;
  datapath: DatapathStatus;
  enrolledPods: EnrolledPod[];
  strictSweeps?: StrictSweepStatus;
  rejected: Rejection[];
  /** What accepted policies cannot enforce at L4, and how they fail closed instead. */
  policyWarnings: { policy: string; warning: string }[];
  /** Service endpoints the mesh leaves out (fail closed), by the EndpointSlice that lists them. */
  endpointWarnings: EndpointWarning[];
  /** Services and pods whose waypoint is missing or has no ready pod (their traffic is refused), bindings a waypoint does not take, policies nothing enforces. */
  waypointWarnings: WaypointProblem[];
  ztunnel: ControlStatus;
  /** Where the cluster objects come from, and whether the first full snapshot has arrived. */
  source: ClusterSourceStatus;
  counts: { workloads: number; services: number; nodes: number };
}

export interface AgentEnrolled {
  node: string;
  enrolledPods: EnrolledPod[];
}

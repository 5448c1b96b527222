// Agent → ztunnel control channel: newline-delimited JSON over a Unix socket
// the ztunnel listens on. The agent sends a full snapshot on connect, then
// deltas; the ztunnel answers each with ack or nack. A ztunnel that loses the
// agent keeps serving its last state (fail static).
import type { AuthzPolicy, PeerAuthPolicy } from '../policy/types.ts';
import type { MeshNode, MeshState, Service, Workload } from './model.ts';

export interface SnapshotMessage {
  type: 'snapshot';
  version: number;
  state: MeshState;
}

export interface DeltaMessage {
  type: 'delta';
  version: number;
  upsert: { nodes: MeshNode[]; workloads: Workload[]; services: Service[]; authorizationPolicies: AuthzPolicy[]; peerAuthentications: PeerAuthPolicy[] };
  /** Keys: node name, workload uid, service and policy "namespace/name". */
  remove: { nodes: string[]; workloads: string[]; services: string[]; authorizationPolicies: string[]; peerAuthentications: string[] };
}

export type ControlMessage = SnapshotMessage | DeltaMessage;

export type ControlReply =
  | { type: 'ack'; version: number }
  | { type: 'nack'; version: number; error: string };

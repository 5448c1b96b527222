// The waypoints' recent requests for `meshlet flows`: the waypoint pods the
// sandbox's API server holds (the controller's labels, as Istio's waypoint
// template has them), each one's admin API read on its pod's loopback (where
// it listens, as Envoy's admin does), listed or followed. A waypoint that
// cannot be read is a warning naming it; the others still answer.
import { PORTS } from '../lib/mesh/model.ts';
import { sandboxLoopbackGet, sandboxLoopbackStream, sandboxPods, type SandboxPodPlace } from '../sandbox/api.ts';
import type { RequestSummary } from '../waypoint/api.ts';
import { l7Record, type L7FlowRecord, type WaypointPodRef } from './l7-flows.ts';

const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
const MANAGED_LABEL = 'gateway.istio.io/managed';
/** Pods a waypoint controller made for a Gateway. */
export const WAYPOINT_POD_SELECTOR = `${GATEWAY_NAME_LABEL},${MANAGED_LABEL}`;

export interface WaypointPod extends WaypointPodRef {
  netns: string;
}

export type Warn = (message: string) => void;

const describe = (w: WaypointPodRef): string => `waypoint ${w.namespace}/${w.name} (pod ${w.pod} on ${w.node})`;
const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const waypointOf = (p: SandboxPodPlace): WaypointPod => ({ namespace: p.namespace, name: p.labels[GATEWAY_NAME_LABEL] ?? p.name, pod: p.name, node: p.node, netns: p.netns });

/** The sandbox's waypoint pods, those on `node` only when it is given. */
export async function waypointPods(sandbox: string, node?: string): Promise<WaypointPod[]> {
  return (await sandboxPods(sandbox, WAYPOINT_POD_SELECTOR)).filter((p) => node === undefined || p.node === node).map(waypointOf);
}

/** `meshlet waypoint --admin`'s default port: the controller's Deployment leaves the flag alone. */
const target = (w: WaypointPod) => ({ netns: w.netns, port: PORTS.admin });
/** The pod as records name it: where it lives on this host is no part of them. */
const refOf = ({ netns: _netns, ...ref }: WaypointPod): WaypointPodRef => ref;

/** Every waypoint's recent requests (the admin caps each at 2000); one that does not answer is warned about and skipped. */
export async function listRequests(pods: readonly WaypointPod[], warn: Warn): Promise<L7FlowRecord[]> {
  const replies = await Promise.all(pods.map(async (w) => {
    try {
      const reply = await sandboxLoopbackGet(target(w), '/requests');
      if (reply.status !== 200) throw new Error(`HTTP ${reply.status}: ${reply.body.trim().slice(0, 200)}`);
      const list = JSON.parse(reply.body) as unknown;
      if (!Array.isArray(list)) throw new Error('GET /requests did not answer a list');
      return (list as RequestSummary[]).map((s) => l7Record(refOf(w), s));
    } catch (err) {
      warn(`cannot read the recent requests of ${describe(w)}: ${reason(err)}`);
      return [];
    }
  }));
  return replies.flat();
}

/** Follows every waypoint's requests until `signal` aborts; one whose stream cannot be opened or breaks is warned about, the rest go on. */
export async function followRequests(pods: readonly WaypointPod[], onRecord: (r: L7FlowRecord) => void, signal: AbortSignal, warn: Warn): Promise<void> {
  await Promise.all(pods.map(async (w) => {
    try {
      await sandboxLoopbackStream(target(w), '/requests?follow=1', (line) => onRecord(l7Record(refOf(w), JSON.parse(line) as RequestSummary)), signal);
    } catch (err) {
      warn(`stopped following the requests of ${describe(w)}: ${reason(err)}`);
    }
  }));
}

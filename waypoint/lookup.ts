// Which tunnels the waypoint serves (the downstream's lookup): the
// `:authority` alone names the destination, a Service VIP:port or a pod
// IP:port, and only traffic bound to this waypoint (istio.io/use-waypoint, as
// the ztunnels read it from the same state) is served. Anything else is
// refused: serving traffic bound elsewhere would let a client borrow this
// waypoint's identity for hop 2. The Forwarded claim of a source address is
// believed only as the ztunnel's inbound side believes it
// (lib/mesh/forwarded-claim.ts); otherwise the source is the client's proven
// identity alone.
import { hostPort } from '../lib/core/ip.ts';
import { formatSpiffeId } from '../lib/identity/spiffe.ts';
import { claimRefusal } from '../lib/mesh/forwarded-claim.ts';
import { waypointKey, type WaypointRef } from '../lib/mesh/model.ts';
import type { WaypointUse } from '../lib/mesh/waypoints.ts';
import { serviceHost } from '../lib/l7/index.ts';
import type { TunnelDecision, TunnelInput, TunnelLookup } from './downstream/tunnel.ts';
import type { WaypointConfig } from './config.ts';
import type { WaypointDestination } from './destination.ts';
import { peerWorkloadOf } from './telemetry/peer-workload.ts';
import type { PeerWorkload } from './telemetry/request-record.ts';

type Decision = TunnelDecision<WaypointDestination>;

const refuse = (reason: 'unknown_authority' | 'not_served', detail: string): Decision => ({ kind: 'refuse', reason, detail });

/** Why `use` is not this waypoint's, or undefined when it is. */
function notOurs(use: WaypointUse | undefined, self: WaypointRef, what: string): string | undefined {
  if (!use) return `${what} is bound to no waypoint (istio.io/use-waypoint), so its traffic does not come through one`;
  const theirs = waypointKey(use.ref);
  return theirs === waypointKey(self) ? undefined : `${what} is bound to waypoint ${theirs}, not this one (${waypointKey(self)})`;
}

function destinationOf(config: WaypointConfig, input: TunnelInput): { destination: WaypointDestination } | { refused: Decision } {
  const { ip, port } = input.authority;
  const { view, self } = config;
  const target = view.serviceAt(ip, port);
  if (target) {
    const s = target.service;
    const problem = notOurs(view.waypointIndex.forService(s), self.gateway, `Service ${s.namespace}/${s.name}`);
    if (problem) return { refused: refuse('not_served', problem) };
    return { destination: { kind: 'service', namespace: s.namespace, name: s.name, port: target.port, service: s, host: serviceHost(s.name, s.namespace, self.domain), vip: ip } };
  }
  const w = view.workloadByIp(ip);
  if (!w) return { refused: refuse('unknown_authority', `${hostPort(ip, port)} is neither a Service VIP:port nor a pod's address`) };
  const problem = notOurs(view.waypointIndex.forWorkload(w), self.gateway, `Pod ${w.namespace}/${w.name}`);
  if (problem) return { refused: refuse('not_served', problem) };
  return { destination: { kind: 'workload', namespace: w.namespace, name: w.name, port: { port, ...config.workloadPort(ip, port) }, workload: w, ip } };
}

/** The source as telemetry and policy see it: the claimed workload when the claim checks out, else the proven identity alone. */
function sourceOf(config: WaypointConfig, input: TunnelInput): { source: PeerWorkload; sourceAddress?: TunnelInput['authority'] } {
  const { trustDomain } = config.self;
  const { identity, claimedSource, peer } = input;
  const mtls = identity ? { trustDomain, identity } : undefined;
  const believed = claimedSource && claimRefusal(config.view, claimedSource, peer, mtls) === undefined ? claimedSource : undefined;
  const workload = believed && config.view.workloadByIp(believed.ip);
  if (believed && workload) return { source: peerWorkloadOf(workload, trustDomain), sourceAddress: believed };
  return { source: identity ? { principal: formatSpiffeId(identity), namespace: identity.namespace } : {} };
}

export function waypointLookup(current: () => WaypointConfig | undefined): TunnelLookup<WaypointDestination> {
  return (input) => {
    const config = current();
    if (!config) return refuse('not_served', 'the waypoint has not read the cluster yet');
    if (!config.gateway) return refuse('not_served', `the waypoint's Gateway ${waypointKey(config.self.gateway)} is not in the cluster state (missing, not of a waypoint class, or rejected)`);
    const found = destinationOf(config, input);
    if ('refused' in found) return found.refused;
    return { kind: 'accept', destination: found.destination, ...sourceOf(config, input) };
  };
}

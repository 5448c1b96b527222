// A waypoint Gateway's status, as the controller writes it (server-side
// apply of the status subresource, so other writers' conditions stay): the
// Gateway's Accepted and Programmed conditions, each listener's, and its
// addresses (the Service's cluster IPs and its DNS name, both, as Istio
// reports a waypoint's). Every condition carries the Gateway's generation;
// an unchanged condition keeps its lastTransitionTime, so rewriting the same
// status is a no-op that the controller skips (statusUpToDate).
import { isRecord } from '../lib/cluster/objects.ts';
import { HBONE_PORT, type Condition, type Rejection, type WaypointGateway } from './waypoint-gateway.ts';
import { serviceHostname } from './waypoint-objects.ts';

/** What became of the Gateway this time. */
export type Outcome =
  /** Not deployable as it is (rejectionOf): nothing is applied. */
  | { kind: 'rejected'; rejection: Rejection }
  /** Deployable, but the API server refused an object, or one of its names is taken by an object meshlet does not manage. */
  | { kind: 'failed'; message: string }
  /** Applied; `clusterIps` from the Service, `ready` when the Deployment has an available replica, `message` what the operator sees otherwise. */
  | { kind: 'deployed'; clusterIps: readonly string[]; ready: boolean; message: string };

export interface StatusAddress {
  type: 'IPAddress' | 'Hostname';
  value: string;
}

export interface ListenerStatus {
  name: string;
  supportedKinds: { group: string; kind: string }[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  conditions: Condition[];
  addresses?: StatusAddress[];
  listeners: ListenerStatus[];
}

const GATEWAY_CONDITIONS = ['Accepted', 'Programmed'];
const LISTENER_CONDITIONS = ['Accepted', 'Programmed', 'ResolvedRefs', 'Conflicted'];
/** The routes a waypoint takes (GAMMA): HTTPRoute and GRPCRoute, whose parentRefs may name the waypoint. */
const SUPPORTED_KINDS = [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }, { group: 'gateway.networking.k8s.io', kind: 'GRPCRoute' }];

type Verdict = Pick<Condition, 'status' | 'reason' | 'message'>;

/** The condition with `verdict`, keeping the stored one's transition time when its status did not change. */
function condition(type: string, verdict: Verdict, generation: number, stored: readonly Condition[], now: string): Condition {
  const before = stored.find((c) => c.type === type);
  const lastTransitionTime = before && before.status === verdict.status && before.lastTransitionTime !== '' ? before.lastTransitionTime : now;
  return { type, ...verdict, observedGeneration: generation, lastTransitionTime };
}

function gatewayVerdicts(gw: WaypointGateway, outcome: Outcome): [Verdict, Verdict] {
  if (outcome.kind === 'rejected') {
    const { reason, message } = outcome.rejection;
    return [{ status: 'False', reason, message }, { status: 'False', reason: 'Invalid', message: `not accepted: ${message}` }];
  }
  const accepted: Verdict = { status: 'True', reason: 'Accepted', message: 'accepted by the meshlet waypoint controller' };
  if (outcome.kind === 'failed') return [accepted, { status: 'False', reason: 'Invalid', message: outcome.message }];
  if (outcome.clusterIps.length === 0) {
    return [accepted, { status: 'False', reason: 'AddressNotAssigned', message: `Service ${gw.namespace}/${gw.name} has no cluster IP yet` }];
  }
  if (!outcome.ready) return [accepted, { status: 'False', reason: 'NoResources', message: outcome.message }];
  return [accepted, { status: 'True', reason: 'Programmed', message: `Resource programmed, assigned to service(s) ${serviceHostname(gw)}:${HBONE_PORT}` }];
}

function listenerVerdicts(name: string, outcome: Outcome, programmed: Verdict): Verdict[] {
  const problem = outcome.kind === 'rejected' ? outcome.rejection.listeners.get(name) : undefined;
  const accepted: Verdict = problem ? { status: 'False', ...problem } : { status: 'True', reason: 'Accepted', message: 'No errors found' };
  let listenerProgrammed: Verdict;
  if (programmed.status === 'True') listenerProgrammed = { status: 'True', reason: 'Programmed', message: 'No errors found' };
  else if (outcome.kind === 'deployed') listenerProgrammed = { status: 'False', reason: 'Pending', message: programmed.message };
  else listenerProgrammed = { status: 'False', reason: 'Invalid', message: problem?.message ?? programmed.message };
  return [
    accepted,
    listenerProgrammed,
    { status: 'True', reason: 'ResolvedRefs', message: 'No errors found' },
    { status: 'False', reason: 'NoConflicts', message: 'No errors found' },
  ];
}

export function gatewayStatus(gw: WaypointGateway, outcome: Outcome, now: string): GatewayStatus {
  const verdicts = gatewayVerdicts(gw, outcome);
  const conditions = GATEWAY_CONDITIONS.map((type, i) => condition(type, verdicts[i]!, gw.generation, gw.conditions, now));
  const listeners = gw.listeners.map((l): ListenerStatus => {
    const stored = gw.listenerConditions.get(l.name) ?? [];
    const lv = listenerVerdicts(l.name, outcome, verdicts[1]);
    return {
      name: l.name,
      supportedKinds: SUPPORTED_KINDS.map((k) => ({ ...k })),
      // Routes are not counted: the waypoint reads them itself, and Istio's waypoints report 0 as well.
      attachedRoutes: 0,
      conditions: LISTENER_CONDITIONS.map((type, i) => condition(type, lv[i]!, gw.generation, stored, now)),
    };
  });
  const status: GatewayStatus = { conditions, listeners };
  if (outcome.kind === 'deployed' && outcome.clusterIps.length > 0) {
    status.addresses = [
      ...outcome.clusterIps.map((value): StatusAddress => ({ type: 'IPAddress', value })),
      { type: 'Hostname', value: serviceHostname(gw) },
    ];
  }
  return status;
}

/** The server-side apply body for the status subresource. */
export function statusApply(gw: Pick<WaypointGateway, 'namespace' | 'name'>, status: GatewayStatus): Record<string, unknown> {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: gw.name, namespace: gw.namespace }, status };
}

/**
 * The parts of a stored or desired status the controller writes, in one
 * order, to compare: only its own condition types, and only the listeners it
 * reports, so that what other writers keep beside them never makes the two
 * differ for good (which would rewrite the status on every pass).
 */
function comparable(status: unknown, listenerNames: ReadonlySet<string>): string {
  const s = isRecord(status) ? status : {};
  const records = (value: unknown) => (Array.isArray(value) ? value.filter(isRecord) : []);
  const conditions = (value: unknown, types: readonly string[]) => records(value)
    .filter((c) => types.includes(String(c.type)))
    .map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration, c.lastTransitionTime])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  const listeners = records(s.listeners)
    .filter((l) => listenerNames.has(String(l.name)))
    .map((l) => [l.name, records(l.supportedKinds).map((k) => [k.group, k.kind]), l.attachedRoutes, conditions(l.conditions, LISTENER_CONDITIONS)])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  const addresses = records(s.addresses).map((a) => [a.type, a.value]);
  return JSON.stringify([conditions(s.conditions, GATEWAY_CONDITIONS), addresses, listeners]);
}

/** The stored status already says what `desired` says: writing it would change nothing. */
export function statusUpToDate(stored: unknown, desired: GatewayStatus): boolean {
  const names = new Set(desired.listeners.map((l) => l.name));
  return comparable(stored, names) === comparable(desired, names);
}

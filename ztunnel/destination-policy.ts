// L4 authorization where Istio does it: at the destination's ztunnel, for
// tunnelled and same-node connections alike. Allowed connections stay under
// watch, so a policy change closes the ones it now denies. Before L4 policy,
// a destination under a waypoint's L7 policy takes mesh traffic from that
// waypoint alone: whatever its L4 policy says, a connection around the
// waypoint is refused (waypoint_bypass), so the L7 policy cannot be skipped.
import { parseIdentity, stripSpiffe } from '../lib/policy/match.ts';
import { waypointKey } from '../lib/mesh/model.ts';
import { authorize, type AuthzDecision, type AuthzRequest } from '../lib/policy/index.ts';
import type { Flow } from '../lib/telemetry/flow-table.ts';
import type { Verdict } from '../lib/telemetry/reasons.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ZtunnelMetrics } from './metrics.ts';
import type { StateView } from '../lib/mesh/state.ts';

/** The verdict fields a flow record carries. */
export function verdictOf(d: AuthzDecision): { verdict: Verdict; policy?: string; verdictReason: string } {
  return { verdict: d.verdict, verdictReason: d.reason, ...(d.policy ? { policy: d.policy } : {}) };
}

/** The destination's decision; `refusal` marks one refused before L4 policy, for going around the destination's waypoint. */
export interface Decision extends AuthzDecision {
  refusal?: 'waypoint_bypass';
}

/** A connection's authorization request and the decision on it, as a plan carries them. */
export interface Authorization {
  request: AuthzRequest;
  decision: Decision;
}

/** `namespace/serviceAccount` of a SPIFFE ID (its trust domain was checked to be ours), or undefined. */
function accountOf(principal: string | undefined): string | undefined {
  const id = principal === undefined ? null : parseIdentity(stripSpiffe(principal));
  return id ? `${id.namespace}/${id.serviceAccount}` : undefined;
}

/**
 * The refusal of a connection to a destination port under a waypoint's L7
 * policy from a peer that is not one of its waypoints (by identity: in
 * plaintext there is none, so plaintext is refused too); undefined when the
 * destination takes it.
 */
export function waypointBypass(view: StateView, request: AuthzRequest): Decision | undefined {
  const workload = view.workloadByIp(request.destination.ip);
  const guard = workload && view.waypointIndex.guard(workload, request.destination.port);
  if (!guard) return undefined;
  const account = accountOf(request.source.principal);
  if (account !== undefined && guard.serviceAccounts.has(account)) return undefined;
  const through = guard.waypoints.map(waypointKey).join(', ');
  const peer = request.source.principal === undefined ? 'the connection carries no identity (plaintext)' : `the peer is ${request.source.principal}`;
  return {
    allowed: false,
    verdict: 'deny',
    policy: guard.policy,
    reason: `the destination is under L7 AuthorizationPolicy ${guard.policy} through waypoint ${through}, and takes mesh traffic from that waypoint only; ${peer}`,
    refusal: 'waypoint_bypass',
  };
}

/** The destination's decision on `request` as `view` has it; pure, so a plan can carry it. */
export const decide = (view: StateView, request: AuthzRequest): Decision => waypointBypass(view, request) ?? authorize(view.policies, request);

/** How a denied connection's flow closes. */
export const deniedReason = (d: Decision): 'denied' | 'waypoint_bypass' => d.refusal ?? 'denied';

/** Whether a decision could differ between two views: the policies, the workloads they select, or the waypoints, their bindings and policies changed. */
const sameInputs = (a: StateView, b: StateView): boolean => {
  const same = <T>(x: ReadonlyMap<string, T>, y: ReadonlyMap<string, T>) => x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  return same(a.authorizationPolicies, b.authorizationPolicies) && same(a.workloads, b.workloads)
    && same(a.services, b.services) && same(a.waypoints, b.waypoints) && same(a.waypointPolicies, b.waypointPolicies);
};

export class DestinationPolicy {
  /** By flow id. */
  readonly #watched = new Map<string, { flow: Flow; request: AuthzRequest }>();
  readonly #metrics: ZtunnelMetrics;
  readonly #log: Logger;
  #view: StateView | undefined;

  constructor(metrics: ZtunnelMetrics, log: Logger) {
    this.#metrics = metrics;
    this.#log = log;
  }

  /** Records a denial; `status` is the HTTP answer, when the denial is one (401 on a tunnel). */
  denied(flow: Flow, decision: AuthzDecision, status?: number): void {
    Object.assign(flow.record, verdictOf(decision));
    this.#metrics.denied(flow.record);
    this.#log.warn('denied', { flow: flow.record.id, source: flow.record.source, principal: flow.record.source.identity, destination: flow.record.destination, policy: decision.policy, reason: decision.reason, status });
  }

  /** Keeps an allowed connection under watch until it closes. */
  watch(flow: Flow, request: AuthzRequest): void {
    this.#watched.set(flow.record.id, { flow, request });
  }

  /** Called when a flow closes. */
  forget(flowId: string): void {
    this.#watched.delete(flowId);
  }

  /** A new state view: if what decisions depend on changed, re-check every watched connection. */
  onView(view: StateView): void {
    const previous = this.#view;
    this.#view = view;
    if (!previous || sameInputs(previous, view)) return;
    for (const [id, entry] of this.#watched) {
      const { flow } = entry;
      // The destination's labels may have changed too: judge it as the new view has it.
      const workload = view.workloadByIp(entry.request.destination.ip) ?? entry.request.destination.workload;
      const request = { ...entry.request, destination: { ...entry.request.destination, workload } };
      const decision = decide(view, request);
      if (decision.allowed) continue;
      this.#watched.delete(id);
      this.denied(flow, decision);
      flow.abort('policy_denied');
    }
  }
}

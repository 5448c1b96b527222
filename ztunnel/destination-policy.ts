// L4 authorization where Istio does it: at the destination's ztunnel, for
// tunnelled and same-node connections alike. Allowed connections stay under
// watch, so a policy change closes the ones it now denies.
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

/** A connection's authorization request and the decision on it, as a plan carries them. */
export interface Authorization {
  request: AuthzRequest;
  decision: AuthzDecision;
}

/** The destination's L4 decision on `request` as `view` has it; pure, so a plan can carry it. */
export const decide = (view: StateView, request: AuthzRequest): AuthzDecision => authorize(view.policies, request);

/** Whether a decision could differ between two views: the policies, or the workloads they select, changed. */
const sameInputs = (a: StateView, b: StateView): boolean => {
  const same = <T>(x: ReadonlyMap<string, T>, y: ReadonlyMap<string, T>) => x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  return same(a.authorizationPolicies, b.authorizationPolicies) && same(a.workloads, b.workloads);
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

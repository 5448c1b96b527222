// L4 authorization where Istio does it: at the destination's ztunnel, for
// tunnelled and same-node connections alike. Allowed connections stay under
// watch, so a policy change closes the ones it now denies.
import { authorize, type AuthzDecision, type AuthzRequest } from '../policy/index.ts';
import type { Flow } from './flow-table.ts';
import type { Logger } from './log.ts';
import type { ZtunnelMetrics } from './metrics.ts';
import type { StateView } from './state.ts';

/** The verdict fields a flow record carries. */
export function verdictOf(d: AuthzDecision): { verdict: 'allow' | 'deny'; policy?: string; verdictReason: string } {
  return { verdict: d.verdict, verdictReason: d.reason, ...(d.policy ? { policy: d.policy } : {}) };
}

const samePolicies = (a: StateView, b: StateView): boolean => {
  const same = <T>(x: ReadonlyMap<string, T>, y: ReadonlyMap<string, T>) => x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  return same(a.authorizationPolicies, b.authorizationPolicies);
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

  decide(view: StateView, request: AuthzRequest): AuthzDecision {
    return authorize(view.policies, request);
  }

  /** Records a denial the caller is about to answer (401 or a reset). */
  denied(flow: Flow, decision: AuthzDecision, status: number): void {
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

  /** A new state view: if its policies changed, re-check every watched connection. */
  onView(view: StateView): void {
    const previous = this.#view;
    this.#view = view;
    if (!previous || samePolicies(previous, view)) return;
    for (const [id, { flow, request }] of this.#watched) {
      const decision = this.decide(view, request);
      if (decision.allowed) continue;
      this.#watched.delete(id);
      this.denied(flow, decision, 0);
      flow.abort('policy_denied');
    }
  }
}

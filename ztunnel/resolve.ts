// Where an outbound connection goes, from its original destination: a pod IP
// is that pod, a Service VIP:port balances round robin over its endpoints,
// anything else passes through untouched. Then how: straight to a pod on this
// node or outside the mesh, or through the tunnel to the pod's node.
import type { MeshNode, Service, Workload } from '../lib/mesh/model.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import type { Refusal } from '../lib/telemetry/reasons.ts';
import type { StateView } from '../lib/mesh/state.ts';

export type Route =
  | { kind: 'direct'; path: 'local'; target: Endpoint; workload: Workload; service?: Service }
  | { kind: 'direct'; path: 'passthrough'; target: Endpoint; workload?: Workload; service?: Service }
  | { kind: 'tunnel'; target: Endpoint; workload: Workload; node: MeshNode; service?: Service }
  | { kind: 'reject'; reason: Extract<Refusal, 'no_endpoint' | 'no_route'>; service?: Service; workload?: Workload };

export class Resolver {
  readonly #node: string;
  /** Next endpoint index per Service VIP:port; kept across state swaps so balance survives deltas. */
  readonly #cursors = new Map<string, number>();
  #cursorsView: StateView | undefined;

  constructor(node: string) {
    this.#node = node;
  }

  resolve(view: StateView, dst: Endpoint): Route {
    // A pod's own address is that pod's, whatever a Service claims: the view
    // refuses such a claim, and this order keeps it so should one get through.
    const workload = view.workloadByIp(dst.ip);
    if (workload) return this.#toWorkload(view, workload, dst);
    const target = view.serviceAt(dst.ip, dst.port);
    if (target) {
      const { endpoints, service } = target;
      if (endpoints.length === 0) return { kind: 'reject', reason: 'no_endpoint', service };
      const ep = endpoints[this.#next(view, target.key, endpoints.length)];
      return this.#toWorkload(view, ep.workload, { ip: ep.ip, port: ep.port }, service);
    }
    return { kind: 'direct', path: 'passthrough', target: dst };
  }

  #toWorkload(view: StateView, workload: Workload, target: Endpoint, service?: Service): Route {
    if (!workload.enrolled) return { kind: 'direct', path: 'passthrough', target, workload, service };
    if (workload.node === this.#node) return { kind: 'direct', path: 'local', target, workload, service };
    const node = view.node(workload.node);
    // An enrolled pod is only reached through its node's ztunnel; without an address for it, fail closed.
    if (!node) return { kind: 'reject', reason: 'no_route', workload, service };
    return { kind: 'tunnel', target, workload, node, service };
  }

  #next(view: StateView, key: string, count: number): number {
    if (view !== this.#cursorsView) {
      for (const k of this.#cursors.keys()) if (!view.hasTarget(k)) this.#cursors.delete(k);
      this.#cursorsView = view;
    }
    const i = (this.#cursors.get(key) ?? 0) % count;
    this.#cursors.set(key, (i + 1) % count);
    return i;
  }
}

// Where an outbound connection goes, from its original destination: a pod IP
// is that pod, a Service VIP:port balances round robin over its endpoints,
// anything else passes through untouched. A destination bound to a waypoint
// that takes its kind of traffic goes to one of the waypoint's pods instead
// (round robin too), or is refused when it has none. Then how: straight to a
// pod on this node or outside the mesh, or through the tunnel to the pod's
// node (or to the waypoint pod itself, which terminates HBONE).
import { waypointKey, type MeshNode, type Service, type WaypointRef, type Workload } from '../lib/mesh/model.ts';
import type { WaypointEndpoint, WaypointUse } from '../lib/mesh/waypoints.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import type { Refusal } from '../lib/telemetry/reasons.ts';
import type { StateView } from '../lib/mesh/state.ts';

export type Route =
  | { kind: 'direct'; path: 'local'; target: Endpoint; workload: Workload; service?: Service }
  | { kind: 'direct'; path: 'passthrough'; target: Endpoint; workload?: Workload; service?: Service }
  | { kind: 'tunnel'; target: Endpoint; workload: Workload; node: MeshNode; service?: Service }
  /** To waypoint pod `endpoint`, asking for `target` (the original destination: the tunnel's :authority). */
  | { kind: 'waypoint'; target: Endpoint; waypoint: WaypointRef; endpoint: WaypointEndpoint; service?: Service; workload?: Workload }
  | { kind: 'reject'; reason: Extract<Refusal, 'no_endpoint' | 'no_route'>; service?: Service; workload?: Workload }
  /** Bound to a waypoint that cannot take it: `problem` says why. */
  | { kind: 'reject'; reason: 'waypoint_unavailable'; waypoint: WaypointRef; problem: string; service?: Service; workload?: Workload };

/** Round-robin cursors of waypoints are keyed apart from the Service targets'. */
const WAYPOINT_CURSOR = 'waypoint ';

export class Resolver {
  readonly #node: string;
  /** Next endpoint index per Service VIP:port; kept across state swaps so balance survives deltas. */
  readonly #cursors = new Map<string, number>();
  #cursorsView: StateView | undefined;

  constructor(node: string) {
    this.#node = node;
  }

  /** `source`: the connecting pod; a waypoint's own pods never go to a waypoint. */
  resolve(view: StateView, dst: Endpoint, source?: Workload): Route {
    const waypoints = source && view.waypointIndex.instanceOf(source) ? undefined : view.waypointIndex;
    // A pod's own address is that pod's, whatever a Service claims: the view
    // refuses such a claim, and this order keeps it so should one get through.
    const workload = view.workloadByIp(dst.ip);
    if (workload) {
      const use = waypoints?.forWorkload(workload);
      return use ? this.#toWaypoint(view, use, dst, { workload }) : this.#toWorkload(view, workload, dst);
    }
    const target = view.serviceAt(dst.ip, dst.port);
    if (target) {
      const use = waypoints?.forService(target.service);
      if (use) return this.#toWaypoint(view, use, dst, { service: target.service });
      const { endpoints, service } = target;
      if (endpoints.length === 0) return { kind: 'reject', reason: 'no_endpoint', service };
      const ep = endpoints[this.#next(view, target.key, endpoints.length)];
      return this.#toWorkload(view, ep.workload, { ip: ep.ip, port: ep.port }, service);
    }
    return { kind: 'direct', path: 'passthrough', target: dst };
  }

  #toWaypoint(view: StateView, use: WaypointUse, target: Endpoint, bound: { service?: Service; workload?: Workload }): Route {
    const { ref, endpoints } = use;
    if (endpoints.length === 0) return { kind: 'reject', reason: 'waypoint_unavailable', waypoint: ref, problem: use.problem ?? `waypoint ${waypointKey(ref)} has no ready pod`, ...bound };
    const endpoint = endpoints[this.#next(view, `${WAYPOINT_CURSOR}${waypointKey(ref)}`, endpoints.length)]!;
    return { kind: 'waypoint', target, waypoint: ref, endpoint, ...bound };
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
      for (const k of this.#cursors.keys()) {
        const kept = k.startsWith(WAYPOINT_CURSOR) ? view.waypointIndex.waypoint(k.slice(WAYPOINT_CURSOR.length)) !== undefined : view.hasTarget(k);
        if (!kept) this.#cursors.delete(k);
      }
      this.#cursorsView = view;
    }
    const i = (this.#cursors.get(key) ?? 0) % count;
    this.#cursors.set(key, (i + 1) % count);
    return i;
  }
}

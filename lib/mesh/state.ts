// The ztunnel's copy of mesh state (after istio/ztunnel's state.rs): an
// immutable, indexed StateView the data path reads, and a StateStore that
// builds a complete new view per control message and swaps it in only if the
// whole message is consistent (phase two of a two-phase update).
import { ControlProtocolError } from '../core/errors.ts';
import { PolicyStore } from '../policy/store.ts';
import { type MeshNode, type Service, type ServiceEndpoint, type ServicePort, type Workload } from './model.ts';
import type { ControlMessage, DeltaMessage } from './control-protocol.ts';
import { keyOf, listOf, mapOf, mapsOf, MESH_KINDS, stateOf, type KindValue, type MeshKind, type MeshMaps, type MeshState } from './kinds.ts';
import { hostPort, isV6 } from '../core/ip.ts';
import { findContradictions } from './consistency.ts';
import { WaypointIndex } from './waypoints.ts';

/** One pod behind a Service port, with the address and target port to reach it on. */
export interface TargetEndpoint {
  workload: Workload;
  ip: string;
  port: number;
}

/** A Service VIP:port and the endpoints it balances over. */
export interface ServiceTarget {
  /** `vip:port`, stable across views; keys round-robin cursors. */
  key: string;
  service: Service;
  port: ServicePort;
  endpoints: readonly TargetEndpoint[];
}

/** The endpoint's target port for Service port `p`; an own property only, so a port named like an Object method ("constructor") is not found on the prototype. */
function portOf(e: ServiceEndpoint, p: ServicePort): number | undefined {
  const name = p.name ?? '';
  return Object.hasOwn(e.ports, name) ? e.ports[name] : undefined;
}

/**
 * A view's maps per kind (MeshMaps, keyed as deltas name objects) are its own
 * properties: this interface merges into the class, so a new kind in the
 * table is a new property of every view without an edit here.
 */
export interface StateView extends MeshMaps {}

export class StateView {
  readonly version: number;
  /** Compiled once per view: the per-connection checks read it. */
  readonly policies: PolicyStore;
  /** Which traffic goes through which waypoint, and which workloads take it from their waypoint only. */
  readonly waypointIndex: WaypointIndex;
  readonly #byIp = new Map<string, Workload>();
  readonly #targets = new Map<string, ServiceTarget>();

  /** Builds every index; throws ControlProtocolError if the objects contradict each other (consistency.ts). */
  constructor(version: number, maps: MeshMaps) {
    this.version = version;
    Object.assign(this, maps);
    const { workloads, services } = maps;
    const contradiction = findContradictions(stateOf((kind) => [...mapOf(maps, kind).values()]))[0];
    if (contradiction) throw new ControlProtocolError(contradiction.problem);
    this.policies = new PolicyStore([...maps.authorizationPolicies.values()], [...maps.peerAuthentications.values()]);
    this.waypointIndex = new WaypointIndex({ workloads: workloads.values(), services: services.values(), waypoints: maps.waypoints.values(), waypointPolicies: maps.waypointPolicies.values() });
    for (const w of workloads.values()) for (const ip of w.ips) this.#byIp.set(ip, w);
    for (const s of services.values()) {
      for (const vip of s.vips) {
        for (const p of s.ports) {
          if (p.protocol !== 'TCP') continue;
          const key = hostPort(vip, p.port);
          const endpoints: TargetEndpoint[] = [];
          for (const e of s.endpoints) {
            // Same family as the VIP; an endpoint without this port (a named targetPort its pod lacks) is left out, as kube-proxy does.
            const port = portOf(e, p);
            // Its identity and node are its pod's; an address that is no pod's is not reachable through the mesh (the agent sends none).
            const workload = this.#byIp.get(e.ip);
            if (isV6(e.ip) === isV6(vip) && port !== undefined && workload) endpoints.push({ workload, ip: e.ip, port });
          }
          this.#targets.set(key, { key, service: s, port: p, endpoints });
        }
      }
    }
  }

  get state(): MeshState {
    return stateOf((kind) => [...mapOf(this, kind).values()]);
  }

  node(name: string): MeshNode | undefined {
    return this.nodes.get(name);
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.workloads.get(uid);
  }

  /** The Service target at VIP:port, if the address is one. */
  serviceAt(ip: string, port: number): ServiceTarget | undefined {
    return this.#targets.get(hostPort(ip, port));
  }

  hasTarget(key: string): boolean {
    return this.#targets.has(key);
  }
}

function indexBy<K extends MeshKind>(kind: K, items: readonly KindValue<K>[]): Map<string, KindValue<K>> {
  const m = new Map<string, KindValue<K>>();
  for (const item of items) {
    const k = keyOf(kind, item);
    if (m.has(k)) throw new ControlProtocolError(`duplicate ${MESH_KINDS[kind].label} ${k}`);
    m.set(k, item);
  }
  return m;
}

const indexAll = (state: MeshState): MeshMaps => mapsOf((kind) => indexBy(kind, listOf(state, kind)));

function applyDelta(current: StateView, d: DeltaMessage): StateView {
  if (d.version <= current.version) throw new ControlProtocolError(`delta version ${d.version} is not newer than the current version ${current.version}`);
  return new StateView(d.version, mapsOf((kind) => {
    const next = new Map(mapOf(current, kind));
    for (const k of d.remove[kind]) next.delete(k);
    for (const [k, v] of indexBy(kind, listOf(d.upsert, kind))) next.set(k, v);
    return next;
  }));
}

export class StateStore {
  #view: StateView | undefined;

  /** The current state; undefined until the first snapshot. */
  get view(): StateView | undefined {
    return this.#view;
  }

  /** Builds the next view from a validated message and swaps it in; on error the current view stays. */
  apply(msg: ControlMessage): StateView {
    let next: StateView;
    if (msg.type === 'snapshot') {
      next = new StateView(msg.version, indexAll(msg.state));
    } else {
      if (!this.#view) throw new ControlProtocolError('delta before any snapshot');
      next = applyDelta(this.#view, msg);
    }
    this.#view = next;
    return next;
  }
}

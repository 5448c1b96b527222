// The agent's in-memory copy of what it alone writes: the per-pod maps (pods,
// excluded_ports, port_mode, probe_ports) and which of its programs are
// attached to which cgroups. Seeded from the kernel (a map dump, a cgroup tree
// walk), so an enroll needs no read before its one write batch, planned
// within the maps' room, and a batch that stopped partway can be undone.
// Plain data: the datapath turns the changes into bpftool commands.
import { isDeepStrictEqual } from 'node:util';
import type { InboundMode } from '../../lib/mesh/agent-status.ts';
import type { PodInfo } from './codec.ts';
import type { Entry, KeyOf, ValueOf } from './maps.ts';

export type PortMapName = 'excluded_ports' | 'port_mode' | 'probe_ports';
export type MirroredMap = 'pods' | PortMapName;
const PORT_MAPS: readonly PortMapName[] = ['excluded_ports', 'port_mode', 'probe_ports'];
export const MIRRORED_MAPS: readonly MirroredMap[] = ['pods', ...PORT_MAPS];

/** How many entries each mirrored map holds at most (its max_entries). */
export type MapCapacity = Readonly<Record<MirroredMap, number>>;

/** One map write: an update, or a delete when `value` is absent. */
export type MapChange = { [N in MirroredMap]: { map: N; key: KeyOf<N>; value?: ValueOf<N> } }[MirroredMap];

/** The entries one pod should have: its pods value (flags, own addresses) and its port entries. */
export interface PodEntries extends PodInfo {
  excluded_ports: ReadonlyMap<number, true>;
  port_mode: ReadonlyMap<number, InboundMode>;
  probe_ports: ReadonlyMap<number, true>;
}

export interface MirrorDumps {
  pods: Entry<'pods'>[];
  excluded_ports: Entry<'excluded_ports'>[];
  port_mode: Entry<'port_mode'>[];
  probe_ports: Entry<'probe_ports'>[];
}

type PortValues = { [N in PortMapName]: Map<bigint, Map<number, ValueOf<N>>> };

/** A pod left out of a plan: the first map without room for the entries it does not hold yet. */
export interface NoRoomIn {
  id: bigint;
  map: MirroredMap;
  /** New entries the pod needs there. */
  needed: number;
  /** Entries the map has left after the pods planned before it. */
  free: number;
  capacity: number;
}

/** The writes that bring some pods to their wanted entries, each pod whole or not at all. */
export interface PodsPlan {
  changes: MapChange[];
  /** The pods the changes cover, in order. */
  planned: bigint[];
  noRoom: NoRoomIn[];
}

export class MapMirror {
  readonly #pods = new Map<bigint, PodInfo>();
  readonly #ports: PortValues = { excluded_ports: new Map(), port_mode: new Map(), probe_ports: new Map() };

  constructor(dumps: MirrorDumps) {
    for (const e of dumps.pods) this.#pods.set(e.key, e.value);
    for (const name of PORT_MAPS) for (const e of dumps[name]) this.#portsOf(name, e.key.cgroupId, true).set(e.key.port, e.value);
  }

  enrolledIds(): bigint[] {
    return [...this.#pods.keys()];
  }

  /**
   * What makes cgroup `id`'s entries exactly `want`. Additions go before the
   * pod entry (an excluded port is never captured, a probe port never
   * dropped), stale entries after it.
   */
  podChanges(id: bigint, want: PodEntries): MapChange[] {
    const additions: MapChange[] = [];
    const stale: MapChange[] = [];
    const sync = <N extends PortMapName>(map: N): void => {
      const have = this.#portsOf(map, id, false);
      const wanted = want[map] as ReadonlyMap<number, ValueOf<N>>;
      for (const [port, value] of wanted) if (have?.get(port) !== value) additions.push({ map, key: { cgroupId: id, port }, value } as MapChange);
      for (const port of have?.keys() ?? []) if (!wanted.has(port)) stale.push({ map, key: { cgroupId: id, port } } as MapChange);
    };
    for (const map of PORT_MAPS) sync(map);
    const info: PodInfo = { flags: want.flags, ip4: want.ip4, ip6: want.ip6 };
    const pod: MapChange[] = isDeepStrictEqual(this.#pods.get(id), info) ? [] : [{ map: 'pods', key: id, value: info }];
    return [...additions, ...pod, ...stale];
  }

  /**
   * podChanges for each pod in order, leaving out (whole) any pod whose new
   * entries do not fit in what a map has left: a full map would fail the
   * batch partway. A pod's additions run before its stale deletions, so they
   * must fit before those free anything.
   */
  planPods(pods: readonly { id: bigint; want: PodEntries }[], capacity: MapCapacity): PodsPlan {
    const used = this.#sizes();
    const plan: PodsPlan = { changes: [], planned: [], noRoom: [] };
    for (const { id, want } of pods) {
      const changes = this.podChanges(id, want);
      const added = counts();
      const removed = counts();
      for (const c of changes) {
        if (c.value === undefined) removed[c.map] += 1;
        else if (!this.#holds(c)) added[c.map] += 1;
      }
      const full = MIRRORED_MAPS.find((m) => used[m] + added[m] > capacity[m]);
      if (full) {
        plan.noRoom.push({ id, map: full, needed: added[full], free: Math.max(0, capacity[full] - used[full]), capacity: capacity[full] });
        continue;
      }
      for (const m of MIRRORED_MAPS) used[m] += added[m] - removed[m];
      plan.changes.push(...changes);
      plan.planned.push(id);
    }
    return plan;
  }

  /**
   * What undoes `ran`, changes planned from this mirror of which the kernel
   * took only these: every key they touched back to the value held here, in
   * reverse order (so each step fits where the forward one did, and a new
   * pod's pods entry goes before its port entries).
   */
  undoChanges(ran: readonly MapChange[]): MapChange[] {
    const seen = new Set<string>();
    const undo: MapChange[] = [];
    for (const c of [...ran].reverse()) {
      const id = `${c.map}/${typeof c.key === 'bigint' ? c.key : `${c.key.cgroupId}:${c.key.port}`}`;
      if (seen.has(id)) continue;
      seen.add(id);
      const value = c.map === 'pods' ? this.#pods.get(c.key) : this.#portsOf(c.map, c.key.cgroupId, false)?.get(c.key.port);
      undo.push((value === undefined ? { map: c.map, key: c.key } : { map: c.map, key: c.key, value }) as MapChange);
    }
    return undo;
  }

  /** Deletes every entry of these cgroups, the pod entries first so capture and enforcement stop at once. */
  removalChanges(ids: ReadonlySet<bigint>): MapChange[] {
    const pods: MapChange[] = [...ids].filter((id) => this.#pods.has(id)).map((id) => ({ map: 'pods', key: id }));
    const ports: MapChange[] = [];
    for (const map of PORT_MAPS) {
      for (const id of ids) for (const port of this.#portsOf(map, id, false)?.keys() ?? []) ports.push({ map, key: { cgroupId: id, port } } as MapChange);
    }
    return [...pods, ...ports];
  }

  /** Records changes the kernel has taken. */
  apply(changes: readonly MapChange[]): void {
    for (const c of changes) {
      if (c.map === 'pods') {
        if (c.value === undefined) this.#pods.delete(c.key);
        else this.#pods.set(c.key, c.value);
        continue;
      }
      const ports = this.#portsOf(c.map, c.key.cgroupId, c.value !== undefined);
      if (c.value !== undefined) ports?.set(c.key.port, c.value);
      else {
        ports?.delete(c.key.port);
        if (ports?.size === 0) this.#ports[c.map].delete(c.key.cgroupId);
      }
    }
  }

  /** Whether the map already holds the change's key (an update of it needs no room). */
  #holds(c: MapChange): boolean {
    return c.map === 'pods' ? this.#pods.has(c.key) : this.#portsOf(c.map, c.key.cgroupId, false)?.has(c.key.port) === true;
  }

  #sizes(): Record<MirroredMap, number> {
    const sizes = counts();
    sizes.pods = this.#pods.size;
    for (const map of PORT_MAPS) for (const ports of this.#ports[map].values()) sizes[map] += ports.size;
    return sizes;
  }

  #portsOf<N extends PortMapName>(map: N, id: bigint, create: true): Map<number, ValueOf<N>>;
  #portsOf<N extends PortMapName>(map: N, id: bigint, create: boolean): Map<number, ValueOf<N>> | undefined;
  #portsOf<N extends PortMapName>(map: N, id: bigint, create: boolean): Map<number, ValueOf<N>> | undefined {
    const byId = this.#ports[map] as Map<bigint, Map<number, ValueOf<N>>>;
    let ports = byId.get(id);
    if (!ports && create) {
      ports = new Map();
      byId.set(id, ports);
    }
    return ports;
  }
}

const counts = (): Record<MirroredMap, number> => ({ pods: 0, excluded_ports: 0, port_mode: 0, probe_ports: 0 });

/**
 * Program ids attached to cgroups, by cgroup id (a cgroup re-created at the
 * same path is a new cgroup with nothing attached). Below a walked root every
 * cgroup is known: one the walk did not list has none of our programs, since
 * only this agent attaches them. Elsewhere the datapath must walk first.
 */
export class AttachmentMirror {
  readonly #byId = new Map<bigint, Set<number>>();
  readonly #roots = new Set<string>();

  /** Takes in a walk of `root` (absolute, resolved): the attached ids of the cgroups below it that have any. */
  recordWalk(root: string, attached: ReadonlyMap<bigint, ReadonlySet<number>>): void {
    this.#roots.add(root);
    this.recordCgroups(attached);
  }

  /** Takes in what a walk found for individual cgroups. */
  recordCgroups(attached: ReadonlyMap<bigint, ReadonlySet<number>>): void {
    for (const [id, progs] of attached) this.#byId.set(id, new Set(progs));
  }

  /** Whether attached() can answer for this cgroup without a walk. */
  knows(path: string, id: bigint): boolean {
    if (this.#byId.has(id)) return true;
    for (const root of this.#roots) if (path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`)) return true;
    return false;
  }

  attached(id: bigint): ReadonlySet<number> {
    return this.#byId.get(id) ?? new Set();
  }

  attach(id: bigint, progIds: Iterable<number>): void {
    const set = this.#byId.get(id) ?? new Set<number>();
    for (const p of progIds) set.add(p);
    this.#byId.set(id, set);
  }

  detach(id: bigint, progIds: Iterable<number>): void {
    const set = this.#byId.get(id);
    if (!set) return;
    for (const p of progIds) set.delete(p);
  }

  /** A cgroup that is gone: nothing can be attached to it again. */
  forget(id: bigint): void {
    this.#byId.delete(id);
  }
}

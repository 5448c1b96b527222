// The agent's handle on the eBPF capture layer: loads or re-adopts the pinned
// programs and maps, enrolls pod cgroups (map entries + attaches, including
// inbound enforcement) and un-enrolls them, and reports inbound drops. Never
// touches cookie_dst/flow_dst, which belong to live connections. Operations
// run one at a time. The agent is the only writer of the per-pod maps and of
// pod attachments, so it plans writes from a mirror of them (mirror.ts) and an
// enroll is one bpftool process. A pod whose entries the maps have no room
// for is left out whole, and a batch that stops partway is undone, so the
// kernel never holds part of a pod's entries.
import { join, resolve } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { PORTS } from '../../lib/mesh/model.ts';
import { BpfError, CommandError } from '../../lib/core/errors.ts';
import { canonicalIp, isV6 } from '../../lib/core/ip.ts';
import { attachedProgramIds, attachedUnder } from './attachments.ts';
import { batch, isRecord, tryBatch } from './bpftool.ts';
import { cgroup2Mount, cgroupIdIfExists, cgroupIdsUnder } from './cgroup.ts';
import { MAP_CODECS, type MapName, POD_FLAGS, type NodeConfig } from './codec.ts';
import type { DatapathStatus } from '../../lib/mesh/agent-status.ts';
import type { NodeAddresses } from '../../lib/config/addresses.ts';
import { type DropEvent, type DropWatch, watchDropEvents } from './drop-watch.ts';
import { decodeDump, deleteCommand, dumpCommand, dumpMap, updateCommand } from './maps.ts';
import { AttachmentMirror, type MapCapacity, type MapChange, MapMirror, MIRRORED_MAPS, type PodEntries } from './mirror.ts';
import { DEFAULT_OBJECT_DIR, MAP_NAMES, mapPin, OBJECT_FILE, POD_PROGRAMS, type ProgramSpec, progPin, PROGRAMS, ZTUNNEL_PROGRAMS } from './objects.ts';
import { loadOrAdopt, removePins, stalePinsError } from './pins.ts';
import { StrictSweep, type SweepResult } from './strict-sweep.ts';
import type { Datapath, NoRoom, PodCapture } from '../datapath.ts';

export type { DropReason } from './codec.ts';
export type { DatapathStatus, InboundEnforcement, InboundMode } from '../../lib/mesh/agent-status.ts';
export type { DropEvent, DropWatch } from './drop-watch.ts';
export type { NoRoom, PodCapture } from '../datapath.ts';
export type { SweepResult, SweptConnection } from './strict-sweep.ts';

/** The node's addresses the hooks need (absent inbound/probe sources: none admitted). */
export interface DatapathOptions extends Omit<NodeAddresses, 'nodeIp4' | 'nodeIp6'> {
  /** e.g. /sys/fs/bpf/meshlet/<cluster>/<node>; progs and maps are pinned below it. */
  pinDir: string;
  /** Where meshlet.bpf.o is; default <repo>/build/bpf. */
  objectDir?: string;
  /** Default PORTS.outbound (15001): the capture port on the capture address. */
  outboundPort?: number;
}

interface Target {
  path: string;
  id: bigint;
}

const mirrorCommands = (pinDir: string): string[][] => MIRRORED_MAPS.map((m) => dumpCommand(pinDir, m));

function mirrorOf(outputs: readonly unknown[]): MapMirror {
  return new MapMirror({
    pods: decodeDump('pods', outputs[0]),
    excluded_ports: decodeDump('excluded_ports', outputs[1]),
    port_mode: decodeDump('port_mode', outputs[2]),
    probe_ports: decodeDump('probe_ports', outputs[3]),
  });
}

/** A write batch planned from the mirrors, and how to record it there once the kernel has taken it. */
interface WritePlan<T> {
  /** Writes to the mirrored maps, first in the batch: undone if the batch stops partway. */
  changes: MapChange[];
  /** What follows them (attaches, detaches, drop_count deletes); a later attempt redoes what of it is missing. */
  then: string[][];
  commit(): T;
}

function entriesOf(pod: PodCapture): PodEntries {
  const inbound = pod.inbound;
  const strict = inbound?.mode === 'STRICT' ? POD_FLAGS.strictInbound : 0;
  // Kubernetes gives a pod at most one address per family.
  const ips = pod.ips.map(canonicalIp).filter((ip) => ip !== undefined);
  return {
    flags: POD_FLAGS.captureOutbound | strict,
    ip4: ips.find((ip) => !isV6(ip)) ?? null,
    ip6: ips.find(isV6) ?? null,
    excluded_ports: new Map(pod.excludeOutboundPorts.map((port) => [port, true])),
    port_mode: new Map(Object.entries(inbound?.portModes ?? {}).map(([port, mode]) => [Number(port), mode])),
    probe_ports: new Map((inbound?.probePorts ?? []).map((port) => [port, true])),
  };
}

/** The addresses node_config holds, under their one name (absent: none set). */
function nodeConfigAddresses(config: NodeConfig): DatapathStatus['addresses'] {
  const { outboundPort: _port, ...addresses } = config;
  return Object.fromEntries(Object.entries(addresses).filter(([, ip]) => ip !== null));
}

export class BpfDatapath implements Datapath {
  readonly #pinDir: string;
  readonly #progIds: ReadonlyMap<string, number>;
  /** The per-pod maps' max_entries, as the pinned maps have them. */
  readonly #capacity: MapCapacity;
  readonly #adopted: boolean;
  /** Ids of cgroups enrolled by this process, so a removed cgroup can still be cleaned up. */
  readonly #knownIds = new Map<string, bigint>();
  /** The per-pod maps as this process last wrote or read them; undefined until re-read after a failed write. */
  #maps: MapMirror | undefined;
  /** Where our programs are attached; undefined until the roots are walked again after a failed write. */
  #attachments: AttachmentMirror | undefined = new AttachmentMirror();
  /** Cgroup trees walked whole (learnAttachments), to walk again when the mirror is rebuilt. */
  readonly #roots = new Set<string>();
  #queue: Promise<unknown> = Promise.resolve();
  readonly #sweep: StrictSweep;

  private constructor(pinDir: string, progIds: ReadonlyMap<string, number>, capacity: MapCapacity, adopted: boolean, maps: MapMirror, sweep: StrictSweep) {
    this.#pinDir = pinDir;
    this.#progIds = progIds;
    this.#capacity = capacity;
    this.#adopted = adopted;
    this.#maps = maps;
    this.#sweep = sweep;
  }

  static async open(opts: DatapathOptions): Promise<BpfDatapath> {
    const pinDir = resolve(opts.pinDir);
    const outboundPort = opts.outboundPort ?? PORTS.outbound;
    if (!isIPv4(opts.captureIp4)) throw new BpfError(`captureIp4 is not an IPv4 address: ${opts.captureIp4}`);
    for (const field of ['captureIp6', 'inboundSourceIp6', 'probeSourceIp6'] as const) {
      const ip = opts[field];
      if (ip !== undefined && !isIPv6(ip)) throw new BpfError(`${field} is not an IPv6 address: ${ip}`);
    }
    for (const field of ['inboundSourceIp4', 'probeSourceIp4'] as const) {
      const ip = opts[field];
      if (ip !== undefined && !isIPv4(ip)) throw new BpfError(`${field} is not an IPv4 address: ${ip}`);
    }

    const objectDir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    const adopted = await loadOrAdopt(join(objectDir, OBJECT_FILE), pinDir);
    const shown = await batch([
      ...MAP_NAMES.map((m) => ['map', 'show', 'pinned', mapPin(pinDir, m)]),
      ...PROGRAMS.map((p) => ['prog', 'show', 'pinned', progPin(pinDir, p.name)]),
      ...mirrorCommands(pinDir),
    ]);
    // Adopted pins may come from another build: refuse layouts this codec would misread.
    MAP_NAMES.forEach((name, i) => {
      const { key, value } = MAP_CODECS[name];
      const sizes = [numberField(shown[i], 'bytes_key', name), numberField(shown[i], 'bytes_value', name)];
      if (sizes[0] !== key.layout.size || sizes[1] !== value.layout.size) {
        throw stalePinsError(pinDir, `has map ${name} with key/value sizes ${sizes.join('/')} where this build expects ${key.layout.size}/${value.layout.size}`);
      }
    });
    const progIds = new Map(PROGRAMS.map((p, i) => [p.name, numberField(shown[MAP_NAMES.length + i], 'id', p.name)]));
    const maxEntries = (m: MapName): number => numberField(shown[MAP_NAMES.indexOf(m)], 'max_entries', m);
    const capacity: MapCapacity = { pods: maxEntries('pods'), excluded_ports: maxEntries('excluded_ports'), port_mode: maxEntries('port_mode'), probe_ports: maxEntries('probe_ports') };
    const nodeConfig: NodeConfig = {
      captureIp4: opts.captureIp4,
      captureIp6: opts.captureIp6 ?? null,
      outboundPort,
      inboundSourceIp4: opts.inboundSourceIp4 ?? null,
      inboundSourceIp6: opts.inboundSourceIp6 ?? null,
      probeSourceIp4: opts.probeSourceIp4 ?? null,
      probeSourceIp6: opts.probeSourceIp6 ?? null,
    };
    await batch([updateCommand(pinDir, 'node_config', 0, nodeConfig)]);
    const sweep = await StrictSweep.open({ pinDir, objectDir, nodeConfig });
    return new BpfDatapath(pinDir, progIds, capacity, adopted, mirrorOf(shown.slice(MAP_NAMES.length + PROGRAMS.length)), sweep);
  }

  /** Removes pinDir and its pins. Attachments stay until their cgroups are removed. */
  static async destroy(pinDir: string): Promise<void> {
    await removePins(resolve(pinDir));
  }

  /**
   * Takes in which of our programs are attached anywhere below root (the
   * node's pod cgroups), with one walk, so enrolling a pod there needs none
   * and a restarted agent never attaches twice.
   */
  learnAttachments(root: string): Promise<void> {
    return this.#serial(async () => {
      const path = resolve(root);
      this.#roots.add(path);
      await this.#walk(this.#attachments ??= new AttachmentMirror(), path);
    });
  }

  /**
   * Enrolls pods, or brings enrolled ones up to date (excluded ports, inbound
   * modes, probe ports; stale entries deleted), in one bpftool batch. A pod
   * whose new entries do not fit in what the maps have left is not written
   * at all (returned), so the batch never fails on a full map.
   */
  enroll(pods: PodCapture[]): Promise<NoRoom[]> {
    return this.#serial(async () => {
      if (pods.length === 0) return [];
      const byPath = new Map(pods.map((p) => [resolve(p.cgroupPath), p]));
      for (const [path, pod] of byPath) {
        const mode = pod.inbound?.mode;
        if (mode !== undefined && mode !== 'STRICT' && mode !== 'PERMISSIVE') throw new BpfError(`${path}: invalid inbound mode ${String(mode)}`);
      }
      const targets = await Promise.all([...byPath.keys()].map((path) => this.#target(path)));
      return this.#write(async () => {
        const maps = await this.#mapMirror();
        const plan = maps.planPods(targets.map((t) => ({ id: t.id, want: entriesOf(byPath.get(t.path)!) })), this.#capacity);
        const planned = new Set(plan.planned);
        const written = targets.filter((t) => planned.has(t.id));
        const attachments = await this.#attachmentsFor(written);
        const attaches = written.map((t) => ({ t, programs: POD_PROGRAMS.filter((p) => !attachments.attached(t.id).has(this.#progId(p))) }));
        return {
          changes: plan.changes,
          then: attaches.flatMap(({ t, programs }) => programs.map((p) => this.#attachCommand(t.path, p))),
          commit: (): NoRoom[] => {
            maps.apply(plan.changes);
            for (const { t, programs } of attaches) attachments.attach(t.id, programs.map((p) => this.#progId(p)));
            for (const t of written) this.#knownIds.set(t.path, t.id);
            return plan.noRoom.map(({ id, ...room }) => ({ cgroupPath: targets.find((t) => t.id === id)!.path, ...room }));
          },
        };
      });
    });
  }

  unenroll(cgroupPaths: string[]): Promise<void> {
    return this.#serial(async () => {
      if (cgroupPaths.length === 0) return;
      const paths = [...new Set(cgroupPaths.map((p) => resolve(p)))];
      const found = await Promise.all(paths.map(async (path) => ({ path, id: await cgroupIdIfExists(path) })));
      const live = found.filter((t): t is Target => t.id !== null);
      await this.#write(async () => {
        const [maps, attachments, dropCounts] = await Promise.all([this.#mapMirror(), this.#attachmentsFor(live), dumpMap(this.#pinDir, 'drop_count')]);
        const remove = new Set<bigint>(live.map((t) => t.id));
        let unknownGone = false;
        for (const t of found) {
          if (t.id !== null) continue;
          const known = this.#knownIds.get(t.path);
          if (known === undefined) unknownGone = true;
          else remove.add(known);
        }
        // A cgroup removed before we learnt its id: drop every entry whose cgroup is gone.
        if (unknownGone) {
          const existing = await cgroupIdsUnder(await cgroup2Mount());
          for (const id of maps.enrolledIds()) if (!existing.has(id)) remove.add(id);
        }
        // Map entries first: capture and enforcement stop at once, before any detach.
        const changes = maps.removalChanges(remove);
        const detaches = live.map((t) => ({ t, programs: [...POD_PROGRAMS].reverse().filter((p) => attachments.attached(t.id).has(this.#progId(p))) }));
        return {
          changes,
          then: [
            ...dropCounts.filter((e) => remove.has(e.key)).map((e) => deleteCommand(this.#pinDir, 'drop_count', e.key)),
            ...detaches.flatMap(({ t, programs }) => programs.map((p) => this.#detachCommand(t.path, p))),
          ],
          commit: () => {
            maps.apply(changes);
            for (const { t, programs } of detaches) attachments.detach(t.id, programs.map((p) => this.#progId(p)));
            for (const id of remove) if (!live.some((t) => t.id === id)) attachments.forget(id);
          },
        };
      });
      for (const path of paths) this.#knownIds.delete(path);
    });
  }

  /**
   * Ends the pod's connections that its inbound mode, as just enrolled, does
   * not admit (strict-sweep.ts). Not queued behind enrollment: it only reads
   * the capture maps' copies.
   */
  closeInadmissible(pod: PodCapture): Promise<SweepResult> {
    return this.#sweep.run(resolve(pod.cgroupPath), entriesOf(pod));
  }

  attachZtunnel(cgroupPath: string): Promise<void> {
    return this.#serial(async () => {
      const t = await this.#target(resolve(cgroupPath));
      const attached = (await attachedProgramIds([t.path])).get(t.path);
      await batch(ZTUNNEL_PROGRAMS.filter((p) => !attached?.has(this.#progId(p))).map((p) => this.#attachCommand(t.path, p)));
    });
  }

  /**
   * Uninstall: detaches each of our programs from every cgroup below roots
   * (the pods' and the ztunnel's), then removes the pins, so that once the
   * drop watch is stopped nothing of meshlet is left in the kernel. Returns
   * the number of attachments removed.
   */
  removeFromKernel(roots: readonly string[]): Promise<number> {
    return this.#serial(async () => {
      const byId = new Map(PROGRAMS.map((p) => [this.#progId(p), p]));
      const detaches = new Map<string, string[]>();
      for (const root of new Set(roots.map((r) => resolve(r)))) {
        if ((await cgroupIdIfExists(root)) === null) continue;
        for (const [path, ids] of await attachedUnder(root)) {
          for (const id of ids) {
            const p = byId.get(id);
            if (p) detaches.set(`${path}\0${p.name}`, this.#detachCommand(path, p));
          }
        }
      }
      if (detaches.size > 0) await batch([...detaches.values()]);
      await removePins(this.#pinDir);
      this.#maps = undefined;
      this.#attachments = undefined;
      return detaches.size;
    });
  }

  /**
   * Streams inbound drops as the kernel reports them, until stop(). One
   * reader per node at a time: a newer one takes the events over. Errors
   * (the reader cannot start or dies) go to onError, else to a process
   * warning; the watch has ended then, and the counters still count.
   */
  watchDrops(onDrop: (e: DropEvent) => void, onError: (err: BpfError) => void = (err) => process.emitWarning(err)): DropWatch {
    return watchDropEvents(mapPin(this.#pinDir, 'drop_events'), onDrop, onError);
  }

  /** Dropped inbound connection attempts per enrolled pod cgroup id, since enrollment. */
  dropCounts(): Promise<Map<bigint, bigint>> {
    return this.#serial(async () => new Map((await dumpMap(this.#pinDir, 'drop_count')).map((e) => [e.key, e.value])));
  }

  enrolledCgroupIds(): Promise<bigint[]> {
    return this.#serial(async () => (await dumpMap(this.#pinDir, 'pods')).map((e) => e.key));
  }

  /** Names of this datapath's programs attached directly to the cgroup; [] if it is gone. */
  attachedTo(cgroupPath: string): Promise<string[]> {
    return this.#serial(async () => {
      const path = resolve(cgroupPath);
      if ((await cgroupIdIfExists(path)) === null) return [];
      const ids = (await attachedProgramIds([path])).get(path) ?? new Set<number>();
      return PROGRAMS.filter((p) => ids.has(this.#progId(p))).map((p) => p.name);
    });
  }

  /** Read-only, so it does not queue behind enrollment: `meshlet status` must never delay capture. */
  status(): Promise<DatapathStatus> {
    return (async () => {
      const outputs = await batch([...MAP_NAMES.map((m) => ['map', 'show', 'pinned', mapPin(this.#pinDir, m)]), ...MAP_NAMES.map((m) => dumpCommand(this.#pinDir, m))]);
      const config = decodeDump('node_config', outputs[MAP_NAMES.length + MAP_NAMES.indexOf('node_config')])[0]?.value;
      return {
        programs: PROGRAMS.map((p) => ({ name: p.name, id: this.#progId(p) })),
        addresses: config ? nodeConfigAddresses(config) : {},
        maps: MAP_NAMES.map((name, i) => ({
          name,
          entries: Array.isArray(outputs[MAP_NAMES.length + i]) ? (outputs[MAP_NAMES.length + i] as unknown[]).length : 0,
          maxEntries: numberField(outputs[i], 'max_entries', name),
        })),
        adopted: this.#adopted,
      };
    })();
  }

  async #target(path: string): Promise<Target> {
    const id = await cgroupIdIfExists(path);
    if (id === null) throw new BpfError(`cgroup not found: ${path}`);
    return { path, id };
  }

  #progId(p: ProgramSpec): number {
    const id = this.#progIds.get(p.name);
    if (id === undefined) throw new BpfError(`program ${p.name} is not loaded`);
    return id;
  }

  #attachCommand(path: string, p: ProgramSpec): string[] {
    return ['cgroup', 'attach', path, p.attachType, 'pinned', progPin(this.#pinDir, p.name), 'multi'];
  }

  #detachCommand(path: string, p: ProgramSpec): string[] {
    return ['cgroup', 'detach', path, p.attachType, 'pinned', progPin(this.#pinDir, p.name)];
  }

  #command(c: MapChange): string[] {
    return c.value === undefined ? deleteCommand(this.#pinDir, c.map, c.key) : updateCommand(this.#pinDir, c.map, c.key as never, c.value as never);
  }

  async #mapMirror(): Promise<MapMirror> {
    return (this.#maps ??= mirrorOf(await batch(mirrorCommands(this.#pinDir))));
  }

  /** The attachment mirror, knowing every target (walking for those outside the learnt roots). */
  async #attachmentsFor(targets: readonly Target[]): Promise<AttachmentMirror> {
    let mirror = this.#attachments;
    if (!mirror) {
      mirror = new AttachmentMirror();
      for (const root of this.#roots) await this.#walk(mirror, root);
      this.#attachments = mirror;
    }
    const unknown = targets.filter((t) => !mirror.knows(t.path, t.id));
    if (unknown.length > 0) {
      const found = await attachedProgramIds(unknown.map((t) => t.path));
      mirror.recordCgroups(new Map(unknown.map((t) => [t.id, found.get(t.path) ?? new Set<number>()])));
    }
    return mirror;
  }

  async #walk(mirror: AttachmentMirror, root: string): Promise<void> {
    if ((await cgroupIdIfExists(root)) === null) return mirror.recordWalk(root, new Map());
    const ours = new Set(this.#progIds.values());
    const byId = new Map<bigint, Set<number>>();
    for (const [path, ids] of await attachedUnder(root)) {
      const mine = new Set([...ids].filter((id) => ours.has(id)));
      if (mine.size === 0) continue;
      const id = await cgroupIdIfExists(path);
      if (id !== null) byId.set(id, mine);
    }
    mirror.recordWalk(root, byId);
  }

  /**
   * Runs a batch planned from the mirrors and records it there. A batch that
   * stops partway has its map writes undone, so no pod is left with part of
   * its entries. A failure means the kernel may differ from the mirrors (an
   * entry changed behind them, a cgroup went away meanwhile): they are read
   * again from the kernel and the batch planned once more.
   */
  async #write<T>(plan: () => Promise<WritePlan<T>>): Promise<T> {
    const attempt = async (): Promise<T> => {
      const p = await plan();
      const { outputs, error } = await tryBatch([...p.changes.map((c) => this.#command(c)), ...p.then]);
      if (!error) return p.commit();
      throw await this.#undo(p.changes.slice(0, outputs.length), error);
    };
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof BpfError || err instanceof CommandError)) throw err;
      this.#maps = undefined;
      this.#attachments = undefined;
      return await attempt();
    }
  }

  /** Undoes the map writes a failed batch made; returns the error to throw (naming the undo's failure too). */
  async #undo(ran: readonly MapChange[], error: BpfError | CommandError): Promise<BpfError | CommandError> {
    const maps = this.#maps;
    if (ran.length === 0 || !maps) return error;
    const undone = await tryBatch(maps.undoChanges(ran).map((c) => this.#command(c))).catch((err: unknown) => ({ error: err }));
    if (!undone.error) return error;
    const why = undone.error instanceof Error ? undone.error.message : String(undone.error);
    return new BpfError(`${error.message}; undoing the ${ran.length} map writes before it failed too, so pod entries may be incomplete until the next enroll: ${why}`, { cause: error });
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(op, op);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

function numberField(output: unknown, field: string, what: string): number {
  const value = isRecord(output) ? output[field] : undefined;
  if (typeof value !== 'number') throw new BpfError(`bpftool output for ${what} has no ${field}`);
  return value;
}

// The agent's handle on the eBPF capture layer: loads or re-adopts the pinned
// programs and maps, enrolls pod cgroups (map entries + attaches, including
// inbound enforcement) and un-enrolls them, and reports inbound drops. Never
// touches cookie_dst/flow_dst, which belong to live connections. Operations
// run one at a time.
import { join, resolve } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { BpfError } from '../errors.ts';
import { PORTS } from '../state/model.ts';
import { attachedProgramIds } from './attachments.ts';
import { batch, isRecord } from './bpftool.ts';
import { cgroup2Mount, cgroupIdIfExists, cgroupIdsUnder } from './cgroup.ts';
import { type InboundMode, MAP_CODECS, POD_FLAGS } from './codec.ts';
import { type DropEvent, type DropWatch, watchDropEvents } from './drop-watch.ts';
import { decodeDump, deleteCommand, dumpCommand, dumpMap, type Entry, type KeyOf, updateCommand, type ValueOf } from './maps.ts';
import { DEFAULT_OBJECT_DIR, MAP_NAMES, mapPin, OBJECT_FILE, POD_PROGRAMS, type ProgramSpec, progPin, PROGRAMS, ZTUNNEL_PROGRAMS } from './objects.ts';
import { loadOrAdopt, removePins, stalePinsError } from './pins.ts';

export type { DropReason, InboundMode } from './codec.ts';
export type { DropEvent, DropWatch } from './drop-watch.ts';

export interface DatapathOptions {
  /** e.g. /sys/fs/bpf/meshlet/<cluster>/<node>; progs and maps are pinned below it. */
  pinDir: string;
  /** Where meshlet.bpf.o is; default <repo>/build/bpf. */
  objectDir?: string;
  /** Capture address the ztunnel listens on (port = outboundPort). */
  ztunnelIp4: string;
  ztunnelIp6?: string;
  /** Default PORTS.outbound (15001). */
  outboundPort?: number;
  /** The source address of the ztunnel's connections to local pods: always admitted inbound. Absent: none. */
  inboundSourceIp4?: string;
  inboundSourceIp6?: string;
  /** The node's own address (kubelet probes): admitted on a pod's probe ports. Absent: none. */
  nodeIp4?: string;
  nodeIp6?: string;
}

/**
 * Inbound mTLS mode as the agent computed it (PERMISSIVE only where the
 * PeerAuthentication says so and no AuthorizationPolicy selects the pod).
 * Under STRICT the kernel drops TCP connection attempts except from loopback,
 * the inbound source address, or the node address on a probe port.
 */
export interface InboundEnforcement {
  /** The pod's default. */
  mode: InboundMode;
  /** Per destination port, overriding the default. */
  portModes?: Record<number, InboundMode>;
  /** Ports the node address may reach under STRICT. */
  probePorts?: number[];
}

export interface PodCapture {
  cgroupPath: string;
  excludeOutboundPorts: number[];
  /** Absent: PERMISSIVE, nothing enforced. */
  inbound?: InboundEnforcement;
}

export interface DatapathStatus {
  programs: { name: string; id: number }[];
  maps: { name: string; entries: number; maxEntries: number }[];
  /** True when open() found the programs already pinned (agent restart). */
  adopted?: boolean;
}

/** Maps keyed by (pod cgroup, port). */
type PodPortMap = 'excluded_ports' | 'port_mode' | 'probe_ports';

interface Target {
  path: string;
  id: bigint;
}

export class BpfDatapath {
  readonly #pinDir: string;
  readonly #progIds: ReadonlyMap<string, number>;
  readonly #adopted: boolean;
  /** Ids of cgroups enrolled by this process, so a removed cgroup can still be cleaned up. */
  readonly #knownIds = new Map<string, bigint>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(pinDir: string, progIds: ReadonlyMap<string, number>, adopted: boolean) {
    this.#pinDir = pinDir;
    this.#progIds = progIds;
    this.#adopted = adopted;
  }

  static async open(opts: DatapathOptions): Promise<BpfDatapath> {
    const pinDir = resolve(opts.pinDir);
    const outboundPort = opts.outboundPort ?? PORTS.outbound;
    if (!isIPv4(opts.ztunnelIp4)) throw new BpfError(`ztunnelIp4 is not an IPv4 address: ${opts.ztunnelIp4}`);
    for (const field of ['ztunnelIp6', 'inboundSourceIp6', 'nodeIp6'] as const) {
      const ip = opts[field];
      if (ip !== undefined && !isIPv6(ip)) throw new BpfError(`${field} is not an IPv6 address: ${ip}`);
    }
    for (const field of ['inboundSourceIp4', 'nodeIp4'] as const) {
      const ip = opts[field];
      if (ip !== undefined && !isIPv4(ip)) throw new BpfError(`${field} is not an IPv4 address: ${ip}`);
    }

    const adopted = await loadOrAdopt(join(opts.objectDir ?? DEFAULT_OBJECT_DIR, OBJECT_FILE), pinDir);
    const shown = await batch([
      ...MAP_NAMES.map((m) => ['map', 'show', 'pinned', mapPin(pinDir, m)]),
      ...PROGRAMS.map((p) => ['prog', 'show', 'pinned', progPin(pinDir, p.name)]),
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
    await batch([
      updateCommand(pinDir, 'node_config', 0, {
        ztunnelIp4: opts.ztunnelIp4,
        ztunnelIp6: opts.ztunnelIp6 ?? null,
        outboundPort,
        inboundSourceIp4: opts.inboundSourceIp4 ?? null,
        inboundSourceIp6: opts.inboundSourceIp6 ?? null,
        nodeIp4: opts.nodeIp4 ?? null,
        nodeIp6: opts.nodeIp6 ?? null,
      }),
    ]);
    return new BpfDatapath(pinDir, progIds, adopted);
  }

  /** Removes pinDir and its pins. Attachments stay until their cgroups are removed. */
  static async destroy(pinDir: string): Promise<void> {
    await removePins(resolve(pinDir));
  }

  /**
   * Enrolls pods, or brings enrolled ones up to date (excluded ports, inbound
   * modes, probe ports; stale entries deleted), in one bpftool batch.
   */
  enroll(pods: PodCapture[]): Promise<void> {
    return this.#serial(async () => {
      if (pods.length === 0) return;
      const byPath = new Map(pods.map((p) => [resolve(p.cgroupPath), p]));
      const targets = await Promise.all([...byPath.keys()].map((path) => this.#target(path)));
      const [attached, dumped] = await Promise.all([
        attachedProgramIds(targets.map((t) => t.path)),
        batch([dumpCommand(this.#pinDir, 'excluded_ports'), dumpCommand(this.#pinDir, 'port_mode'), dumpCommand(this.#pinDir, 'probe_ports')]),
      ]);
      const excluded = decodeDump('excluded_ports', dumped[0]);
      const portModes = decodeDump('port_mode', dumped[1]);
      const probePorts = decodeDump('probe_ports', dumped[2]);

      // Additions go in before the pod entry (an excluded port is never
      // captured, a probe port never dropped), stale entries after it.
      const writes: string[][] = [];
      const deletes: string[][] = [];
      for (const t of targets) {
        const pod = byPath.get(t.path);
        const inbound = pod?.inbound;
        if (inbound !== undefined && inbound.mode !== 'STRICT' && inbound.mode !== 'PERMISSIVE') throw new BpfError(`${t.path}: invalid inbound mode ${String(inbound.mode)}`);
        const sync = <N extends PodPortMap>(name: N, have: Entry<N>[], want: Map<number, ValueOf<N>>): void => {
          const current = new Map(have.filter((e) => e.key.cgroupId === t.id).map((e) => [e.key.port, e.value]));
          for (const [port, value] of want) if (current.get(port) !== value) writes.push(updateCommand(this.#pinDir, name, { cgroupId: t.id, port } as KeyOf<N>, value));
          for (const port of current.keys()) if (!want.has(port)) deletes.push(deleteCommand(this.#pinDir, name, { cgroupId: t.id, port } as KeyOf<N>));
        };
        sync('excluded_ports', excluded, new Map((pod?.excludeOutboundPorts ?? []).map((port) => [port, true])));
        sync('port_mode', portModes, new Map(Object.entries(inbound?.portModes ?? {}).map(([port, mode]) => [Number(port), mode])));
        sync('probe_ports', probePorts, new Map((inbound?.probePorts ?? []).map((port) => [port, true])));
        const strict = inbound?.mode === 'STRICT' ? POD_FLAGS.strictInbound : 0;
        writes.push(updateCommand(this.#pinDir, 'pods', t.id, { flags: POD_FLAGS.captureOutbound | strict }));
      }
      const attaches = targets.flatMap((t) => this.#attachCommands(t.path, POD_PROGRAMS, attached.get(t.path)));
      await batch([...writes, ...deletes, ...attaches]);
      for (const t of targets) this.#knownIds.set(t.path, t.id);
    });
  }

  unenroll(cgroupPaths: string[]): Promise<void> {
    return this.#serial(async () => {
      if (cgroupPaths.length === 0) return;
      const paths = [...new Set(cgroupPaths.map((p) => resolve(p)))];
      const found = await Promise.all(paths.map(async (path) => ({ path, id: await cgroupIdIfExists(path) })));
      const live = found.filter((t): t is Target => t.id !== null);
      const [attached, dumped] = await Promise.all([
        attachedProgramIds(live.map((t) => t.path)),
        batch([
          dumpCommand(this.#pinDir, 'pods'),
          dumpCommand(this.#pinDir, 'excluded_ports'),
          dumpCommand(this.#pinDir, 'port_mode'),
          dumpCommand(this.#pinDir, 'probe_ports'),
          dumpCommand(this.#pinDir, 'drop_count'),
        ]),
      ]);
      const enrolled = new Set(decodeDump('pods', dumped[0]).map((e) => e.key));
      const excluded = decodeDump('excluded_ports', dumped[1]);
      const portModes = decodeDump('port_mode', dumped[2]);
      const probePorts = decodeDump('probe_ports', dumped[3]);
      const dropCounts = decodeDump('drop_count', dumped[4]);

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
        for (const id of enrolled) if (!existing.has(id)) remove.add(id);
      }

      // Map entries first: capture and enforcement stop at once, before any detach.
      const commands: string[][] = [];
      for (const id of remove) if (enrolled.has(id)) commands.push(deleteCommand(this.#pinDir, 'pods', id));
      for (const e of excluded) if (remove.has(e.key.cgroupId)) commands.push(deleteCommand(this.#pinDir, 'excluded_ports', e.key));
      for (const e of portModes) if (remove.has(e.key.cgroupId)) commands.push(deleteCommand(this.#pinDir, 'port_mode', e.key));
      for (const e of probePorts) if (remove.has(e.key.cgroupId)) commands.push(deleteCommand(this.#pinDir, 'probe_ports', e.key));
      for (const e of dropCounts) if (remove.has(e.key)) commands.push(deleteCommand(this.#pinDir, 'drop_count', e.key));
      for (const t of live) commands.push(...this.#detachCommands(t.path, [...POD_PROGRAMS].reverse(), attached.get(t.path)));
      await batch(commands);
      for (const path of paths) this.#knownIds.delete(path);
    });
  }

  attachZtunnel(cgroupPath: string): Promise<void> {
    return this.#serial(async () => {
      const t = await this.#target(resolve(cgroupPath));
      const attached = await attachedProgramIds([t.path]);
      await batch(this.#attachCommands(t.path, ZTUNNEL_PROGRAMS, attached.get(t.path)));
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
      return {
        programs: PROGRAMS.map((p) => ({ name: p.name, id: this.#progId(p) })),
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

  #attachCommands(path: string, programs: readonly ProgramSpec[], attached: ReadonlySet<number> | undefined): string[][] {
    return programs
      .filter((p) => !attached?.has(this.#progId(p)))
      .map((p) => ['cgroup', 'attach', path, p.attachType, 'pinned', progPin(this.#pinDir, p.name), 'multi']);
  }

  #detachCommands(path: string, programs: readonly ProgramSpec[], attached: ReadonlySet<number> | undefined): string[][] {
    return programs
      .filter((p) => attached?.has(this.#progId(p)))
      .map((p) => ['cgroup', 'detach', path, p.attachType, 'pinned', progPin(this.#pinDir, p.name)]);
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

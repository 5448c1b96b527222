// The agent's handle on the eBPF capture layer: loads or re-adopts the pinned
// programs and maps, enrolls pod cgroups (map entries + attaches) and
// un-enrolls them. Never touches cookie_dst/flow_dst, which belong to live
// connections. Operations run one at a time.
import { join, resolve } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { BpfError } from '../errors.ts';
import { PORTS } from '../state/model.ts';
import { attachedProgramIds } from './attachments.ts';
import { batch, isRecord } from './bpftool.ts';
import { cgroup2Mount, cgroupIdIfExists, cgroupIdsUnder } from './cgroup.ts';
import { MAP_CODECS, POD_FLAGS } from './codec.ts';
import { decodeDump, deleteCommand, dumpCommand, dumpMap, updateCommand } from './maps.ts';
import { DEFAULT_OBJECT_DIR, MAP_NAMES, mapPin, OBJECT_FILE, POD_PROGRAMS, type ProgramSpec, progPin, PROGRAMS, ZTUNNEL_PROGRAMS } from './objects.ts';
import { loadOrAdopt, removePins } from './pins.ts';

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
}

export interface PodCapture {
  cgroupPath: string;
  excludeOutboundPorts: number[];
}

export interface DatapathStatus {
  programs: { name: string; id: number }[];
  maps: { name: string; entries: number; maxEntries: number }[];
  /** True when open() found the programs already pinned (agent restart). */
  adopted?: boolean;
}

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
    if (opts.ztunnelIp6 !== undefined && !isIPv6(opts.ztunnelIp6)) throw new BpfError(`ztunnelIp6 is not an IPv6 address: ${opts.ztunnelIp6}`);

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
        throw new BpfError(`pinned map ${mapPin(pinDir, name)} has key/value sizes ${sizes.join('/')}, this build expects ${key.layout.size}/${value.layout.size}; destroy ${pinDir} and restart`);
      }
    });
    const progIds = new Map(PROGRAMS.map((p, i) => [p.name, numberField(shown[MAP_NAMES.length + i], 'id', p.name)]));
    await batch([updateCommand(pinDir, 'node_config', 0, { ztunnelIp4: opts.ztunnelIp4, ztunnelIp6: opts.ztunnelIp6 ?? null, outboundPort })]);
    return new BpfDatapath(pinDir, progIds, adopted);
  }

  /** Removes pinDir and its pins. Attachments stay until their cgroups are removed. */
  static async destroy(pinDir: string): Promise<void> {
    await removePins(resolve(pinDir));
  }

  enroll(pods: PodCapture[]): Promise<void> {
    return this.#serial(async () => {
      if (pods.length === 0) return;
      const byPath = new Map(pods.map((p) => [resolve(p.cgroupPath), p]));
      const targets = await Promise.all([...byPath.keys()].map((path) => this.#target(path)));
      const [attached, dumped] = await Promise.all([attachedProgramIds(targets.map((t) => t.path)), batch([dumpCommand(this.#pinDir, 'excluded_ports')])]);
      const excluded = decodeDump('excluded_ports', dumped[0]);

      const commands: string[][] = [];
      for (const t of targets) {
        const want = new Set(byPath.get(t.path)?.excludeOutboundPorts ?? []);
        const have = new Set(excluded.filter((e) => e.key.cgroupId === t.id).map((e) => e.key.port));
        // Exclusions go in before the pod entry, so an excluded port is never captured.
        for (const port of want) if (!have.has(port)) commands.push(updateCommand(this.#pinDir, 'excluded_ports', { cgroupId: t.id, port }, true));
        for (const port of have) if (!want.has(port)) commands.push(deleteCommand(this.#pinDir, 'excluded_ports', { cgroupId: t.id, port }));
        commands.push(updateCommand(this.#pinDir, 'pods', t.id, { flags: POD_FLAGS.captureOutbound }));
        commands.push(...this.#attachCommands(t.path, POD_PROGRAMS, attached.get(t.path)));
      }
      await batch(commands);
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
        batch([dumpCommand(this.#pinDir, 'pods'), dumpCommand(this.#pinDir, 'excluded_ports')]),
      ]);
      const enrolled = new Set(decodeDump('pods', dumped[0]).map((e) => e.key));
      const excluded = decodeDump('excluded_ports', dumped[1]);

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

      // Map entries first: capture stops at once, before any detach.
      const commands: string[][] = [];
      for (const id of remove) if (enrolled.has(id)) commands.push(deleteCommand(this.#pinDir, 'pods', id));
      for (const e of excluded) if (remove.has(e.key.cgroupId)) commands.push(deleteCommand(this.#pinDir, 'excluded_ports', e.key));
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

  status(): Promise<DatapathStatus> {
    return this.#serial(async () => {
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
    });
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

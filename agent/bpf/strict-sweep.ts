// Ending the connections into a pod that its inbound mode no longer admits,
// with the tcp iterator of bpf/iter/strict_sweep.bpf.c. `bpftool iter pin`
// loads that object on its own and pins the iterator link; its maps are that
// object's copies of pods, port_mode, probe_ports and node_config, pinned
// next to the link, and before each run the agent writes into them the one
// pod's entries (as enrollment wrote them into the capture maps) and the
// pod's cgroup id. Reading the link from inside the pod's network namespace
// (nsenter) runs the iterator over that namespace's TCP sockets; it prints a
// line per connection it ends. Runs go one at a time; after any failure the
// next run starts from a freshly pinned iterator, so no stale copy lingers.
import { access, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BpfError } from '../../lib/core/errors.ts';
import { run } from '../../lib/core/exec.ts';
import { batch, bpftool, bpftoolJson, isRecord } from './bpftool.ts';
import { cgroupIdIfExists } from './cgroup.ts';
import { type Codec, type NodeConfig, toHexArgs, u32Codec } from './codec.ts';
import { formatIp16 } from './inet.ts';
import { deleteCommand, updateCommand } from './maps.ts';
import type { PodEntries } from './mirror.ts';
import { podNetnsPath } from './pod-netns.ts';

export const SWEEP_OBJECT_FILE = 'strict_sweep.bpf.o';
/** Below the datapath's pin directory: the iterator link and its maps. */
const SWEEP_DIR = 'strict_sweep';
const LINK = 'iter';
/** The object's maps that the agent writes, by their names in the object. */
const COPIED_MAPS = ['pods', 'port_mode', 'probe_ports', 'node_config'] as const;
const CONFIG_MAP = 'sweep_config';
/** A pod process that exits between lookup and nsenter: look again, this often. */
const NETNS_ATTEMPTS = 3;

/** struct sweep_config in bpf/iter/strict_sweep.bpf.c. */
export const sweepConfigCodec: Codec<bigint> = {
  layout: { cType: 'sweep_config', size: 8, members: { cgroup_id: 0 } },
  encode(cgroupId) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, cgroupId, true);
    return bytes;
  },
  decode: (bytes) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true),
};

export interface SweptConnection {
  local: { ip: string; port: number };
  peer: { ip: string; port: number };
}

export interface SweepResult {
  /** Connections the kernel ended: the peer got a reset. */
  closed: SweptConnection[];
  /** Connections the kernel refused to end, with its errno. */
  failed: (SweptConnection & { errno: number })[];
  /** Why nothing was looked at: the pod has no process (so no netns to enter) or no cgroup. */
  skipped?: string;
}

/** %pI6: eight groups of four hex digits. */
const IP6_FULL = /^(?:[0-9a-f]{4}:){7}[0-9a-f]{4}$/;

function ipOf(text: string, line: string): string {
  if (!IP6_FULL.test(text)) throw new BpfError(`strict sweep printed an unreadable address in: ${line}`);
  const hex = text.replaceAll(':', '');
  return formatIp16(Uint8Array.from({ length: 16 }, (_, i) => Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)));
}

/** The iterator's output: "close …" per connection ended, a "failed … errno" after one the kernel refused. */
export function parseSweepOutput(text: string): Omit<SweepResult, 'skipped'> {
  const closed: SweptConnection[] = [];
  const failed: SweepResult['failed'] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [verb, local, localPort, peer, peerPort, errno] = line.split(' ');
    if ((verb !== 'close' && verb !== 'failed') || localPort === undefined || peerPort === undefined || (verb === 'failed') !== (errno !== undefined)) {
      throw new BpfError(`strict sweep printed an unexpected line: ${line}`);
    }
    const conn = { local: { ip: ipOf(local ?? '', line), port: Number(localPort) }, peer: { ip: ipOf(peer ?? '', line), port: Number(peerPort) } };
    if (verb === 'close') {
      closed.push(conn);
      continue;
    }
    // The close line came first; the kernel refused it after all.
    const i = closed.findIndex((c) => c.local.ip === conn.local.ip && c.local.port === conn.local.port && c.peer.ip === conn.peer.ip && c.peer.port === conn.peer.port);
    if (i !== -1) closed.splice(i, 1);
    failed.push({ ...conn, errno: Number(errno) });
  }
  return { closed, failed };
}

export interface StrictSweepOptions {
  /** The datapath's pin directory; the sweep pins below it. */
  pinDir: string;
  /** Where strict_sweep.bpf.o is. */
  objectDir: string;
  /** The node's addresses, as the capture object's node_config holds them. */
  nodeConfig: NodeConfig;
}

export class StrictSweep {
  readonly #dir: string;
  readonly #object: string;
  readonly #nodeConfig: NodeConfig;
  /** False after a failed run: the next one pins a fresh iterator first. */
  #fresh = false;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(opts: StrictSweepOptions) {
    this.#dir = join(opts.pinDir, SWEEP_DIR);
    this.#object = join(opts.objectDir, SWEEP_OBJECT_FILE);
    this.#nodeConfig = opts.nodeConfig;
  }

  /** Pins a fresh iterator (an earlier agent's goes: it holds no state worth keeping). */
  static async open(opts: StrictSweepOptions): Promise<StrictSweep> {
    const sweep = new StrictSweep(opts);
    await sweep.#pin();
    return sweep;
  }

  /**
   * Ends the connections into the pod at cgroupPath (enrolled with `entries`,
   * already written to the capture maps) that those entries no longer admit.
   */
  run(cgroupPath: string, entries: PodEntries): Promise<SweepResult> {
    const op = async (): Promise<SweepResult> => {
      const id = await cgroupIdIfExists(cgroupPath);
      if (id === null) return { closed: [], failed: [], skipped: 'the pod cgroup is gone' };
      try {
        if (!this.#fresh) await this.#pin();
        this.#fresh = false;
        const output = await this.#read(cgroupPath, id, entries);
        this.#fresh = true;
        return output === null ? { closed: [], failed: [], skipped: 'the pod has no process, so no network namespace to enter' } : parseSweepOutput(output);
      } catch (err) {
        throw err instanceof BpfError ? err : new BpfError(`closing connections of ${cgroupPath} that STRICT no longer admits failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    };
    const result = this.#queue.then(op, op);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Writes the pod's copies, reads the iterator inside the pod's netns, and deletes the copies again; null: no netns. */
  async #read(cgroupPath: string, id: bigint, entries: PodEntries): Promise<string | null> {
    const portKeys = (map: 'port_mode' | 'probe_ports') => [...entries[map].keys()].map((port) => ({ cgroupId: id, port }));
    await batch([
      ...[...entries.port_mode].map(([port, mode]) => updateCommand(this.#dir, 'port_mode', { cgroupId: id, port }, mode)),
      ...[...entries.probe_ports.keys()].map((port) => updateCommand(this.#dir, 'probe_ports', { cgroupId: id, port }, true)),
      updateCommand(this.#dir, 'pods', id, { flags: entries.flags, ip4: entries.ip4, ip6: entries.ip6 }),
      ['map', 'update', 'pinned', this.#mapPath(CONFIG_MAP), 'key', 'hex', ...toHexArgs(u32Codec.encode(0)), 'value', 'hex', ...toHexArgs(sweepConfigCodec.encode(id))],
    ]);
    let output: string | null = null;
    for (let attempt = 1; ; attempt++) {
      const netns = await podNetnsPath(cgroupPath);
      if (netns === null) break;
      const r = await run('nsenter', [`--net=${netns}`, '--', 'cat', join(this.#dir, LINK)], { allowFailure: true });
      if (r.exitCode === 0) {
        output = r.stdout;
        break;
      }
      // The process left before nsenter opened its netns: take another one.
      const gone = await access(netns).then(() => false, () => true);
      if (!gone || attempt === NETNS_ATTEMPTS) throw new BpfError(`reading the strict sweep iterator in ${netns} failed (exit ${String(r.exitCode)}): ${r.stderr.trim()}`);
    }
    await batch([
      deleteCommand(this.#dir, 'pods', id),
      ...portKeys('port_mode').map((k) => deleteCommand(this.#dir, 'port_mode', k)),
      ...portKeys('probe_ports').map((k) => deleteCommand(this.#dir, 'probe_ports', k)),
    ]);
    return output;
  }

  #mapPath(name: string): string {
    return join(this.#dir, 'maps', name);
  }

  /** `bpftool iter pin`, then the object's maps pinned by name (found through the link's program) and node_config written. */
  async #pin(): Promise<void> {
    await access(this.#object).catch(() => {
      throw new BpfError(`BPF object ${this.#object} not found; build it with scripts/build-bpf.sh`);
    });
    await rm(this.#dir, { recursive: true, force: true });
    await mkdir(join(this.#dir, 'maps'), { recursive: true });
    const link = join(this.#dir, LINK);
    await bpftool(['iter', 'pin', this.#object, link]);
    const progId = numberField(await bpftoolJson(['link', 'show', 'pinned', link]), 'prog_id', 'the strict sweep link');
    const prog = await bpftoolJson(['prog', 'show', 'id', String(progId)]);
    const mapIds = isRecord(prog) && Array.isArray(prog.map_ids) ? prog.map_ids.filter((m): m is number => typeof m === 'number') : [];
    const shown = await batch(mapIds.map((m) => ['map', 'show', 'id', String(m)]));
    const byName = new Map(shown.map((s, i) => [isRecord(s) ? s.name : undefined, mapIds[i]]));
    const wanted = [...COPIED_MAPS, CONFIG_MAP];
    const missing = wanted.filter((name) => !byName.has(name));
    if (missing.length > 0) throw new BpfError(`${this.#object} lacks the maps ${missing.join(', ')}: rebuild it with scripts/build-bpf.sh`);
    await batch([
      ...wanted.map((name) => ['map', 'pin', 'id', String(byName.get(name)), this.#mapPath(name)]),
      updateCommand(this.#dir, 'node_config', 0, this.#nodeConfig),
    ]);
    this.#fresh = true;
  }
}

function numberField(output: unknown, field: string, what: string): number {
  const value = isRecord(output) ? output[field] : undefined;
  if (typeof value !== 'number') throw new BpfError(`bpftool output for ${what} has no ${field}`);
  return value;
}

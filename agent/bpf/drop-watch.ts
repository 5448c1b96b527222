// Drop events from the kernel: `bpftool map event_pipe` as a long-running
// child whose JSON stream is decoded record by record. bpftool writes through
// stdio, which holds back a pipe's output until 4 KiB pile up, hence
// `stdbuf -o0`; `setpriv --pdeathsig KILL` makes sure an agent that dies
// (even SIGKILLed) never leaves a reader behind.
import { spawn } from 'node:child_process';
import { BpfError } from '../errors.ts';
import { isRecord } from './bpftool.ts';
import { dropEventCodec, type DropRecord } from './codec.ts';

export interface DropEvent extends DropRecord {
  /** When the agent read it (perf timestamps are not wall-clock). */
  at: Date;
}

export interface DropWatch {
  /** Ends the reader; no callback runs afterwards. */
  stop(): void;
  /** Events the kernel discarded because the reader fell behind (perf "lost" records). */
  readonly lost: number;
}

const PERF_RECORD_LOST = 2;
const PERF_RECORD_SAMPLE = 9;

export type PipeRecord = { kind: 'drop'; record: DropRecord } | { kind: 'lost'; count: number };

/**
 * Splits the JSON array bpftool streams (`[{…},{…}` and `]` only when it
 * exits, no newlines) into the text of its elements as they complete.
 */
export class JsonArraySplitter {
  #depth = 0;
  #inString = false;
  #escaped = false;
  #element = '';

  push(chunk: string): string[] {
    const done: string[] = [];
    for (const ch of chunk) {
      if (this.#depth >= 2) this.#element += ch;
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (ch === '\\') this.#escaped = true;
        else if (ch === '"') this.#inString = false;
        continue;
      }
      if (ch === '"') {
        this.#inString = true;
      } else if (ch === '{' || ch === '[') {
        if (++this.#depth === 2) this.#element = ch;
      } else if (ch === '}' || ch === ']') {
        if (--this.#depth === 1) done.push(this.#element);
        if (this.#depth < 0) throw new BpfError('bpftool event_pipe: unbalanced JSON');
      }
    }
    return done;
  }
}

/** One element of bpftool's event_pipe output; null for record types other than samples and losses. */
export function decodePipeRecord(value: unknown): PipeRecord | null {
  if (!isRecord(value) || typeof value.type !== 'number') throw new BpfError(`bpftool event_pipe: unexpected record ${JSON.stringify(value).slice(0, 200)}`);
  if (value.type === PERF_RECORD_LOST) {
    const count = isRecord(value.lost) ? value.lost.count : undefined;
    if (typeof count !== 'number') throw new BpfError(`bpftool event_pipe: lost record without a count: ${JSON.stringify(value)}`);
    return { kind: 'lost', count };
  }
  if (value.type !== PERF_RECORD_SAMPLE) return null;
  const data = value.data;
  const size = dropEventCodec.layout.size;
  // The kernel pads samples to 8 bytes: the record is the first `size` of them.
  if (!Array.isArray(data) || data.length < size || !data.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) {
    throw new BpfError(`bpftool event_pipe: sample is not a ${size}-byte drop_event: ${JSON.stringify(data).slice(0, 200)}`);
  }
  return { kind: 'drop', record: dropEventCodec.decode(Uint8Array.from(data.slice(0, size) as number[])) };
}

export function watchDropEvents(mapPinPath: string, onDrop: (e: DropEvent) => void, onError: (err: BpfError) => void): DropWatch {
  const args = ['--pdeathsig', 'KILL', 'stdbuf', '-o0', 'bpftool', '-j', 'map', 'event_pipe', 'pinned', mapPinPath];
  const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const splitter = new JsonArraySplitter();
  let stopped = false;
  let lost = 0;
  let stderr = '';

  const fail = (err: BpfError): void => {
    if (stopped) return;
    stopped = true;
    child.kill('SIGKILL');
    onError(err);
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    if (stopped) return;
    let records: PipeRecord[];
    try {
      records = splitter.push(chunk).flatMap((text) => decodePipeRecord(JSON.parse(text) as unknown) ?? []);
    } catch (err) {
      return fail(err instanceof BpfError ? err : new BpfError(`bpftool event_pipe: unreadable output: ${String(err)}`, { cause: err }));
    }
    for (const r of records) {
      if (stopped) return;
      if (r.kind === 'lost') lost += r.count;
      else onDrop({ ...r.record, at: new Date() });
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
  child.on('error', (err) => fail(new BpfError(`cannot start the drop event reader (setpriv from util-linux, stdbuf from coreutils, bpftool): ${err.message}`, { cause: err })));
  child.on('close', (code, signal) => fail(new BpfError(`bpftool map event_pipe pinned ${mapPinPath} ended (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`)));

  return {
    stop() {
      if (stopped) return;
      stopped = true;
      child.kill('SIGTERM');
    },
    get lost() {
      return lost;
    },
  };
}

// Drop events from the kernel: `bpftool map event_pipe` as a long-running
// child, its output decoded record by record. Text output, not -j: bpftool
// writes through stdio, and even unbuffered glibc holds back a JSON record's
// last character (its closing brace) until the next record, while a text
// record ends in a newline, which `stdbuf -oL` flushes at once.
// `setpriv --pdeathsig KILL`: an agent that dies, even SIGKILLed, never
// leaves a reader behind.
import { spawn } from 'node:child_process';
import { BpfError } from '../../lib/core/errors.ts';
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

export type PipeRecord = { kind: 'drop'; record: DropRecord } | { kind: 'lost'; count: number };

const SAMPLE_HEADER = /^== @\d+\.\d+ CPU: \d+ index: \d+ =+$/;
const HEX_LINE = /^[0-9a-f]{2}(?: {1,2}[0-9a-f]{2})*$/;
const LOST = /^lost (\d+) events$/;
const UNKNOWN_TYPE = /^unknown event type=\d+ size=\d+$/;

/**
 * Parses what bpftool 7.1 prints per perf record: a sample as
 * `== @<time> CPU: <n> index: <n> =====` then its bytes in hex, 16 a line;
 * a loss as `lost <n> events`.
 */
export class EventPipeParser {
  #partial = '';
  /** Bytes of the sample being read; null once decoded (the rest is the kernel's 8-byte padding). */
  #sample: number[] | null = null;

  push(chunk: string): PipeRecord[] {
    const lines = (this.#partial + chunk).split('\n');
    this.#partial = lines.pop() ?? '';
    const records: PipeRecord[] = [];
    for (const line of lines) {
      const lost = LOST.exec(line);
      if (SAMPLE_HEADER.test(line) || lost) {
        this.#checkNoPartialSample();
        this.#sample = lost ? null : [];
        if (lost) records.push({ kind: 'lost', count: Number(lost[1]) });
      } else if (HEX_LINE.test(line)) {
        if (this.#sample === null) continue;
        this.#sample.push(...line.split(/ +/).map((b) => Number.parseInt(b, 16)));
        const size = dropEventCodec.layout.size;
        if (this.#sample.length >= size) {
          records.push({ kind: 'drop', record: dropEventCodec.decode(Uint8Array.from(this.#sample.slice(0, size))) });
          this.#sample = null;
        }
      } else if (line !== '' && !UNKNOWN_TYPE.test(line)) {
        throw new BpfError(`bpftool event_pipe: unexpected output: ${line.slice(0, 200)}`);
      }
    }
    return records;
  }

  #checkNoPartialSample(): void {
    if (this.#sample !== null && this.#sample.length > 0) {
      throw new BpfError(`bpftool event_pipe: a ${this.#sample.length}-byte sample is no ${dropEventCodec.layout.size}-byte drop_event`);
    }
  }
}

export function watchDropEvents(mapPinPath: string, onDrop: (e: DropEvent) => void, onError: (err: BpfError) => void): DropWatch {
  const args = ['--pdeathsig', 'KILL', 'stdbuf', '-oL', 'bpftool', 'map', 'event_pipe', 'pinned', mapPinPath];
  const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const parser = new EventPipeParser();
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
      records = parser.push(chunk);
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

// One container's log as kubelet's /containerLogs serves it: the whole file
// or its last lines, up to a byte limit, and with follow what the container
// writes next, until it ends or the reader goes away. The runtime writes a
// container's stdout and stderr to one file per instance, as they come.
import { once } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxError } from '../../lib/core/errors.ts';

/** A log the runtime cannot serve (no such pod, container or previous instance); the message says which. */
export class ContainerLogError extends SandboxError {}

/** One instance's log file, as the runtime names it. */
export interface ContainerLog {
  file: string;
  /** The instance still runs: a follow waits for what it writes next. */
  running(): boolean;
}

/** What `kubectl logs` asks for (its --tail, --limit-bytes and -f). */
export interface LogRequest {
  tailLines?: number;
  limitBytes?: number;
  follow: boolean;
}

const CHUNK_BYTES = 64 * 1024;
/** A follow looks for new output this often (kubelet's CRI log reader polls too). */
const FOLLOW_POLL_MS = 200;

/** Where the last `lines` lines of the file's first `size` bytes begin; a final newline ends the last line, it starts none. */
async function tailOffset(handle: FileHandle, size: number, lines: number): Promise<number> {
  if (lines === 0) return size;
  const buf = Buffer.alloc(CHUNK_BYTES);
  let seen = 0;
  for (let end = size; end > 0; end -= CHUNK_BYTES) {
    const start = Math.max(0, end - CHUNK_BYTES);
    const { bytesRead } = await handle.read(buf, 0, end - start, start);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a || start + i === size - 1) continue;
      if (++seen === lines) return start + i + 1;
    }
  }
  return 0;
}

/** Writes the log to `out` as `request` says, calling `opened` once the file is open; resolves when done, or when `signal` aborts (the reader left). */
export async function streamLog(log: ContainerLog, request: LogRequest, out: Writable, signal: AbortSignal, opened: () => void): Promise<void> {
  const handle = await open(log.file, 'r');
  try {
    opened();
    let position = request.tailLines === undefined ? 0 : await tailOffset(handle, (await handle.stat()).size, request.tailLines);
    let budget = request.limitBytes ?? Number.POSITIVE_INFINITY;
    for (;;) {
      // Asked before the size is read: whatever an instance wrote before it ended is then read too.
      const ended = !log.running();
      const size = (await handle.stat()).size;
      while (position < size && budget > 0 && !signal.aborted) {
        const buf = Buffer.alloc(Math.min(CHUNK_BYTES, size - position, budget));
        const { bytesRead } = await handle.read(buf, 0, buf.length, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        budget -= bytesRead;
        if (!out.write(buf.subarray(0, bytesRead))) await once(out, 'drain', { signal });
      }
      if (!request.follow || ended || budget <= 0 || signal.aborted) return;
      await sleep(FOLLOW_POLL_MS, undefined, { signal });
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    await handle.close();
  }
}

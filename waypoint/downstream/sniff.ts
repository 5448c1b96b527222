// Reads a tunnelled stream's first bytes to choose how to serve it, without
// losing them: for HTTP they are put back into the stream (unshift) for the
// HTTP server to parse; for TCP they are handed over as `head`, to be sent
// upstream first. A client that sends nothing (a server-first protocol such
// as SMTP or MySQL) is not waited for beyond the timeout: it is TCP.
import type { Duplex } from 'node:stream';
import type { Scheduler } from '../../lib/core/clock.ts';
import { classifyFirstBytes, H2_PREFACE, MAX_SNIFF_BYTES, type FirstBytes } from './first-bytes.ts';

/**
 * `http`: a port declared HTTP, where only HTTP/1.1 or HTTP/2 with prior
 * knowledge can follow (Envoy's AUTO codec); `detect`: an undeclared port,
 * where anything that is not HTTP is TCP.
 */
export type SniffMode = 'http' | 'detect';

/** Why a stream on an undeclared port is carried as TCP. */
export type NotHttp = 'not_http' | 'sniff_timeout';

export type SniffResult =
  /** The first bytes are back in the (readable-paused) stream: hand it to the server now, it resumes on the next tick. */
  | { kind: 'http1' | 'h2' }
  /** Not HTTP: `head` holds the bytes read so far, which the stream no longer has. `ended`: the client has half-closed already. */
  | { kind: 'tcp'; why: NotHttp; head: Buffer; ended: boolean }
  /** The client reset, or half-closed on a declared HTTP port before a request could be told: nothing to serve. */
  | { kind: 'closed' };

function verdict(buf: Buffer, mode: SniffMode): FirstBytes {
  if (mode === 'detect') return classifyFirstBytes(buf);
  // A declared HTTP port: the preface says HTTP/2, anything else is for the HTTP/1 parser to judge.
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return 'http1';
  return buf.length >= H2_PREFACE.length ? 'h2' : 'incomplete';
}

export function sniff(stream: Duplex, mode: SniffMode, timeoutMs: number, scheduler: Scheduler): Promise<SniffResult> {
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (result: SniffResult | FirstBytes) => {
      if (done) return;
      done = true;
      scheduler.clear(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      if (result === 'http1' || result === 'h2') {
        // Synchronously, before the stream can emit 'end': the bytes are then read again before it.
        if (buffered.length > 0) stream.unshift(buffered);
        return resolve({ kind: result });
      }
      if (typeof result === 'string') return resolve({ kind: 'tcp', why: 'not_http', head: buffered, ended: false });
      resolve(result);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const v = verdict(buffered, mode);
      if (v !== 'incomplete') return finish(v);
      // The classifier decides before this many bytes; a declared port's parser judges whatever is longer.
      if (buffered.length >= MAX_SNIFF_BYTES) finish(mode === 'http' ? 'http1' : 'other');
    };
    const onEnd = () => {
      if (mode === 'http') return finish({ kind: 'closed' });
      finish({ kind: 'tcp', why: 'not_http', head: buffered, ended: true });
    };
    const onClose = () => finish({ kind: 'closed' });
    const onTimeout = () => {
      if (mode === 'http') return finish('http1');
      finish({ kind: 'tcp', why: 'sniff_timeout', head: buffered, ended: false });
    };
    const timer = scheduler.set(onTimeout, timeoutMs);
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onClose);
  });
}

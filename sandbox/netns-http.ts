// HTTP GETs, from the host, to a port on the loopback of a network namespace:
// what a pod keeps on 127.0.0.1 (the waypoint's admin API, as Envoy keeps
// its own) is reachable from nowhere else. Each request rides one socat that
// nsenter starts in the namespace (kubelet/netns-dialer.ts), so the host
// process stays where it is and nothing joins the pod's cgroup (no capture,
// no policy on the way). Bounded: a GET in time and size, a stream per line.
import { request, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { LoopbackUnreachableError } from './errors.ts';
import { netnsDialer } from './kubelet/netns-dialer.ts';

export interface LoopbackTarget {
  /** The network namespace (`ip netns`), e.g. a pod's. */
  netns: string;
  /** A TCP port listening on 127.0.0.1 inside it. */
  port: number;
}

export interface LoopbackReply {
  status: number;
  body: string;
}

export interface LoopbackGetOptions {
  /** Connect and the whole response; default 5 s. */
  timeoutMs?: number;
  /** A longer body fails the GET; default 16 MiB. */
  maxBytes?: number;
}

export interface LoopbackStreamOptions {
  /** Connect and the response head; default 5 s. The stream itself runs until the server ends it or `signal` aborts. */
  connectTimeoutMs?: number;
  /** A longer line fails the stream; default 1 MiB. */
  maxLineBytes?: number;
}

const GET_TIMEOUT_MS = 5000;
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MAX_LINE_BYTES = 1024 * 1024;
const LOOPBACK = '127.0.0.1';

const where = (t: LoopbackTarget, path: string): string => `GET ${path} on ${LOOPBACK}:${t.port} in network namespace ${t.netns}`;

/** The response head of GET `path`; `signal` ends the request, its socket and its socat. */
async function open(target: LoopbackTarget, path: string, signal: AbortSignal): Promise<IncomingMessage> {
  let socket: Duplex;
  try {
    socket = await netnsDialer(target.netns)({ host: LOOPBACK, port: target.port }, signal);
  } catch (err) {
    throw new LoopbackUnreachableError(`${where(target, path)}: ${(err as Error).message}; is the process listening there, and does the namespace exist (ip netns list)?`, { cause: err });
  }
  return new Promise((resolve, reject) => {
    const req = request({
      host: LOOPBACK,
      port: target.port,
      path,
      method: 'GET',
      headers: { connection: 'close' },
      signal,
      // The connection is the socat's stdio, already open inside the namespace.
      createConnection: () => socket,
    }, resolve);
    req.on('error', (err) => reject(new LoopbackUnreachableError(`${where(target, path)}: ${signal.aborted ? 'timed out' : err.message}`, { cause: err })));
    req.end();
  });
}

/** GET `path` from the namespace's loopback port: the status and the whole body. Throws LoopbackUnreachableError when there is no answer in time. */
export async function loopbackGet(target: LoopbackTarget, path: string, options: LoopbackGetOptions = {}): Promise<LoopbackReply> {
  const signal = AbortSignal.timeout(options.timeoutMs ?? GET_TIMEOUT_MS);
  const maxBytes = options.maxBytes ?? MAX_BODY_BYTES;
  const res = await open(target, path, signal);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        res.destroy();
        throw new LoopbackUnreachableError(`${where(target, path)}: the body exceeds ${maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof LoopbackUnreachableError) throw err;
    throw new LoopbackUnreachableError(`${where(target, path)}: ${signal.aborted ? 'timed out' : (err as Error).message}`, { cause: err });
  }
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') };
}

/**
 * GET `path` as a stream of lines (NDJSON follow endpoints): `onLine` for
 * each non-empty line until the server ends it or `signal` aborts (then it
 * resolves). Throws LoopbackUnreachableError when it cannot be opened, is not
 * a 200, or breaks off.
 */
export async function loopbackStream(target: LoopbackTarget, path: string, onLine: (line: string) => void, signal: AbortSignal, options: LoopbackStreamOptions = {}): Promise<void> {
  const maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
  const connectTimeout = AbortSignal.timeout(options.connectTimeoutMs ?? GET_TIMEOUT_MS);
  // Until the head arrives either ends it; after, only the caller's signal.
  const local = new AbortController();
  const stop = (): void => local.abort();
  signal.addEventListener('abort', stop, { once: true });
  connectTimeout.addEventListener('abort', stop, { once: true });
  try {
    let res: IncomingMessage;
    try {
      res = await open(target, path, local.signal);
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    } finally {
      connectTimeout.removeEventListener('abort', stop);
    }
    if (res.statusCode !== 200) {
      res.destroy();
      throw new LoopbackUnreachableError(`${where(target, path)}: HTTP ${res.statusCode}`);
    }
    let rest = '';
    try {
      for await (const chunk of res.setEncoding('utf8')) {
        const lines = (rest + (chunk as string)).split('\n');
        rest = lines.pop() ?? '';
        if (Buffer.byteLength(rest) > maxLine) throw new LoopbackUnreachableError(`${where(target, path)}: a line exceeds ${maxLine} bytes`);
        for (const line of lines) if (line.trim() !== '') onLine(line);
      }
    } catch (err) {
      if (signal.aborted) return;
      res.destroy();
      if (err instanceof LoopbackUnreachableError) throw err;
      throw new LoopbackUnreachableError(`${where(target, path)}: the stream broke off: ${(err as Error).message}`, { cause: err });
    }
    if (rest.trim() !== '') onLine(rest);
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

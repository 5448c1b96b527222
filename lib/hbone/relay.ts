// Splices two byte streams (a TCP socket, or an HTTP/2 CONNECT stream) as if
// they were one TCP connection: data both ways with backpressure, a
// half-close passed on as a half-close (FIN <-> END_STREAM), and a reset passed
// on as a reset (RST <-> RST_STREAM).
import { constants as h2, type Http2Stream } from 'node:http2';
import { Socket } from 'node:net';
import { addAbortSignal, type Duplex } from 'node:stream';
import type { RelayEnd } from '../telemetry/reasons.ts';

export interface Leg {
  readonly stream: Duplex;
  /** Ends the leg abortively so its peer sees a reset. */
  reset(): void;
  /** Calls back if the peer reset the leg or it failed. */
  onReset(callback: () => void): void;
  /** Whether the leg has been reset; an HTTP/2 stream emits 'end' even then. */
  wasReset(): boolean;
}

const ignore = () => {};

export function socketLeg(socket: Socket): Leg {
  // Errors are reported through onReset; never let one escape as an uncaught exception.
  socket.on('error', ignore);
  return {
    stream: socket,
    reset: () => {
      if (!socket.destroyed) socket.resetAndDestroy();
    },
    onReset: (callback) => socket.once('error', callback),
    // A socket emits 'end' only for a FIN, never on error.
    wasReset: () => false,
  };
}

/**
 * Resets a stream with RST_STREAM(CANCEL) and nothing before it. `close(code)`
 * would first end the writable side, sending END_STREAM, so the peer would see
 * a clean half-close before the reset (RFC 9113 §8.5 asks for CONNECT_ERROR,
 * but Node only resets without END_STREAM when destroying with an AbortError).
 */
export function streamResetter(stream: Http2Stream): () => void {
  const abort = new AbortController();
  addAbortSignal(abort.signal, stream);
  return () => abort.abort();
}

export function h2Leg(stream: Http2Stream): Leg {
  stream.on('error', ignore);
  const reset = streamResetter(stream);
  const wasReset = () => stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR;
  return {
    stream,
    reset: () => {
      if (!stream.destroyed) reset();
    },
    // Any close other than both sides' END_STREAM (RST_STREAM, GOAWAY, session loss) leaves a non-zero code.
    onReset: (callback) => stream.once('close', () => wasReset() && callback()),
    wasReset,
  };
}

/**
 * Pipes `client` and `upstream` into each other; `done` runs once both legs
 * have closed. With `idleMs`, a relay that moves no byte either way for that
 * long resets both legs and ends as idle_timeout.
 */
export function relay(client: Leg, upstream: Leg, done: (end: RelayEnd) => void, idleMs = 0): void {
  let reset: RelayEnd | undefined;
  let firstFin: RelayEnd | undefined;
  let legsClosed = 0;
  const idle = idleMs > 0 ? setTimeout(() => {
    if (reset) return;
    reset = 'idle_timeout';
    client.reset();
    upstream.reset();
  }, idleMs).unref() : undefined;
  const onClose = () => {
    if (++legsClosed < 2) return;
    clearTimeout(idle);
    done(reset ?? firstFin ?? 'client_closed');
  };
  const propagate = (end: RelayEnd, to: Leg) => () => {
    if (reset) return;
    reset = end;
    to.reset();
  };
  client.onReset(propagate('client_reset', upstream));
  upstream.onReset(propagate('upstream_reset', client));
  // Half-close by hand rather than by pipe: a reset stream also ends, and must not pass on a FIN.
  // A socket can have ended already, before the relay began (a FIN with nothing before it).
  const halfClose = (from: Leg, to: Leg, end: RelayEnd) => {
    const onEnd = () => {
      if (from.wasReset()) return;
      firstFin ??= end;
      to.stream.end();
    };
    if (from.stream.readableEnded) onEnd();
    else from.stream.once('end', onEnd);
  };
  halfClose(client, upstream, 'client_closed');
  halfClose(upstream, client, 'server_closed');
  // A leg that closes without a clean half-close each way was torn down (destroyed, timed out): abort the other.
  const closed = (leg: Leg, end: RelayEnd, other: Leg) => () => {
    if (!leg.stream.readableEnded || !leg.stream.writableFinished) propagate(end, other)();
    onClose();
  };
  client.stream.once('close', closed(client, 'client_reset', upstream));
  upstream.stream.once('close', closed(upstream, 'upstream_reset', client));
  // A timer's refresh() re-queues it at the end of its list: O(1) per chunk, as a socket's own setTimeout does per read.
  const active = idle ? () => void idle.refresh() : undefined;
  pump(client.stream, upstream.stream, active);
  pump(upstream.stream, client.stream, active);
}

/**
 * How many bytes a leg may have queued before its source is paused. pipe()
 * pauses at the destination's highWaterMark (16 KiB), so every 64 KiB socket
 * read stopped and restarted reading (two epoll changes and a tick each) and
 * handed HTTP/2 one chunk per write; a larger allowance keeps both sides
 * reading and lets writev batch. Costs at most this much per direction of an
 * active connection, nothing for an idle one.
 */
const RELAY_QUEUE_BYTES = 512 * 1024;

/**
 * Moves data from `from` to `to` until either ends; never ends or destroys
 * `to` (the relay does). At most RELAY_QUEUE_BYTES plus one chunk wait in
 * `to`: past that `from` is paused, so a peer that stops reading holds its
 * source back (TCP window, or HTTP/2 stream window) instead of growing a queue.
 */
function pump(from: Duplex, to: Duplex, active: (() => void) | undefined): void {
  const resume = () => from.resume();
  // One read of the TLS socket yields several 16 KiB DATA frames, each in a
  // callback of its own (so nextTick would flush each), and one readable
  // socket several 64 KiB reads: corked until the loop turn's check phase,
  // they leave in one writev. (Writing a turn's first chunk at once instead
  // halved single-stream throughput and did not move latency.) Only sockets:
  // an HTTP/2 stream batches by itself (writev while a write is pending), and
  // ending a corked one reads as a reset at its peer.
  let corked = false;
  const uncork = () => {
    corked = false;
    to.uncork();
  };
  const batch = to instanceof Socket;
  from.on('data', (chunk: Buffer) => {
    active?.();
    if (batch && !corked) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    to.write(chunk);
    if (to.writableLength >= RELAY_QUEUE_BYTES && !to.destroyed) {
      from.pause();
      // 'drain' follows any write that found the queue over its highWaterMark, once it empties.
      to.once('drain', resume);
    }
  });
}

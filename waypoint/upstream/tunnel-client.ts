// An undici Client whose one connection is a hop-2 tunnel already up: its
// `connect` option hands undici the tunnel's stream (a Duplex) instead of
// dialling. HTTP/1.1 keep-alive by default; HTTP/2 with prior knowledge (h2c
// inside the tunnel, which carries the mutual TLS) when asked. One Client is
// one upstream connection: once its stream is gone, connecting again fails
// (ConnectionClosedError) and the pool drops it.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type buildConnector } from 'undici';
import { ConnectionClosedError } from './errors.ts';

/** Concurrent streams on one HTTP/2 upstream connection (undici's and Node's default; the server may lower it). */
export const H2_STREAMS_PER_CONNECTION = 100;

export function clientOnTunnel(stream: Duplex, endpoint: string, http2: boolean): Client {
  // undici picks its HTTP/2 codec by the socket's ALPN result.
  if (http2) Object.assign(stream, { alpnProtocol: 'h2' });
  let handedOver = false;
  const connect: buildConnector.connector = (_options, callback) => {
    const closed = handedOver || stream.destroyed;
    handedOver = true;
    // Called back later, as a dial would be: undici ignores a resume from inside its own connect call, so the request would wait forever.
    // undici only reads, writes and destroys its socket, all of which a stream does; it calls socket-only methods only if present.
    queueMicrotask(() => (closed ? callback(new ConnectionClosedError(endpoint), null) : callback(null, stream as unknown as Socket)));
  };
  return new Client(`http://${endpoint}`, {
    connect,
    allowH2: http2,
    pipelining: http2 ? H2_STREAMS_PER_CONNECTION : 1,
  });
}

// HTTP/1.1 inside tunnels: one node:http server, never listening, fed each
// tunnel stream as a connection (server.emit('connection')). Its requests
// become exchanges (exchange.ts); an Upgrade request (WebSocket) is handed
// over with the raw stream, for the handler to answer or splice.
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { streamResetter } from '../../lib/hbone/relay.ts';
import { requestTrace } from '../telemetry/trace-context.ts';
import type { HttpProtocol } from '../telemetry/request-record.ts';
import type { RequestView, Transport, TransportEnd } from './exchange.ts';
import { isGrpcContentType } from './headers.ts';
import type { DownstreamLimits } from './limits.ts';
import { bufferStringWrites } from './string-writes.ts';
import type { TunnelContext, TunnelDestination } from './tunnel.ts';

// Loaded without the ESM facade (see lib/core/http-server.ts).
const { createServer, STATUS_CODES } = process.getBuiltinModule('node:http');

/** The raw stream of an upgrade request, after its head. */
export interface UpgradeSocket {
  /** The tunnel stream: write the upstream's 101 through the exchange's response, then splice this. */
  socket: Duplex;
  /** Bytes the client sent after the request head. */
  head: Buffer;
}

export interface Http1Hooks<D extends TunnelDestination> {
  request(request: RequestView, transport: Transport, tunnel: TunnelContext<D>): void;
  upgrade(request: RequestView, transport: Transport, upgrade: UpgradeSocket, tunnel: TunnelContext<D>): void;
}

interface Accepted<D extends TunnelDestination> {
  tunnel: TunnelContext<D>;
  /** Resets the tunnel stream: how an HTTP/1 response is aborted (the connection goes). */
  reset: () => void;
  /** Set when the connection moved no byte for the stream idle timeout and was closed for it. */
  idle: boolean;
}

/** `upgrade`: an Upgrade request, whose bytes after the head are the upgraded protocol's, not a body. */
function requestViewOf(req: IncomingMessage, upgrade: boolean): RequestView {
  const { headers } = req;
  const host = headers.host ?? '';
  delete headers.host;
  // Node has answered it (100 Continue), as Envoy does unless told to proxy it.
  if (headers.expect?.toLowerCase() === '100-continue') delete headers.expect;
  const length = headers['content-length'];
  return {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    host,
    scheme: 'http',
    headers,
    protocol: req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1',
    grpc: isGrpcContentType(headers['content-type']),
    hasBody: !upgrade && (headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')),
    body: req,
    trace: requestTrace(headers),
  };
}

class Http1Transport implements Transport {
  readonly protocol: HttpProtocol;
  readonly #res: ServerResponse;
  readonly #connection: Accepted<TunnelDestination>;

  constructor(protocol: HttpProtocol, res: ServerResponse, connection: Accepted<TunnelDestination>) {
    this.protocol = protocol;
    this.#res = res;
    this.#connection = connection;
  }

  head(status: number, headers: OutgoingHttpHeaders, endStream: boolean): void {
    this.#res.writeHead(status, headers);
    if (endStream) this.#res.end();
  }

  write(chunk: Uint8Array | string): boolean {
    return this.#res.write(chunk);
  }

  onceDrain(listener: () => void): void {
    this.#res.once('drain', listener);
  }

  end(trailers: OutgoingHttpHeaders | undefined): void {
    // Sent only in a chunked response (Node drops them otherwise, as HTTP/1.1 has nowhere to put them).
    if (trailers) this.#res.addTrailers(trailers);
    this.#res.end();
  }

  reset(): void {
    this.#connection.reset();
  }

  onClose(listener: (end: TransportEnd) => void): void {
    this.#res.once('close', () => listener(this.#connection.idle ? 'idle_timeout' : 'closed'));
  }

  /** Node reads and drops the rest of a body nobody read, keeping the connection. */
  discardBody(): void {}
}

/** Header values that could split the response are not written. */
const safe = (value: string): boolean => !/[\r\n]/.test(value);

/** Writes a response on the raw stream of an upgrade request: a local reply refusing it, or the upstream's 101. */
class RawHttp1Transport implements Transport {
  readonly protocol = 'HTTP/1.1';
  readonly #socket: Duplex;
  #switched = false;

  constructor(socket: Duplex) {
    this.#socket = socket;
  }

  head(status: number, headers: OutgoingHttpHeaders, endStream: boolean): void {
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [String(value)]) if (safe(v) && safe(name)) text += `${name}: ${v}\r\n`;
    }
    // Not switching protocols, the connection ends with this response.
    if (status !== 101 && headers.connection === undefined) text += 'connection: close\r\n';
    this.#socket.write(Buffer.from(`${text}\r\n`, 'latin1'));
    this.#switched = status === 101;
    if (endStream && !this.#switched) this.#socket.end();
  }

  write(chunk: Uint8Array | string): boolean {
    return this.#socket.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }

  onceDrain(listener: () => void): void {
    this.#socket.once('drain', listener);
  }

  end(): void {
    if (!this.#switched) this.#socket.end();
  }

  reset(): void {
    this.#socket.destroy();
  }

  onClose(listener: (end: TransportEnd) => void): void {
    this.#socket.once('close', () => listener('closed'));
  }

  discardBody(): void {}
}

export class Http1Server<D extends TunnelDestination> {
  readonly #server: Server;
  readonly #accepted = new WeakMap<object, Accepted<D>>();

  constructor(limits: DownstreamLimits, hooks: Http1Hooks<D>) {
    this.#server = createServer({
      maxHeaderSize: limits.maxRequestHeadersBytes,
      headersTimeout: limits.requestHeadersTimeout * 1000,
      // A request may take as long as it keeps moving (streamIdleTimeout below), as Envoy's request_timeout is off.
      requestTimeout: 0,
      keepAliveTimeout: limits.connectionIdleTimeout * 1000,
    });
    this.#server.timeout = limits.streamIdleTimeout * 1000;
    // Listened for, so Node leaves the socket to us: it is closed, and the request in flight (if any) logs SI.
    this.#server.on('timeout', (socket: Duplex) => {
      const accepted = this.#accepted.get(socket);
      if (accepted) accepted.idle = true;
      socket.destroy();
    });
    // The headers timeout is checked by a timer the server starts when it listens; this one never listens.
    this.#server.emit('listening');
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const accepted = this.#accepted.get(req.socket);
      if (!accepted) return void res.destroy();
      const view = requestViewOf(req, false);
      hooks.request(view, new Http1Transport(view.protocol, res, accepted), accepted.tunnel);
    });
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const accepted = this.#accepted.get(socket);
      if (!accepted) return void socket.destroy();
      const view = requestViewOf(req, true);
      hooks.upgrade(view, new RawHttp1Transport(socket), { socket, head }, accepted.tunnel);
    });
  }

  /** Serves HTTP/1.1 on a tunnel stream whose first bytes are (back) in it. */
  accept(stream: ServerHttp2Stream, tunnel: TunnelContext<D>): void {
    bufferStringWrites(stream);
    this.#accepted.set(stream, { tunnel, reset: streamResetter(stream), idle: false });
    this.#server.emit('connection', stream);
  }

  /** Closes the connections waiting for their next request (on shutdown); busy ones close after their response. */
  closeIdle(): void {
    this.#server.closeIdleConnections();
  }

  close(): void {
    this.#server.close();
  }
}

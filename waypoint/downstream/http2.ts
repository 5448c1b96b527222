// HTTP/2 with prior knowledge (h2c, gRPC) inside tunnels: one node:http2
// server, never listening, fed each tunnel stream whose first bytes were the
// HTTP/2 preface. Each of its streams becomes an exchange (exchange.ts),
// through Node's core stream API, not the slower compatibility layer.
import { constants, createServer, type Http2Server as NodeHttp2Server, type Http2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { MAX_SESSION_MEMORY_MB } from '../../lib/hbone/h2-settings.ts';
import type { Logger } from '../../lib/core/log.ts';
import { requestTrace } from '../telemetry/trace-context.ts';
import type { RequestView, Transport, TransportEnd } from './exchange.ts';
import { isGrpcContentType } from './headers.ts';
import type { DownstreamLimits } from './limits.ts';
import type { TunnelContext, TunnelDestination } from './tunnel.ts';

export interface Http2Hooks<D extends TunnelDestination> {
  request(request: RequestView, transport: Transport, tunnel: TunnelContext<D>): void;
}

function requestViewOf(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): RequestView {
  const method = headers[':method'] ?? 'GET';
  const path = headers[':path'] ?? '';
  const host = headers[':authority'] ?? headers.host ?? '';
  const scheme = headers[':scheme'] ?? 'http';
  for (const name of [':method', ':path', ':authority', ':scheme', ':protocol', 'host']) delete headers[name];
  if (headers.expect?.toLowerCase() === '100-continue') {
    // Answered here, as Envoy does unless told to proxy it (Node's HTTP/1 server does the same).
    delete headers.expect;
    stream.additionalHeaders({ ':status': 100 });
  }
  return {
    method,
    path,
    host,
    scheme,
    headers,
    protocol: 'HTTP/2',
    grpc: isGrpcContentType(headers['content-type']),
    hasBody: !stream.endAfterHeaders,
    body: stream,
    trace: requestTrace(headers),
  };
}

class Http2Transport implements Transport {
  readonly protocol = 'HTTP/2';
  readonly #stream: ServerHttp2Stream;
  #trailers: OutgoingHttpHeaders | undefined;
  #waitsForTrailers = false;
  #discard = false;
  #idle = false;

  constructor(stream: ServerHttp2Stream) {
    this.#stream = stream;
  }

  head(status: number, headers: OutgoingHttpHeaders, endStream: boolean, trailers: boolean): void {
    const stream = this.#stream;
    this.#waitsForTrailers = trailers;
    if (trailers) {
      stream.once('wantTrailers', () => {
        stream.sendTrailers(this.#trailers ?? {});
        if (this.#discard) this.#closeReading();
      });
    }
    stream.respond({ ...headers, ':status': status }, { endStream, waitForTrailers: trailers });
  }

  write(chunk: Uint8Array | string): boolean {
    return this.#stream.write(chunk);
  }

  onceDrain(listener: () => void): void {
    this.#stream.once('drain', listener);
  }

  end(trailers: OutgoingHttpHeaders | undefined): void {
    this.#trailers = trailers;
    this.#stream.end();
  }

  reset(): void {
    if (!this.#stream.destroyed) this.#stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  onClose(listener: (end: TransportEnd) => void): void {
    this.#stream.once('close', () => listener(this.#idle ? 'idle_timeout' : 'closed'));
  }

  /** Nothing moved for the stream idle timeout: the stream is cancelled. */
  idle(): void {
    this.#idle = true;
    if (!this.#stream.destroyed) this.#stream.close(constants.NGHTTP2_CANCEL);
  }

  /**
   * RFC 9113 §8.1: after a complete response, a server may ask the client to
   * stop sending the request (RST_STREAM NO_ERROR). Until the client's body
   * ends the stream would stay open otherwise, holding a stream slot.
   */
  discardBody(): void {
    this.#discard = true;
    // With trailers, the reset waits for them (see head); without, for the last DATA frame.
    if (!this.#waitsForTrailers) this.#stream.once('finish', () => this.#closeReading());
  }

  /** The stream closes only once its readable side has ended: what is buffered is drained (and counted), and the client stopped if it is still sending. */
  #closeReading(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    if (!stream.state.remoteClose) stream.close(constants.NGHTTP2_NO_ERROR);
    stream.resume();
  }
}

export class Http2Server<D extends TunnelDestination> {
  readonly #server: NodeHttp2Server;
  readonly #tunnels = new WeakMap<Http2Session, TunnelContext<D>>();
  readonly #sessions = new Set<Http2Session>();
  #accepting: TunnelContext<D> | undefined;

  constructor(limits: DownstreamLimits, hooks: Http2Hooks<D>, log: Logger) {
    this.#server = createServer({
      settings: { enablePush: false, maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxRequestHeadersBytes },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    // The session is made synchronously inside emit('connection'): it belongs to the tunnel being accepted.
    this.#server.on('session', (session: Http2Session) => {
      if (this.#accepting) this.#tunnels.set(session, this.#accepting);
      this.#sessions.add(session);
      session.setTimeout(limits.connectionIdleTimeout * 1000, () => session.close());
      session.on('error', (error) => log.warn('http2_session_error', { error }));
      session.once('close', () => this.#sessions.delete(session));
    });
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      const tunnel = stream.session && this.#tunnels.get(stream.session);
      if (!tunnel) return void stream.close(constants.NGHTTP2_REFUSED_STREAM);
      stream.on('error', () => {});
      const transport = new Http2Transport(stream);
      stream.setTimeout(limits.streamIdleTimeout * 1000, () => transport.idle());
      hooks.request(requestViewOf(stream, headers), transport, tunnel);
    });
  }

  /** Serves HTTP/2 on a tunnel stream whose preface is (back) in it. */
  accept(stream: ServerHttp2Stream, tunnel: TunnelContext<D>): void {
    this.#accepting = tunnel;
    try {
      this.#server.emit('connection', stream);
    } finally {
      this.#accepting = undefined;
    }
  }

  /** Tells every connection (GOAWAY) to open no new streams; open ones finish. */
  closeSessions(): void {
    for (const s of this.#sessions) s.close();
  }
}

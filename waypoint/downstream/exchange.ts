// One HTTP request and its response, the same for HTTP/1.1 and HTTP/2: the
// view of the request the handler routes on, the sink it writes the response
// to, and the facts (stream-info.ts) that become the request's telemetry once
// it is over. http1.ts and http2.ts adapt Node's servers to it.
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { RequestTrace } from '../telemetry/trace-context.ts';
import type { HttpProtocol, RequestRecord } from '../telemetry/request-record.ts';
import { ResponseStateError } from './errors.ts';
import { responseHeaders, type OutgoingHttpHeaders } from './headers.ts';
import { StreamInfo } from './stream-info.ts';
import type { TunnelContext, TunnelDestination } from './tunnel.ts';

export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

export interface RequestView {
  readonly method: string;
  /** Path and query as received (`:path`, or HTTP/1's request target). */
  readonly path: string;
  /** Host / `:authority` as the client sent it: for route host matching, never to pick the service. */
  readonly host: string;
  readonly scheme: string;
  /** Lower-case names; no pseudo-headers and no `host` (see `host`); `expect: 100-continue` is answered and removed. */
  readonly headers: RequestHeaders;
  readonly protocol: HttpProtocol;
  /** content-type application/grpc (Envoy's test): local replies are then gRPC trailers-only responses. */
  readonly grpc: boolean;
  /** Whether a body follows the head. */
  readonly hasBody: boolean;
  /** The body, paused until read (pipe, pipeline, async iteration or resume). */
  readonly body: Readable;
  /** x-request-id and the W3C trace context, as received or created (send them upstream: trace-context.ts traceHeaders). */
  readonly trace: RequestTrace;
}

export interface RespondOptions {
  /** No body follows (nor trailers). */
  endStream?: boolean;
  /** Trailers follow the body (default: for gRPC requests); HTTP/2 must know before the body starts. */
  trailers?: boolean;
  /** A response from the upstream: sent as x-envoy-upstream-service-time and logged as upstream_service_time. */
  upstreamServiceTimeMs?: number;
}

/**
 * The response to the downstream client: head, body with backpressure,
 * trailers. Once the client has gone (the exchange's signal aborted), writing
 * does nothing: upstream callbacks that still arrive cannot fail the waypoint.
 */
export interface ResponseSink {
  readonly headersSent: boolean;
  /** The status sent, once the head is. */
  readonly status: number | undefined;
  /** Whether the response is over: ended (all of it handed to the transport), or reset. */
  readonly ended: boolean;
  respond(status: number, headers?: OutgoingHttpHeaders, options?: RespondOptions): void;
  /** false: wait for onDrain before writing more. */
  write(chunk: Uint8Array | string): boolean;
  onDrain(listener: () => void): void;
  /** Ends the body; trailers are sent where the response announced them (HTTP/2, chunked HTTP/1.1), dropped elsewhere. */
  end(trailers?: OutgoingHttpHeaders): void;
  /** Aborts the response (HTTP/2 RST_STREAM; HTTP/1 closes the connection), as Envoy does when the upstream fails after the head. */
  reset(): void;
}

export interface HttpExchange<D extends TunnelDestination> {
  readonly request: RequestView;
  readonly response: ResponseSink;
  readonly tunnel: TunnelContext<D>;
  readonly info: StreamInfo;
  /** Aborted when the client goes away before the response is complete (DC). */
  readonly signal: AbortSignal;
}

/** Why an exchange's stream closed: it was done (or the client went), or nothing moved on it for the stream idle timeout. */
export type TransportEnd = 'closed' | 'idle_timeout';

/** What an exchange needs of its HTTP/1 or HTTP/2 stream. */
export interface Transport {
  readonly protocol: HttpProtocol;
  head(status: number, headers: OutgoingHttpHeaders, endStream: boolean, trailers: boolean): void;
  write(chunk: Uint8Array | string): boolean;
  onceDrain(listener: () => void): void;
  end(trailers: OutgoingHttpHeaders | undefined): void;
  reset(): void;
  /** Once, when the exchange's stream is gone. */
  onClose(listener: (end: TransportEnd) => void): void;
  /** After the response is sent: the client need not send the rest of a body nobody read. */
  discardBody(): void;
}

const byteLength = (chunk: Uint8Array | string): number => (typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength);

const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

class DownstreamResponse implements ResponseSink {
  readonly #transport: Transport;
  readonly #info: StreamInfo;
  readonly #grpc: boolean;
  #status: number | undefined;
  #ended = false;
  #gone = false;
  bytesSent = 0;
  grpcStatus: string | undefined;

  constructor(transport: Transport, info: StreamInfo, grpc: boolean) {
    this.#transport = transport;
    this.#info = info;
    this.#grpc = grpc;
  }

  get headersSent(): boolean {
    return this.#status !== undefined;
  }

  get status(): number | undefined {
    return this.#status;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The stream is gone: nothing more can be written. */
  markGone(): void {
    this.#gone = true;
  }

  respond(status: number, headers: OutgoingHttpHeaders = {}, options: RespondOptions = {}): void {
    if (this.#gone) return;
    if (this.#status !== undefined) throw new ResponseStateError(`the response head (${this.#status}) was already sent`);
    const out = responseHeaders(headers, status === 101);
    if (options.upstreamServiceTimeMs !== undefined) {
      const ms = Math.max(0, Math.round(options.upstreamServiceTimeMs));
      this.#info.upstreamServiceTimeMs = ms;
      out['x-envoy-upstream-service-time'] = String(ms);
    }
    if (this.#grpc && out['grpc-status'] !== undefined) this.grpcStatus = String(out['grpc-status']);
    this.#info.responseCodeDetails ??= 'via_upstream';
    this.#status = status;
    const endStream = options.endStream ?? false;
    this.#transport.head(status, out, endStream, !endStream && (options.trailers ?? this.#grpc));
    if (endStream) this.#finish();
  }

  write(chunk: Uint8Array | string): boolean {
    if (this.#gone) return true;
    if (this.#status === undefined) throw new ResponseStateError('a body was written before the response head');
    this.bytesSent += byteLength(chunk);
    return this.#transport.write(chunk);
  }

  onDrain(listener: () => void): void {
    this.#transport.onceDrain(listener);
  }

  end(trailers?: OutgoingHttpHeaders): void {
    if (this.#ended || this.#gone) return;
    if (this.#status === undefined) throw new ResponseStateError('the response was ended before its head');
    if (trailers && this.#grpc && trailers['grpc-status'] !== undefined) this.grpcStatus = String(trailers['grpc-status']);
    this.#transport.end(trailers);
    this.#finish();
  }

  reset(): void {
    if (this.#ended || this.#gone) return;
    this.#ended = true;
    this.#transport.reset();
  }

  #finish(): void {
    this.#ended = true;
    this.#transport.discardBody();
  }
}

/** What an adapter knows when a request's head has arrived. */
export interface ExchangeInit<D extends TunnelDestination> {
  request: RequestView;
  transport: Transport;
  tunnel: TunnelContext<D>;
  /** Called once, when the exchange is over. */
  done(record: RequestRecord): void;
}

export class Exchange<D extends TunnelDestination> implements HttpExchange<D> {
  readonly request: RequestView;
  readonly tunnel: TunnelContext<D>;
  readonly info = new StreamInfo();
  readonly #response: DownstreamResponse;
  readonly #startTime = new Date().toISOString();
  readonly #start = performance.now();
  #abort: AbortController | undefined;
  #closed = false;
  #disconnected = false;
  #bytesReceived = 0;

  constructor(init: ExchangeInit<D>) {
    this.request = init.request;
    this.tunnel = init.tunnel;
    this.#response = new DownstreamResponse(init.transport, this.info, init.request.grpc);
    const { body } = init.request;
    // Paused, so nothing is lost while the handler decides; counted as it is read, whoever reads it.
    body.pause();
    if (init.request.hasBody) {
      body.on('data', (chunk: Uint8Array | string) => {
        this.#bytesReceived += byteLength(chunk);
      });
    }
    init.transport.onClose((end) => {
      this.#closed = true;
      this.#response.markGone();
      // Whether the response was complete is ours to know: a peer's reset can leave the stream looking finished.
      if (!this.#response.ended) {
        this.#disconnected = true;
        this.info.flag(end === 'idle_timeout' ? 'SI' : 'DC');
        this.info.responseCodeDetails ??= end === 'idle_timeout' ? 'stream_idle_timeout' : 'downstream_remote_disconnect';
        this.#abort?.abort();
      }
      init.done(this.#record());
    });
  }

  get response(): ResponseSink {
    return this.#response;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Made on first use: most requests never need one. */
  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.#disconnected) this.#abort.abort();
    }
    return this.#abort.signal;
  }

  /** Optional fields are set only when known: no temporary object per field, as a spread of each would make. */
  #record(): RequestRecord {
    const { request, tunnel, info } = this;
    const response = this.#response;
    const r: RequestRecord = {
      startTime: this.#startTime,
      durationMs: performance.now() - this.#start,
      method: request.method,
      path: request.path,
      host: request.host,
      protocol: request.protocol,
      grpc: request.grpc,
      responseCode: response.status ?? 0,
      responseFlags: info.responseFlags,
      bytesReceived: this.#bytesReceived,
      bytesSent: response.bytesSent,
      requestId: request.trace.requestId,
      traceparent: request.trace.traceparent,
      downstreamLocalAddress: tunnel.authority,
      source: tunnel.source,
      destination: info.destination ?? {},
      connectionSecurity: tunnel.security,
    };
    if (info.responseCodeDetails !== undefined) r.responseCodeDetails = info.responseCodeDetails;
    if (response.grpcStatus !== undefined) r.grpcStatus = response.grpcStatus;
    if (info.upstreamServiceTimeMs !== undefined) r.upstreamServiceTimeMs = info.upstreamServiceTimeMs;
    if (info.upstreamHost !== undefined) r.upstreamHost = info.upstreamHost;
    if (info.upstreamCluster !== undefined) r.upstreamCluster = info.upstreamCluster;
    if (info.upstreamTransportFailureReason !== undefined) r.upstreamTransportFailureReason = info.upstreamTransportFailureReason;
    if (info.routeName !== undefined) r.routeName = info.routeName;
    if (request.trace.tracestate !== undefined) r.tracestate = request.trace.tracestate;
    const userAgent = single(request.headers['user-agent']);
    if (userAgent !== undefined) r.userAgent = userAgent;
    const xff = request.headers['x-forwarded-for'];
    if (xff !== undefined) r.xForwardedFor = Array.isArray(xff) ? xff.join(',') : xff;
    if (tunnel.sourceAddress) r.downstreamRemoteAddress = tunnel.sourceAddress;
    if (tunnel.sni) r.requestedServerName = tunnel.sni;
    if (tunnel.destination.kind === 'service') r.service = { namespace: tunnel.destination.namespace, name: tunnel.destination.name };
    if (tunnel.traceId) r.tunnelTraceId = tunnel.traceId;
    return r;
  }
}

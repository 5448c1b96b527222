// The waypoint's downstream side, assembled: the HBONE listener, the choice
// of how each tunnel is served, the HTTP/1.1 and HTTP/2 servers inside the
// tunnels, and the integration's handlers for HTTP requests, upgrades and L4
// passthrough. Each finished request's record goes to `onRequest` (the
// telemetry). This is the downstream's entry point; the rest is its parts.
import type { ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { realClock, type Clock } from '../../lib/core/clock.ts';
import type { Logger } from '../../lib/core/log.ts';
import type { RequestRecord } from '../telemetry/request-record.ts';
import { dispatchTunnel, type TcpPassthrough } from './dispatch.ts';
import { Exchange, type HttpExchange, type RequestView, type Transport } from './exchange.ts';
import { HboneListener, type ListenerEvents, type WaypointIdentity } from './hbone-listener.ts';
import { Http1Server, type UpgradeSocket } from './http1.ts';
import { Http2Server } from './http2.ts';
import { downstreamLimits, type DownstreamLimits } from './limits.ts';
import { runExchange } from './run-exchange.ts';
import type { TunnelContext, TunnelDestination, TunnelLookup } from './tunnel.ts';

/** An HTTP/1.1 Upgrade request (WebSocket): refuse it with a local reply, or answer the upstream's 101 (endStream) and splice `upgrade.socket`. */
export interface UpgradeExchange<D extends TunnelDestination> extends HttpExchange<D> {
  readonly upgrade: UpgradeSocket;
}

export interface DownstreamHandlers<D extends TunnelDestination> {
  /** Routes and answers one request; settles once the response is finished (or reset). */
  http(exchange: HttpExchange<D>): Promise<void>;
  /** The same for an Upgrade request. */
  upgrade(exchange: UpgradeExchange<D>): Promise<void>;
  /** Carries a tunnel at L4 (L4 policy, byte metrics); owns the stream from here. */
  tcp(connection: TcpPassthrough<D>): void;
}

export interface WaypointDownstreamOptions<D extends TunnelDestination> {
  /** Absent: cleartext HBONE (tests, or no CA configured). */
  identity?: WaypointIdentity;
  /** Unset ones take the defaults (limits.ts). */
  limits?: Partial<DownstreamLimits>;
  log: Logger;
  lookup: TunnelLookup<D>;
  handlers: DownstreamHandlers<D>;
  events?: ListenerEvents;
  /** Every finished request (telemetry/request-telemetry.ts's record). */
  onRequest?(record: RequestRecord): void;
  clock?: Clock;
}

class UpgradeExchangeImpl<D extends TunnelDestination> extends Exchange<D> implements UpgradeExchange<D> {
  readonly upgrade: UpgradeSocket;

  constructor(init: ConstructorParameters<typeof Exchange<D>>[0], upgrade: UpgradeSocket) {
    super(init);
    this.upgrade = upgrade;
  }
}

export class WaypointDownstream<D extends TunnelDestination> {
  readonly #listener: HboneListener<D>;
  readonly #http1: Http1Server<D>;
  readonly #http2: Http2Server<D>;

  constructor(options: WaypointDownstreamOptions<D>) {
    const limits = downstreamLimits(options.limits);
    const { handlers, log } = options;
    const clock = options.clock ?? realClock;
    const done = (record: RequestRecord) => options.onRequest?.(record);
    const request = (view: RequestView, transport: Transport, tunnel: TunnelContext<D>) =>
      runExchange(new Exchange<D>({ request: view, transport, tunnel, done }), handlers.http, log);
    this.#http1 = new Http1Server<D>(limits, {
      request,
      upgrade: (view, transport, upgrade, tunnel) => runExchange(new UpgradeExchangeImpl<D>({ request: view, transport, tunnel, done }, upgrade), handlers.upgrade, log),
    });
    this.#http2 = new Http2Server<D>(limits, { request }, log);
    const targets = {
      http1: (stream: ServerHttp2Stream, tunnel: TunnelContext<D>) => this.#http1.accept(stream, tunnel),
      http2: (stream: ServerHttp2Stream, tunnel: TunnelContext<D>) => this.#http2.accept(stream, tunnel),
      tcp: handlers.tcp,
    };
    this.#listener = new HboneListener<D>({
      ...(options.identity ? { identity: options.identity } : {}),
      ...(options.events ? { events: options.events } : {}),
      limits,
      log,
      lookup: options.lookup,
      clock,
      onTunnel: (stream, tunnel) => dispatchTunnel(stream, tunnel, targets, limits.sniffTimeout * 1000, clock.scheduler),
    });
  }

  /** HBONE sessions connected now. */
  get sessionCount(): number {
    return this.#listener.sessionCount;
  }

  /** Listens on host:port (15008 in a pod); one call per address family. */
  listen(host: string, port: number): Promise<AddressInfo> {
    return this.#listener.listen(host, port);
  }

  /** Stops accepting: GOAWAY to every session, inner HTTP/2 connections told likewise, idle HTTP/1 connections closed; requests in flight finish. */
  async close(): Promise<void> {
    this.#http2.closeSessions();
    this.#http1.closeIdle();
    await this.#listener.close();
    this.#http1.close();
  }

  /** Destroys whatever is left (after close() and the drain time). */
  abort(): void {
    this.#listener.abort();
  }
}

// The waypoint's HBONE listener (15008): HTTP/2 over mutual TLS 1.3, taking
// CONNECT streams from source ztunnels (hop 1). The server presents the
// waypoint's own SVID whatever the SNI; the client's certificate is the
// source workload's, and its SPIFFE ID is the request's source identity. Each
// stream's :authority is looked up (tunnel.ts); a stream the waypoint serves
// is answered 200 and handed on. Bounded as the ztunnel's inbound is: a
// handshake's time, connections per peer, streams per session, a session's
// idle time and its certificates' lifetime.
import { createSecureServer, createServer, type Http2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import { realClock, type Clock } from '../../lib/core/clock.ts';
import { endpointOf } from '../../lib/core/ip.ts';
import type { Logger } from '../../lib/core/log.ts';
import { traceIdOf } from '../../lib/hbone/headers.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW } from '../../lib/hbone/h2-settings.ts';
import { admitSession, PeerCappedListeners, watchHandshakes } from '../../lib/hbone/listener-guards.ts';
import { drainAtCertificateExpiry } from '../../lib/hbone/session-expiry.ts';
import { CertificateUnavailableError } from '../../lib/identity/errors.ts';
import { formatSpiffeId, type SpiffeId } from '../../lib/identity/spiffe.ts';
import type { CertificateStore } from '../../lib/identity/store.ts';
import { clientIdentity } from '../../lib/identity/tls.ts';
import type { HandshakeFailure, ListenerRefusal, SessionDrain } from '../../lib/telemetry/reasons.ts';
import type { TunnelRefusal } from '../telemetry/reasons.ts';
import type { DownstreamLimits } from './limits.ts';
import { readTunnelRequest, REFUSAL_STATUS, type TunnelContext, type TunnelDestination, type TunnelLookup } from './tunnel.ts';

/** The waypoint's own identity: its certificate is the server's on every session. */
export interface WaypointIdentity {
  trustDomain: string;
  certs: CertificateStore;
  /** The waypoint's SPIFFE ID (its ServiceAccount's). */
  id: SpiffeId;
}

/** What the listener counts (telemetry/metrics.ts implements it). */
export interface ListenerEvents {
  handshakeFailed(reason: HandshakeFailure): void;
  connectionRefused(reason: ListenerRefusal): void;
  tunnelRefused(reason: TunnelRefusal): void;
  sessionDrained(reason: SessionDrain): void;
}

export interface HboneListenerOptions<D extends TunnelDestination> {
  /** Absent: cleartext HTTP/2 (tests, or no CA configured). */
  identity?: WaypointIdentity;
  limits: DownstreamLimits;
  log: Logger;
  lookup: TunnelLookup<D>;
  events?: ListenerEvents;
  /** Session idle and certificate expiry timers (default the real clock). */
  clock?: Clock;
  /** A stream the waypoint serves, answered 200: its bytes are the source's connection. */
  onTunnel(stream: ServerHttp2Stream, tunnel: TunnelContext<D>): void;
}

const NO_EVENTS: ListenerEvents = { handshakeFailed() {}, connectionRefused() {}, tunnelRefused() {}, sessionDrained() {} };

interface SessionState {
  streams: number;
  idle: unknown;
  cancelExpiry: () => void;
}

export class HboneListener<D extends TunnelDestination> {
  readonly #o: HboneListenerOptions<D>;
  readonly #events: ListenerEvents;
  readonly #clock: Clock;
  readonly #listeners = new PeerCappedListeners();
  readonly #sessions = new Map<Http2Session, SessionState>();

  constructor(options: HboneListenerOptions<D>) {
    this.#o = options;
    this.#events = options.events ?? NO_EVENTS;
    this.#clock = options.clock ?? realClock;
  }

  /** HBONE sessions connected now, over all listeners. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Adds a listener on host:port (one per address family). */
  listen(host: string, port: number): Promise<AddressInfo> {
    const { limits, log } = this.#o;
    return this.#listeners.listen(this.#h2Server(), host, port, limits.maxSessionsPerPeer, log, () => this.#events.connectionRefused('peer_session_limit'));
  }

  /** Stops accepting and tells connected peers (GOAWAY) to open no new streams; open streams finish. */
  async close(): Promise<void> {
    for (const s of this.#sessions.keys()) s.close();
    await this.#listeners.close();
  }

  /** Destroys every connection left (after close() and the drain time). */
  abort(): void {
    this.#listeners.destroyAccepted();
  }

  #h2Server(): Http2Server {
    const { identity, limits, log } = this.#o;
    const h2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: limits.maxStreamsPerSession }, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    // Client chains are checked after the handshake (rejectUnauthorized off), so a refusal can say why and be counted.
    const server = identity
      ? createSecureServer({ ...h2, SNICallback: this.#ownCertificate(identity), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', handshakeTimeout: limits.handshakeTimeout * 1000 })
      : createServer(h2);
    watchHandshakes(server, log, (reason) => this.#events.handshakeFailed(reason));
    server.on('session', (session: Http2Session) => this.#onSession(session));
    server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onStream(stream, headers));
    return server;
  }

  /** Every session presents the waypoint's certificate: there is one identity here, whatever name the client asked for. */
  #ownCertificate(identity: WaypointIdentity): (servername: string, callback: (err: Error | null, ctx?: SecureContext) => void) => void {
    return (_servername, callback) => {
      const context = identity.certs.secureContext(identity.id);
      if (context) callback(null, context);
      else callback(new CertificateUnavailableError(formatSpiffeId(identity.id), 'the waypoint\'s certificate is not issued yet or has expired; check that the CA is reachable'));
    };
  }

  #onSession(session: Http2Session): void {
    const socket = session.socket as TLSSocket;
    const { identity, log } = this.#o;
    if (!admitSession(session, identity !== undefined, log, (reason) => this.#events.handshakeFailed(reason))) return;
    session.setLocalWindowSize(SESSION_WINDOW);
    this.#track(session, socket.remoteAddress);
    session.on('error', (err) => log.warn('tunnel_session_error', { peer: socket.remoteAddress, error: err }));
  }

  /** Counts the session's streams; drains it after the idle timeout without streams, or when its own or its peer's certificate expires. */
  #track(session: Http2Session, peer: string | undefined): void {
    const state: SessionState = { streams: 0, idle: undefined, cancelExpiry: () => {} };
    const { scheduler } = this.#clock;
    const drain = (reason: SessionDrain) => {
      if (session.closed || session.destroyed) return;
      session.close();
      this.#events.sessionDrained(reason);
      this.#o.log.info('tunnel_session_drained', { peer, reason, streams: state.streams });
    };
    const idleMs = this.#o.limits.sessionIdleTimeout * 1000;
    const armIdle = () => {
      state.idle = scheduler.set(() => drain('idle_timeout'), idleMs);
    };
    this.#sessions.set(session, state);
    armIdle();
    if (this.#o.identity) state.cancelExpiry = drainAtCertificateExpiry(session.socket as TLSSocket, this.#clock, () => drain('certificate_expiry'));
    session.on('stream', (stream: ServerHttp2Stream) => {
      if (state.streams++ === 0) scheduler.clear(state.idle);
      stream.once('close', () => {
        if (--state.streams === 0 && !session.closed) armIdle();
      });
    });
    session.once('close', () => {
      scheduler.clear(state.idle);
      state.cancelExpiry();
      this.#sessions.delete(session);
    });
  }

  #refuse(stream: ServerHttp2Stream, reason: TunnelRefusal, fields: Record<string, unknown>): void {
    this.#events.tunnelRefused(reason);
    this.#o.log.warn('tunnel_refused', { reason, status: REFUSAL_STATUS[reason], ...fields });
    if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': REFUSAL_STATUS[reason] }, { endStream: true });
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    const socket = stream.session?.socket as TLSSocket | undefined;
    const peer = endpointOf(socket?.remoteAddress, socket?.remotePort);
    const { identity } = this.#o;
    let client: SpiffeId | undefined;
    if (identity) {
      try {
        if (!socket) throw new Error('the session is gone');
        client = clientIdentity(socket, identity.trustDomain);
      } catch (error) {
        return this.#refuse(stream, 'unauthenticated', { peer: socket?.remoteAddress, error });
      }
    }
    const read = readTunnelRequest(headers, { peer, identity: client });
    if (read.kind === 'refuse') return this.#refuse(stream, read.reason, { peer: socket?.remoteAddress, method: headers[':method'], authority: read.authority });
    let decision;
    try {
      decision = this.#o.lookup(read.input);
    } catch (error) {
      this.#o.log.error('tunnel_lookup_failed', { authority: headers[':authority'], error });
      return this.#refuse(stream, 'not_served', { peer: socket?.remoteAddress, authority: headers[':authority'] });
    }
    if (decision.kind === 'refuse') {
      return this.#refuse(stream, decision.reason, { peer: socket?.remoteAddress, authority: headers[':authority'], ...(decision.detail ? { detail: decision.detail } : {}) });
    }
    const tunnel: TunnelContext<D> = {
      destination: decision.destination,
      authority: read.input.authority,
      source: decision.source,
      sourceAddress: decision.sourceAddress,
      peer,
      identity: client && formatSpiffeId(client),
      security: identity ? 'mutual_tls' : 'plaintext',
      sni: socket?.servername || undefined,
      traceId: traceIdOf(read.traceparent),
    };
    stream.respond({ ':status': 200 });
    this.#o.onTunnel(stream, tunnel);
  }
}

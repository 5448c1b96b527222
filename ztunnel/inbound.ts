// Inbound end of the tunnel: an HTTP/2 server taking CONNECT streams from
// other nodes' ztunnels to pods on this node. The pod sees the node's address
// as its peer; the client's address and workload travel in the headers and
// end up in the flow table. inbound-plan.ts decides each stream; this
// answers, dials and relays. Every peer is bounded: connections per address,
// the TLS handshake's time, streams per session, a session's idle time and
// its certificates' lifetime, and so is the connect to the pod
// (lib/config/ztunnel.ts has the flags).
import { constants, createSecureServer, createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { realClock, type Clock } from '../lib/core/clock.ts';
import { ztunnelLimits, type ZtunnelLimits } from '../lib/config/ztunnel.ts';
import { endpointOf } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import { dial, forward } from '../lib/hbone/forward.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW } from '../lib/hbone/h2-settings.ts';
import { tunnelRequestOf } from '../lib/hbone/headers.ts';
import { admitSession, PeerCappedListeners, watchHandshakes } from '../lib/hbone/listener-guards.ts';
import { h2Leg } from '../lib/hbone/relay.ts';
import { drainAtCertificateExpiry } from '../lib/hbone/session-expiry.ts';
import type { MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { clientIdentity, hboneServerTlsOptions } from '../lib/identity/tls.ts';
import type { StateStore } from '../lib/mesh/state.ts';
import type { FlowTable } from '../lib/telemetry/flow-table.ts';
import type { HandshakeFailure, SessionDrain } from '../lib/telemetry/reasons.ts';
import { deniedReason, type DestinationPolicy } from './destination-policy.ts';
import { planInbound, type InboundPlan, type SessionTls } from './inbound-plan.ts';
import type { ZtunnelMetrics } from './metrics.ts';
import { reportSourceMismatch } from './source-mismatch.ts';

export interface InboundOptions {
  node: string;
  store: StateStore;
  flows: FlowTable;
  log: Logger;
  /** Source address for connections to local pods (the node's), by the pod's IP. */
  sourceAddress(targetIp: string): string | undefined;
  policy: DestinationPolicy;
  metrics: ZtunnelMetrics;
  /** Absent: cleartext HTTP/2 (no CA configured). */
  identity?: MeshIdentity;
  /** Timeouts and caps, in seconds and counts (lib/config/ztunnel.ts); unset ones take the defaults. */
  limits?: Partial<ZtunnelLimits>;
  /** Session idle and certificate expiry timers (default the real clock). */
  clock?: Clock;
}

/** The session's TLS facts for planning: the identity named in SNI, and the client's (read once per session). */
function sessionTls(socket: TLSSocket, identity: MeshIdentity): SessionTls {
  const sni = identity.certs.identityForSni(socket.servername || '');
  try {
    return { sni, client: { identity: clientIdentity(socket, identity.trustDomain) } };
  } catch (error) {
    return { sni, client: { error } };
  }
}

/** What the server keeps per session: its open streams, and the timers that drain it. */
interface SessionState {
  /** Streams taken and not yet closed. */
  open: Set<ServerHttp2Stream>;
  idle: unknown;
  /** (Re)starts the idle timer. */
  armIdle: () => void;
  cancelExpiry: () => void;
}

/**
 * What nghttp2 itself enforces, above --hbone-max-streams: a stream past the
 * cap reaches us and is refused, and counted, here, where nghttp2 would refuse
 * it unseen. Twice the cap bounds what a peer that ignores it makes us handle.
 */
const protocolStreamLimit = (cap: number): number => Math.min(cap * 2, 2 ** 32 - 1);

function refuse(stream: ServerHttp2Stream, status: number): void {
  stream.on('error', () => {});
  if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': status }, { endStream: true });
}

/** Resets a stream nothing was done for, so the client may retry it elsewhere (RFC 9113 §8.7). */
function refuseUnprocessed(stream: ServerHttp2Stream): void {
  stream.on('error', () => {});
  stream.close(constants.NGHTTP2_REFUSED_STREAM);
}

export class InboundServer {
  readonly #o: InboundOptions;
  readonly #limits: ZtunnelLimits;
  readonly #clock: Clock;
  readonly #listeners = new PeerCappedListeners();
  readonly #sessions = new Map<Http2Session, SessionState>();

  constructor(options: InboundOptions) {
    this.#o = options;
    this.#limits = ztunnelLimits(options.limits ?? {});
    this.#clock = options.clock ?? realClock;
  }

  /** HTTP/2 sessions currently connected, over all listeners. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Adds a listener on host:port (one per address family). */
  listen(host: string, port: number): Promise<AddressInfo> {
    const limits = this.#limits;
    const h2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: protocolStreamLimit(limits.hboneMaxStreams) }, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    const { identity } = this.#o;
    // Mutual TLS 1.3: the certificate is picked by SNI among local identities, the client's must chain to the mesh root.
    // Client chains are checked after the handshake (rejectUnauthorized off), so a refusal can say why and be counted.
    const server = identity
      ? createSecureServer({ ...h2, ...hboneServerTlsOptions(identity.certs), rejectUnauthorized: false, handshakeTimeout: limits.hboneHandshakeTimeout * 1000 })
      : createServer(h2);
    const handshakeFailed = (reason: HandshakeFailure) => this.#o.metrics.handshakeFailed('inbound', reason);
    watchHandshakes(server, this.#o.log, handshakeFailed);
    server.on('session', (session) => {
      if (!admitSession(session, identity !== undefined, this.#o.log, handshakeFailed)) return;
      session.setLocalWindowSize(SESSION_WINDOW);
      this.#track(session, session.socket.remoteAddress);
      session.on('error', (err) => this.#o.log.warn('tunnel_session_error', { peer: session.socket?.remoteAddress, error: err }));
    });
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    return this.#listeners.listen(server, host, port, limits.hboneMaxSessionsPerPeer, this.#o.log, () => this.#o.metrics.refused('hbone', 'peer_session_limit'));
  }

  /** Stops accepting sessions and tells connected peers (GOAWAY) to open no new streams; open streams finish. */
  async close(): Promise<void> {
    for (const s of this.#sessions.keys()) s.close();
    await this.#listeners.close();
  }

  /** Destroys every connection left (after close() and the drain time): a peer cannot hold the listener open. */
  abort(): void {
    this.#listeners.destroyAccepted();
  }

  /**
   * Keeps the session's state (its streams are taken by #admit); drains it
   * (GOAWAY, then close once its streams end) after the idle timeout without
   * streams, or when its own or its peer's certificate expires.
   */
  #track(session: Http2Session, peer: string | undefined): void {
    const { scheduler } = this.#clock;
    const drain = (reason: SessionDrain) => {
      if (session.closed || session.destroyed) return;
      session.close();
      this.#o.metrics.drained('inbound', reason);
      this.#o.log.info('tunnel_session_drained', { peer, reason, streams: state.open.size });
    };
    const idleMs = this.#limits.hboneIdleTimeout * 1000;
    const state: SessionState = {
      open: new Set(),
      idle: undefined,
      armIdle: () => {
        scheduler.clear(state.idle);
        state.idle = scheduler.set(() => drain('idle_timeout'), idleMs);
      },
      cancelExpiry: () => {},
    };
    this.#sessions.set(session, state);
    state.armIdle();
    if (this.#o.identity) state.cancelExpiry = drainAtCertificateExpiry(session.socket as TLSSocket, this.#clock, () => drain('certificate_expiry'));
    session.once('close', () => {
      scheduler.clear(state.idle);
      state.cancelExpiry();
      this.#sessions.delete(session);
    });
  }

  /**
   * Takes the stream into its session's count, or refuses it with
   * REFUSED_STREAM (safe for the client to retry) when the session already
   * carries --hbone-max-streams, counted and logged.
   */
  #admit(stream: ServerHttp2Stream): boolean {
    const session = stream.session;
    const state = session && this.#sessions.get(session);
    // A session this server did not take (its client's certificate was refused): none of its streams runs.
    if (!session || !state) {
      refuseUnprocessed(stream);
      return false;
    }
    const cap = this.#limits.hboneMaxStreams;
    if (state.open.size >= cap) {
      refuseUnprocessed(stream);
      this.#o.metrics.streamRefused('stream_limit');
      this.#o.log.warn('stream_refused', { peer: session.socket?.remoteAddress, reason: 'stream_limit', limit: cap });
      return false;
    }
    if (state.open.size === 0) this.#clock.scheduler.clear(state.idle);
    state.open.add(stream);
    stream.once('close', () => {
      state.open.delete(stream);
      if (state.open.size === 0 && !session.closed) state.armIdle();
    });
    return true;
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    if (!this.#admit(stream)) return;
    const socket = stream.session?.socket as TLSSocket | undefined;
    const { identity } = this.#o;
    const plan = planInbound(this.#o.store.view, {
      node: this.#o.node,
      request: tunnelRequestOf(headers),
      peer: endpointOf(socket?.remoteAddress, socket?.remotePort),
      ...(identity ? { mtls: { trustDomain: identity.trustDomain, session: socket && sessionTls(socket, identity) } } : {}),
    });
    this.#act(stream, plan, socket?.remoteAddress);
  }

  #act(stream: ServerHttp2Stream, plan: InboundPlan, peer: string | undefined): void {
    switch (plan.kind) {
      case 'refuse':
        if (plan.log) this.#o.log.warn('tunnel_refused', { peer, status: plan.status, ...plan.log });
        return refuse(stream, plan.status);
      case 'deny': {
        // A denied connection never reaches the pod.
        const flow = this.#o.flows.open(plan.flow);
        if (plan.sourceMismatch) reportSourceMismatch(this.#o.log, this.#o.metrics, flow.record, plan.sourceMismatch);
        this.#o.policy.denied(flow, plan.authz.decision, plan.status);
        refuse(stream, plan.status);
        return flow.close(deniedReason(plan.authz.decision));
      }
      case 'accept': {
        const pending = dial(plan.target, this.#o.sourceAddress(plan.target.ip), this.#limits.connectTimeout * 1000);
        const flow = this.#o.flows.open(plan.flow, { socket: pending.socket, facing: 'server' });
        if (plan.sourceMismatch) reportSourceMismatch(this.#o.log, this.#o.metrics, flow.record, plan.sourceMismatch);
        this.#o.policy.watch(flow, plan.authz.request);
        return forward(h2Leg(stream), pending, flow, {
          up: () => stream.respond({ ':status': 200 }),
          failed: (err) => {
            refuse(stream, 503);
            this.#o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
          },
        }, this.#limits.idleTimeout * 1000);
      }
    }
  }
}

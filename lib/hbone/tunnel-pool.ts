// Client end of the tunnel: HTTP/2 sessions to other nodes' ztunnels, pooled,
// each carrying up to MAX_STREAMS_PER_SESSION CONNECT streams; a handshake
// that does not finish in time fails, and a session is drained when its
// certificates expire (session-expiry.ts).
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type Http2Session, type OutgoingHttpHeaders } from 'node:http2';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { realClock, type Clock } from '../core/clock.ts';
import { HandshakeTimeoutError, PeerIdentityError } from '../identity/errors.ts';
import type { MeshNode } from '../mesh/model.ts';
import type { Endpoint } from '../telemetry/flow.ts';
import type { SessionDrain, SessionFailure } from '../telemetry/reasons.ts';
import { MAX_SESSION_MEMORY_MB, MAX_STREAMS_PER_SESSION, SESSION_WINDOW, STREAM_WINDOW } from './h2-settings.ts';
import { drainAtCertificateExpiry } from './session-expiry.ts';
import { hostPort } from '../core/ip.ts';
import type { Logger } from '../core/log.ts';

/**
 * What a session is shared by: the destination node and, with mutual TLS, the
 * source and destination identities, since a session's certificates are theirs.
 */
export interface PoolKey {
  /** The peer: a node's ztunnel, or a waypoint pod (which terminates HBONE itself). */
  node: MeshNode;
  /** The peer's HBONE port; absent: the pool's (the nodes' inbound port). */
  port?: number;
  /** SPIFFE IDs; with `tls`, the session presents `source` and accepts only `destination`. */
  source?: string;
  destination?: string;
  /** Mutual TLS 1.3 options (identity/tls.ts); absent: cleartext HTTP/2. */
  tls?: ConnectionOptions;
}

const keyString = (k: PoolKey): string => `${k.node.name}|${k.node.address}|${k.port ?? ''}|${k.source ?? ''}|${k.destination ?? ''}`;

/** Why a session failed its handshake, as flows and metrics name it. */
export function handshakeFailure(err: Error & { code?: string }): SessionFailure {
  if (err instanceof PeerIdentityError || err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'peer_identity_mismatch';
  if (err instanceof HandshakeTimeoutError || err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (err.code === 'CERT_HAS_EXPIRED') return 'peer_certificate_expired';
  if (err.code !== undefined && /CERT|SIGNATURE|ISSUER|SELF_SIGNED|ALERT|TLS|SSL/.test(err.code)) return 'tls_failed';
  return 'tunnel_failed';
}

interface PooledSession {
  session: ClientHttp2Session;
  streams: number;
  idleTimer?: NodeJS.Timeout;
  /** Takes it out of the pool: no new streams, closed once its streams end. */
  drain(reason: SessionDrain): void;
}

/** How early, at most, a session is drained before its certificates expire (see session-expiry.ts). */
const EXPIRY_LEAD_MS = 5000;

export interface TunnelPoolOptions {
  /** Port of the peers' inbound tunnel listener. */
  port: number;
  log: Logger;
  /** A session could not be set up (its streams then close before answering). */
  onSessionFailure?(reason: SessionFailure): void;
  maxStreamsPerSession?: number;
  /** Close a session after this long without streams. */
  idleMs?: number;
  /** A session was drained (its certificates expire). */
  onSessionDrained?(reason: SessionDrain): void;
  /** When certificates expire (default the real clock). */
  clock?: Clock;
  /** A session whose handshake takes longer fails with handshake_timeout (default 10 s, as --hbone-handshake-timeout). */
  handshakeTimeoutMs?: number;
}

export class TunnelPool {
  readonly #port: number;
  readonly #log: Logger;
  readonly #maxStreams: number;
  readonly #idleMs: number;
  readonly #pools = new Map<string, PooledSession[]>();
  readonly #failures = new WeakMap<object, SessionFailure>();
  readonly #onFailure: (reason: SessionFailure) => void;
  readonly #onDrained: (reason: SessionDrain) => void;
  readonly #clock: Clock;
  readonly #handshakeMs: number;

  constructor(options: TunnelPoolOptions) {
    this.#port = options.port;
    this.#log = options.log;
    this.#maxStreams = options.maxStreamsPerSession ?? MAX_STREAMS_PER_SESSION;
    this.#idleMs = options.idleMs ?? 60_000;
    this.#onFailure = options.onSessionFailure ?? (() => {});
    this.#onDrained = options.onSessionDrained ?? (() => {});
    this.#clock = options.clock ?? realClock;
    this.#handshakeMs = options.handshakeTimeoutMs ?? 10_000;
  }

  /** Why a session failed, if it did (a handshake refusal, say). */
  failureOf(session: Http2Session | undefined): SessionFailure | undefined {
    return session ? this.#failures.get(session) : undefined;
  }

  /** Opens a CONNECT stream to `target` through the peer; the caller waits for its response. */
  open(key: PoolKey, target: Endpoint, headers: OutgoingHttpHeaders): ClientHttp2Stream {
    const pooled = this.#session(key);
    pooled.streams++;
    clearTimeout(pooled.idleTimer);
    const stream = pooled.session.request({ ...headers, ':method': 'CONNECT', ':authority': hostPort(target.ip, target.port) });
    stream.once('close', () => {
      if (--pooled.streams === 0 && !pooled.session.closed) pooled.idleTimer = setTimeout(() => pooled.session.close(), this.#idleMs).unref();
    });
    return stream;
  }

  /** Lets open streams finish, then closes every session. */
  close(): void {
    for (const pool of this.#pools.values()) for (const p of pool) p.session.close();
    this.#pools.clear();
  }

  #session(key: PoolKey): PooledSession {
    const k = keyString(key);
    let pool = this.#pools.get(k);
    // A session closing on idle is still listed until its 'close'; it takes no new streams.
    const free = pool?.find((p) => p.streams < this.#maxStreams && !p.session.closed && !p.session.destroyed);
    if (free) return free;
    if (!pool) this.#pools.set(k, (pool = []));
    const session = this.#connect(key);
    let cancelExpiry = () => {};
    const drop = () => {
      clearTimeout(pooled.idleTimer);
      const i = pool.indexOf(pooled);
      if (i >= 0) pool.splice(i, 1);
      if (pool.length === 0 && this.#pools.get(k) === pool) this.#pools.delete(k);
    };
    const pooled: PooledSession = {
      session,
      streams: 0,
      drain: (reason) => {
        if (session.closed || session.destroyed) return;
        drop();
        session.close();
        this.#onDrained(reason);
        this.#log.info('tunnel_session_drained', { peer: key.node.name, source: key.source, destination: key.destination, reason, streams: pooled.streams });
      },
    };
    pool.push(pooled);
    if (key.tls) session.once('connect', () => {
      cancelExpiry = drainAtCertificateExpiry(session.socket as TLSSocket, this.#clock, () => pooled.drain('certificate_expiry'), EXPIRY_LEAD_MS);
    });
    // A session the peer is draining (GOAWAY) or that failed takes no new streams.
    session.once('goaway', drop);
    session.once('close', () => {
      cancelExpiry();
      drop();
    });
    return pooled;
  }

  #connect(key: PoolKey): ClientHttp2Session {
    const { node } = key;
    const authority = hostPort(node.address, key.port ?? this.#port);
    const h2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW }, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    // With TLS: HTTP/2 over mutual TLS 1.3, ALPN h2, SNI naming the destination identity.
    const session = key.tls ? connect(`https://${authority}`, { ...h2, ...key.tls }) : connect(`http://${authority}`, h2);
    // A peer that accepts and never answers would hold the session, and every stream waiting on it, forever.
    const handshake = setTimeout(() => session.destroy(new HandshakeTimeoutError(authority, this.#handshakeMs)), this.#handshakeMs).unref();
    session.once('close', () => clearTimeout(handshake));
    session.once('connect', () => {
      clearTimeout(handshake);
      // A pool closed while the session was still connecting has destroyed it already.
      if (session.destroyed) return;
      session.setLocalWindowSize(SESSION_WINDOW);
      this.#log.info('tunnel_session_open', { peer: node.name, address: authority, source: key.source, destination: key.destination });
    });
    session.on('error', (err: Error & { code?: string }) => {
      // Streams that closed before an answer take their close reason from this.
      const reason = handshakeFailure(err);
      this.#failures.set(session, reason);
      if (reason !== 'tunnel_failed') this.#onFailure(reason);
      this.#log.warn('tunnel_session_error', { peer: node.name, address: authority, destination: key.destination, error: err });
    });
    return session;
  }
}

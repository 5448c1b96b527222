// What the ztunnel's inbound and the waypoint's HBONE listener guard the same
// way: connections per peer capped at accept, before any TLS work; TLS
// handshakes and client certificates refused with a reason that is counted;
// and a peer given a grace to close once a session has ended its side.
import { constants, type Http2Session } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { canonicalIp } from '../core/ip.ts';
import { closeServer, listenTcp } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import { certificateRefusal, type HandshakeFailure } from '../telemetry/reasons.ts';
import { ConnectionCounts } from './connection-counts.ts';
import { handshakeFailure } from './tunnel-pool.ts';

/** How long a peer has to close its end once a session is over and ours is closed; a peer that never reads would hold the socket forever. */
const CLOSE_GRACE_MS = 5000;

/** The TCP listeners in front of one HTTP/2 server; each accepted connection is handed to it. */
export class PeerCappedListeners {
  readonly #listeners: Server[] = [];
  /** Every connection accepted and not yet closed, sessions or handshakes. */
  readonly #accepted = new Set<Socket>();
  readonly #peers = new ConnectionCounts();

  /** Adds a listener on host:port; a peer address holding maxPerPeer connections already is refused, logged and told to `refused`. */
  listen(server: { emit(event: 'connection', socket: Socket): boolean }, host: string, port: number, maxPerPeer: number, log: Logger, refused: () => void): Promise<AddressInfo> {
    const listener = createTcpServer((socket) => {
      const peer = canonicalIp(socket.remoteAddress ?? '') ?? 'unknown';
      if (this.#peers.admit(peer, socket, maxPerPeer)) {
        this.#accepted.add(socket);
        socket.once('close', () => this.#accepted.delete(socket));
        return void server.emit('connection', socket);
      }
      socket.destroy();
      refused();
      log.warn('connection_refused', { listener: 'hbone', peer, reason: 'peer_session_limit', limit: maxPerPeer });
    });
    this.#listeners.push(listener);
    return listenTcp(listener, host, port);
  }

  /** Stops accepting; connections already accepted stay. */
  async close(): Promise<void> {
    await Promise.all(this.#listeners.map(closeServer));
  }

  /** Destroys every connection left: a peer cannot hold the listener open. */
  destroyAccepted(): void {
    for (const socket of this.#accepted) socket.destroy();
  }
}

/** Counts and logs each TLS handshake the server fails. */
export function watchHandshakes(server: { on(event: 'tlsClientError', listener: (err: Error & { code?: string }, socket: TLSSocket) => void): unknown }, log: Logger, failed: (reason: HandshakeFailure) => void): void {
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    const reason = handshakeFailure(err);
    failed(reason);
    log.warn('handshake_refused', { peer: socket.remoteAddress, reason, error: err });
  });
}

/**
 * Arms the close grace on a new session's socket and, when client
 * certificates are checked, refuses (INADEQUATE_SECURITY) a session whose
 * certificate did not verify: counted, logged, destroyed. False when refused.
 */
export function admitSession(session: Http2Session, checkClient: boolean, log: Logger, failed: (reason: HandshakeFailure) => void): boolean {
  const socket = session.socket as TLSSocket;
  // Once the session has ended its side (GOAWAY sent, socket ended), the peer gets a grace to close its own.
  socket.once('finish', function (this: Socket) {
    setTimeout(() => this.destroy(), CLOSE_GRACE_MS).unref();
  });
  if (!checkClient || socket.authorized) return true;
  const reason = certificateRefusal(String(socket.authorizationError));
  failed(reason);
  log.warn('handshake_refused', { peer: socket.remoteAddress, reason, error: String(socket.authorizationError) });
  session.goaway(constants.NGHTTP2_INADEQUATE_SECURITY);
  session.destroy();
  return false;
}

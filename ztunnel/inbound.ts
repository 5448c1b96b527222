// Inbound end of the tunnel: an HTTP/2 server taking CONNECT streams from
// other nodes' ztunnels to pods on this node. The pod sees the node's address
// as its peer; the client's address and workload travel in the headers and
// end up in the flow table.
import { constants, createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { formatSpiffeId, sameIdentity } from '../lib/identity/spiffe.ts';
import { clientIdentity, hboneServerTlsOptions } from '../lib/identity/tls.ts';
import type { DestinationPolicy } from './destination-policy.ts';
import { verdictOf } from './destination-policy.ts';
import { identityOf, type MeshIdentity } from '../lib/identity/mesh-identity.ts';
import type { ZtunnelMetrics } from './metrics.ts';
import { handshakeFailure } from '../lib/hbone/tunnel-pool.ts';
import { refOf, type FlowTable } from '../lib/telemetry/flow-table.ts';
import { dial, forward } from '../lib/hbone/forward.ts';
import { parseForwardedFor, traceIdOf } from '../lib/hbone/headers.ts';
import { endpointOf, parseHostPort } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import { MAX_SESSION_MEMORY_MB, MAX_STREAMS_PER_SESSION, SESSION_WINDOW, STREAM_WINDOW } from '../lib/hbone/h2-settings.ts';
import { h2Leg } from '../lib/hbone/relay.ts';
import { closeServer, listenTcp } from '../lib/core/listen.ts';
import type { StateStore } from '../lib/mesh/state.ts';

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
}

/** OpenSSL's verification error codes, as flows and metrics name the refusal. */
function certificateRefusal(code: string): string {
  if (code === 'CERT_HAS_EXPIRED') return 'peer_certificate_expired';
  if (code === 'UNABLE_TO_GET_ISSUER_CERT' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') return 'peer_untrusted';
  return 'peer_certificate_invalid';
}

function refuse(stream: ServerHttp2Stream, status: number): void {
  stream.on('error', () => {});
  if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': status }, { endStream: true });
}

export class InboundServer {
  readonly #o: InboundOptions;
  readonly #servers: (Http2Server | Http2SecureServer)[] = [];
  readonly #sessions = new Set<Http2Session>();

  constructor(options: InboundOptions) {
    this.#o = options;
  }

  /** HTTP/2 sessions currently connected, over all listeners. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Adds a listener on host:port (one per address family). */
  listen(host: string, port: number): Promise<AddressInfo> {
    const h2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: MAX_STREAMS_PER_SESSION }, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    const { identity } = this.#o;
    // Mutual TLS 1.3: the certificate is picked by SNI among local identities, the client's must chain to the mesh root.
    // Client chains are checked after the handshake (rejectUnauthorized off), so a refusal can say why and be counted.
    const server = identity ? createSecureServer({ ...h2, ...hboneServerTlsOptions(identity.certs), rejectUnauthorized: false }) : createServer(h2);
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      const reason = handshakeFailure(err);
      this.#o.metrics.handshakeFailed('inbound', reason);
      this.#o.log.warn('handshake_refused', { peer: socket.remoteAddress, reason, error: err });
    });
    server.on('session', (session) => {
      const socket = session.socket as TLSSocket;
      if (identity && !socket.authorized) {
        const reason = certificateRefusal(String(socket.authorizationError));
        this.#o.metrics.handshakeFailed('inbound', reason);
        this.#o.log.warn('handshake_refused', { peer: socket.remoteAddress, reason, error: String(socket.authorizationError) });
        session.goaway(constants.NGHTTP2_INADEQUATE_SECURITY);
        session.destroy();
        return;
      }
      session.setLocalWindowSize(SESSION_WINDOW);
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      session.on('error', (err) => this.#o.log.warn('tunnel_session_error', { peer: session.socket?.remoteAddress, error: err }));
    });
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    this.#servers.push(server);
    return listenTcp(server, host, port);
  }

  /** Stops accepting sessions and tells connected peers (GOAWAY) to open no new streams; open streams finish. */
  async close(): Promise<void> {
    for (const s of this.#sessions) s.close();
    await Promise.all(this.#servers.map(closeServer));
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const authority = headers[':authority'];
    const target = typeof authority === 'string' ? parseHostPort(authority) : undefined;
    const peer = stream.session?.socket?.remoteAddress;
    if (headers[':method'] !== 'CONNECT' || !target) {
      this.#o.log.warn('tunnel_refused', { peer, status: 400, method: headers[':method'], authority });
      return refuse(stream, 400);
    }
    const view = this.#o.store.view;
    const workload = view?.workloadByIp(target.ip);
    // Only pods on this node are reachable here: the tunnel is not an open relay.
    if (!workload || workload.node !== this.#o.node) {
      this.#o.log.warn('tunnel_refused', { peer, status: 503, authority, reason: workload ? `pod is on node ${workload.node}` : 'not a known pod' });
      return refuse(stream, 503);
    }
    const forwarded = headers.forwarded;
    const src = parseForwardedFor(typeof forwarded === 'string' ? forwarded : undefined) ?? endpointOf(stream.session?.socket?.remoteAddress, stream.session?.socket?.remotePort);
    if (!src) return refuse(stream, 400);
    const { identity } = this.#o;
    let sourceIdentity: string | undefined;
    let destinationIdentity: string | undefined;
    if (identity) {
      const socket = stream.session?.socket as TLSSocket | undefined;
      if (!socket) return refuse(stream, 400);
      const expected = identityOf(workload, identity.trustDomain);
      const named = identity.certs.identityForSni(socket.servername || '');
      // The client proved it wanted this workload's identity (SNI); a stream may not reach another.
      if (!named || !sameIdentity(named, expected)) {
        this.#o.log.warn('tunnel_refused', { peer, status: 400, authority, reason: `the session is for ${named ? formatSpiffeId(named) : 'no local identity'}, the target is ${formatSpiffeId(expected)}` });
        return refuse(stream, 400);
      }
      try {
        sourceIdentity = formatSpiffeId(clientIdentity(socket, identity.trustDomain));
      } catch (err) {
        this.#o.log.warn('tunnel_refused', { peer, status: 401, authority, error: err });
        return refuse(stream, 401);
      }
      destinationIdentity = formatSpiffeId(expected);
    }
    const traceparent = headers.traceparent;
    const request = { source: { ip: src.ip, ...(sourceIdentity ? { principal: sourceIdentity } : {}) }, destination: { ip: target.ip, port: target.port, workload } };
    const decision = this.#o.policy.decide(view!, request);
    // A denied connection never reaches the pod.
    const pending = decision.allowed ? dial(target, this.#o.sourceAddress(target.ip)) : undefined;
    const flow = this.#o.flows.open(
      {
        direction: 'inbound',
        source: { ...src, workload: refOf(view?.workloadByIp(src.ip)), ...(sourceIdentity ? { identity: sourceIdentity } : {}) },
        originalDestination: target,
        destination: { ...target, workload: refOf(workload), node: workload.node, ...(destinationIdentity ? { identity: destinationIdentity } : {}) },
        path: 'tunnel',
        traceId: traceIdOf(typeof traceparent === 'string' ? traceparent : undefined),
        security: identity ? 'mutual_tls' : 'plaintext',
        ...verdictOf(decision),
      },
      pending && { socket: pending.socket, facing: 'server' },
    );
    if (!pending) {
      this.#o.policy.denied(flow, decision, 401);
      refuse(stream, 401);
      return flow.close('denied');
    }
    this.#o.policy.watch(flow, request);
    forward(h2Leg(stream), pending, flow, {
      up: () => stream.respond({ ':status': 200 }),
      failed: (err) => {
        refuse(stream, 503);
        this.#o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
      },
    });
  }
}

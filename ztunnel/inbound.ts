// Inbound end of the tunnel: an HTTP/2 server taking CONNECT streams from
// other nodes' ztunnels to pods on this node. The pod sees the node's address
// as its peer; the client's address and workload travel in the headers and
// end up in the flow table. inbound-plan.ts decides each stream; this
// answers, dials and relays.
import { constants, createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { endpointOf } from '../lib/core/ip.ts';
import { closeServer, listenTcp } from '../lib/core/listen.ts';
import type { Logger } from '../lib/core/log.ts';
import { dial, forward } from '../lib/hbone/forward.ts';
import { MAX_SESSION_MEMORY_MB, MAX_STREAMS_PER_SESSION, SESSION_WINDOW, STREAM_WINDOW } from '../lib/hbone/h2-settings.ts';
import { h2Leg } from '../lib/hbone/relay.ts';
import { handshakeFailure } from '../lib/hbone/tunnel-pool.ts';
import type { MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { clientIdentity, hboneServerTlsOptions } from '../lib/identity/tls.ts';
import type { StateStore } from '../lib/mesh/state.ts';
import type { FlowTable } from '../lib/telemetry/flow-table.ts';
import type { HandshakeFailure } from '../lib/telemetry/reasons.ts';
import type { DestinationPolicy } from './destination-policy.ts';
import { planInbound, type InboundPlan, type SessionTls } from './inbound-plan.ts';
import type { ZtunnelMetrics } from './metrics.ts';

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
function certificateRefusal(code: string): HandshakeFailure {
  if (code === 'CERT_HAS_EXPIRED') return 'peer_certificate_expired';
  if (code === 'UNABLE_TO_GET_ISSUER_CERT' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') return 'peer_untrusted';
  return 'peer_certificate_invalid';
}

/** A request header that must appear once. */
const header = (v: string | string[] | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

/** The session's TLS facts for planning: the identity named in SNI, and the client's (read once per session). */
function sessionTls(socket: TLSSocket, identity: MeshIdentity): SessionTls {
  const sni = identity.certs.identityForSni(socket.servername || '');
  try {
    return { sni, client: { identity: clientIdentity(socket, identity.trustDomain) } };
  } catch (error) {
    return { sni, client: { error } };
  }
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
    const socket = stream.session?.socket as TLSSocket | undefined;
    const { identity } = this.#o;
    const plan = planInbound(this.#o.store.view, {
      node: this.#o.node,
      request: { method: headers[':method'], authority: headers[':authority'], forwarded: header(headers.forwarded), traceparent: header(headers.traceparent) },
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
        this.#o.policy.denied(flow, plan.authz.decision, plan.status);
        refuse(stream, plan.status);
        return flow.close('denied');
      }
      case 'accept': {
        const pending = dial(plan.target, this.#o.sourceAddress(plan.target.ip));
        const flow = this.#o.flows.open(plan.flow, { socket: pending.socket, facing: 'server' });
        this.#o.policy.watch(flow, plan.authz.request);
        return forward(h2Leg(stream), pending, flow, {
          up: () => stream.respond({ ':status': 200 }),
          failed: (err) => {
            refuse(stream, 503);
            this.#o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
          },
        });
      }
    }
  }
}

// The destination end of hop 2 for the waypoint's upstream tests: a real
// HBONE listener built from the pieces the ztunnel's inbound side uses
// (lib/identity's server TLS options and client identity, lib/hbone's
// headers, dial and relay), which records every CONNECT it takes and can be
// told to refuse them, and a node/endpoint description to reach it by.
import type { TestContext } from 'node:test';
import { createSecureServer, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseHostPort } from '../../lib/core/ip.ts';
import { listenTcp } from '../../lib/core/listen.ts';
import { dial } from '../../lib/hbone/forward.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW } from '../../lib/hbone/h2-settings.ts';
import { tunnelRequestOf, type TunnelRequest } from '../../lib/hbone/headers.ts';
import { h2Leg, relay } from '../../lib/hbone/relay.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import type { HeldCertificate } from '../../lib/identity/store.ts';
import { formatSpiffeId } from '../../lib/identity/spiffe.ts';
import { clientIdentity, hboneServerTlsOptions } from '../../lib/identity/tls.ts';

/** The node address the HBONE listener takes, and the pod address upstream servers take. */
export const NODE_IP = '127.0.0.2';
export const POD_IP = '127.0.0.21';
export const OTHER_POD_IP = '127.0.0.22';

export interface ReceivedTunnel {
  request: TunnelRequest;
  headers: IncomingHttpHeaders;
  /** The SNI the client sent (mutual TLS only). */
  servername?: string;
  /** The client's verified identity (mutual TLS only). */
  client?: string;
}

export interface HboneServerOptions {
  identity?: MeshIdentity;
  /** A rogue ztunnel: present this certificate whatever the SNI asks for. */
  presentAs?: HeldCertificate;
  /** A status to answer instead of dialling, or undefined to dial. */
  refuse?(authority: string | undefined): number | undefined;
  /** Where a pod address really listens (pods of mesh state live at other addresses on loopback); default: the authority itself. */
  dialTo?(target: { ip: string; port: number }): { ip: string; port: number } | undefined;
}

export interface HboneServer {
  port: number;
  tunnels: ReceivedTunnel[];
}

export async function hboneServer(t: TestContext, options: HboneServerOptions = {}): Promise<HboneServer> {
  const { identity } = options;
  const h2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW }, maxSessionMemory: MAX_SESSION_MEMORY_MB };
  const tls = identity && hboneServerTlsOptions(identity.certs);
  const rogue = options.presentAs;
  if (tls && rogue) tls.SNICallback = (_name, cb) => cb(null, rogue.secureContext);
  const server: Http2Server = tls ? createSecureServer({ ...h2, ...tls }) : createServer(h2);
  const state: HboneServer = { port: 0, tunnels: [] };
  server.on('session', (session) => session.setLocalWindowSize(SESSION_WINDOW));
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    const request = tunnelRequestOf(headers);
    const socket = stream.session?.socket as TLSSocket | undefined;
    const received: ReceivedTunnel = { request, headers };
    if (identity && socket) {
      received.servername = socket.servername || undefined;
      received.client = formatSpiffeId(clientIdentity(socket, identity.trustDomain));
    }
    state.tunnels.push(received);
    const target = request.authority === undefined ? undefined : parseHostPort(request.authority);
    const status = request.method !== 'CONNECT' || !target ? 400 : options.refuse?.(request.authority);
    if (status !== undefined || !target) return void stream.respond({ ':status': status ?? 400 }, { endStream: true });
    const real = options.dialTo ? options.dialTo(target) : target;
    if (!real) return void stream.respond({ ':status': 503 }, { endStream: true });
    const pending = dial(real, undefined);
    pending.ready.then(
      (leg) => {
        stream.respond({ ':status': 200 });
        relay(h2Leg(stream), leg, () => {});
      },
      () => !stream.destroyed && stream.respond({ ':status': 503 }, { endStream: true }),
    );
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const address = await listenTcp(server, NODE_IP, 0);
  state.port = address.port;
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return state;
}

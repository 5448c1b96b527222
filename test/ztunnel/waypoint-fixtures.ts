// A waypoint for the ztunnel's tests, without the waypoint process: a real
// HBONE server on its own loopback address, built from the pieces the
// ztunnel itself uses (lib/identity's server and client TLS options and
// client identity, lib/hbone's headers and HTTP/2 settings). It records what
// each CONNECT asked for (:authority) and who asked (the client
// certificate's identity), and either echoes or, as a real waypoint's hop 2,
// opens its own tunnel to the destination node's ztunnel from its own
// address, under its own identity, asking for `podIP:targetPort`.
import type { TestContext } from 'node:test';
import { connect, createSecureServer, createServer, type ClientHttp2Session, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { hostPort, parseHostPort } from '../../lib/core/ip.ts';
import { listenTcp } from '../../lib/core/listen.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW } from '../../lib/hbone/h2-settings.ts';
import { tunnelRequestOf } from '../../lib/hbone/headers.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import { formatSpiffeId, type SpiffeId } from '../../lib/identity/spiffe.ts';
import type { HeldCertificate } from '../../lib/identity/store.ts';
import { clientIdentity, hboneClientTlsOptions, hboneServerTlsOptions } from '../../lib/identity/tls.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { Service, WaypointBinding, WaypointPolicy, WaypointTraffic } from '../../lib/mesh/model.ts';
import { WAYPOINT_INSTANCE_LABEL } from '../../lib/mesh/waypoints.ts';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import { defer, SERVER_IP, service, workload } from './fixtures.ts';

/** The waypoint pod's address (on node n2), its ServiceAccount, and its Service's VIP. */
export const WAYPOINT_IP = '127.0.0.31';
export const WAYPOINT_SA = 'waypoint';
export const WAYPOINT_VIP = '10.96.0.20';
export const WAYPOINT = { namespace: 'default', name: 'waypoint' };

export interface ReceivedStream {
  method: string | undefined;
  authority: string | undefined;
  forwarded: string | undefined;
  baggage: string | undefined;
  /** The client certificate's SPIFFE ID (mutual TLS only). */
  identity?: string;
  /** What the destination's ztunnel answered hop 2, when there was one. */
  hop2Status?: number;
}

export interface FakeWaypointOptions {
  /** Its certificates (mutual TLS); absent: cleartext HTTP/2. */
  identity?: MeshIdentity;
  /** A rogue: present this certificate whatever the SNI asks for. */
  presentAs?: HeldCertificate;
  /**
   * Hop 2: tunnel each stream to `node` (the destination node's ztunnel)
   * under `self`'s certificate, naming `destination`'s identity, asking for
   * `target(authority)`. Absent: echo.
   */
  hop2?: { node: Endpoint; target(authority: Endpoint): Endpoint; self?: HeldCertificate; destination?: SpiffeId };
}

export interface FakeWaypoint {
  port: number;
  streams: ReceivedStream[];
}

const H2 = { settings: { enablePush: false, initialWindowSize: STREAM_WINDOW }, maxSessionMemory: MAX_SESSION_MEMORY_MB };

export async function fakeWaypoint(t: TestContext, options: FakeWaypointOptions = {}): Promise<FakeWaypoint> {
  const { identity, presentAs, hop2 } = options;
  const tls = identity && { ...hboneServerTlsOptions(identity.certs), ...(presentAs ? { SNICallback: (_name: string, cb: (err: Error | null, ctx: HeldCertificate['secureContext']) => void) => cb(null, presentAs.secureContext) } : {}) };
  const server: Http2Server = tls ? createSecureServer({ ...H2, ...tls }) : createServer(H2);
  const state: FakeWaypoint = { port: 0, streams: [] };
  let upstream: ClientHttp2Session | undefined;
  const session = (): ClientHttp2Session => {
    if (upstream && !upstream.closed && !upstream.destroyed) return upstream;
    const { node, self, destination } = hop2!;
    const url = `${self ? 'https' : 'http'}://${hostPort(node.ip, node.port)}`;
    const to = { host: node.ip, port: node.port, localAddress: WAYPOINT_IP };
    // From the waypoint pod's own address, as a real one dials.
    const createConnection = self && destination
      ? () => tlsConnect({ ...to, ...hboneClientTlsOptions(self, destination), ALPNProtocols: ['h2'] })
      : () => netConnect(to);
    upstream = connect(url, { ...H2, createConnection });
    upstream.on('error', () => {});
    return upstream;
  };
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    s.setLocalWindowSize(SESSION_WINDOW);
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    const request = tunnelRequestOf(headers);
    const socket = stream.session?.socket as TLSSocket | undefined;
    const received: ReceivedStream = {
      method: request.method, authority: request.authority, forwarded: request.forwarded,
      baggage: typeof headers.baggage === 'string' ? headers.baggage : undefined,
      ...(identity && socket ? { identity: formatSpiffeId(clientIdentity(socket, identity.trustDomain)) } : {}),
    };
    state.streams.push(received);
    const authority = request.authority === undefined ? undefined : parseHostPort(request.authority);
    if (request.method !== 'CONNECT' || !authority) return void stream.respond({ ':status': 400 }, { endStream: true });
    if (!hop2) {
      stream.respond({ ':status': 200 });
      return void stream.pipe(stream);
    }
    const target = hop2.target(authority);
    const up = session().request({ ':method': 'CONNECT', ':authority': hostPort(target.ip, target.port) });
    up.on('error', () => {});
    up.once('response', (h) => {
      received.hop2Status = Number(h[':status']);
      if (received.hop2Status !== 200) return void stream.respond({ ':status': 503 }, { endStream: true });
      stream.respond({ ':status': 200 });
      stream.pipe(up);
      up.pipe(stream);
    });
  });
  const { port } = await listenTcp(server, WAYPOINT_IP, 0);
  state.port = port;
  defer(t, () => new Promise<void>((resolve) => {
    upstream?.destroy();
    for (const s of sessions) s.destroy();
    server.close(() => resolve());
  }));
  return state;
}

export interface WaypointStateOptions {
  /** The waypoint's HBONE port: its Service's endpoint. */
  port: number;
  trafficType?: WaypointTraffic;
  /** No Gateway: the binding names a waypoint that does not exist. */
  noGateway?: true;
  /** Its Service lists no ready endpoint. */
  noEndpoint?: true;
  /** Binds the server Service (VIP traffic) and/or the server pod (pod-IP traffic). */
  bind: { service?: WaypointBinding['from']; workload?: WaypointBinding['from'] };
  policies?: WaypointPolicy[];
}

/** An L7 policy on the waypoint Gateway: everything bound to it is under it. */
export const onWaypoint = (name = 'server-l7'): WaypointPolicy => ({ key: `default/${name}`, namespace: 'default', name, action: 'ALLOW', targets: [{ kind: 'gateway', ...WAYPOINT }] });

/** `base` with the waypoint: its pod on n2 (not captured), its Service and Gateway, and the bindings asked for. */
export function withWaypoint(base: MeshState, o: WaypointStateOptions): MeshState {
  const binding = (from: WaypointBinding['from'] | undefined) => (from ? { waypoint: { ...WAYPOINT, from } } : {});
  const pod = workload({ name: 'waypoint-0', ips: [WAYPOINT_IP], node: 'n2', serviceAccount: WAYPOINT_SA, enrolled: false, labels: { [WAYPOINT_INSTANCE_LABEL]: WAYPOINT.name } });
  const waypointService: Service = service({ name: WAYPOINT.name, vips: [WAYPOINT_VIP], ports: [{ name: 'mesh', port: 15008, protocol: 'TCP' }], endpoints: o.noEndpoint ? [] : [{ ip: WAYPOINT_IP, ports: { mesh: o.port } }] });
  return {
    ...base,
    workloads: [...base.workloads.map((w) => (w.ips.includes(SERVER_IP) ? { ...w, ...binding(o.bind.workload) } : w)), pod],
    services: [...base.services.map((s) => (s.name === 'server' ? { ...s, ...binding(o.bind.service) } : s)), waypointService],
    waypoints: o.noGateway ? [] : [{ ...WAYPOINT, trafficType: o.trafficType ?? 'service', className: 'istio-waypoint' }],
    waypointPolicies: o.policies ?? [],
  };
}

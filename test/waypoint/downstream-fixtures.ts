// The waypoint's downstream side on loopback for its tests: a
// WaypointDownstream with a lookup over a few Service ports (one per
// protocol declaration), handlers the test overrides, and the client side of
// hop 1 as a source ztunnel drives it (an HBONE session, CONNECT streams,
// and HTTP/1.1 or HTTP/2 spoken through them).
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { TestContext } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import { hostPort } from '../../lib/core/ip.ts';
import { silentLogger, type Logger } from '../../lib/core/log.ts';
import type { Clock } from '../../lib/core/clock.ts';
import { formatSpiffeId } from '../../lib/identity/spiffe.ts';
import type { TcpPassthrough } from '../../waypoint/downstream/dispatch.ts';
import { WaypointDownstream, type DownstreamHandlers } from '../../waypoint/downstream/downstream.ts';
import type { HttpExchange } from '../../waypoint/downstream/exchange.ts';
import type { ListenerEvents, WaypointIdentity } from '../../waypoint/downstream/hbone-listener.ts';
import type { DownstreamLimits } from '../../waypoint/downstream/limits.ts';
import { sendLocalReply } from '../../waypoint/downstream/local-reply.ts';
import { bufferStringWrites } from '../../waypoint/downstream/string-writes.ts';
import type { TunnelDestination, TunnelInput } from '../../waypoint/downstream/tunnel.ts';
import type { RequestRecord } from '../../waypoint/telemetry/request-record.ts';

const { request: httpRequest } = process.getBuiltinModule('node:http');

export const LISTEN_IP = '127.0.0.1';

/** Service ports by the authority a source ztunnel names, one per way of declaring (or not) a protocol. */
export const AUTHORITIES = {
  http: '10.96.0.10:80',
  grpc: '10.96.0.10:9090',
  h2c: '10.96.0.10:8080',
  undeclared: '10.96.0.10:7000',
  tcp: '10.96.0.10:5432',
  pod: '10.244.1.7:8080',
  /** Known, but served by another waypoint. */
  elsewhere: '10.96.0.99:80',
} as const;

const svc = (name: string, port: number, decl: { name?: string; appProtocol?: string }): TunnelDestination => ({ kind: 'service', namespace: 'shop', name, port: { port, ...decl } });

export const DESTINATIONS: Readonly<Record<string, TunnelDestination>> = {
  [AUTHORITIES.http]: svc('web', 80, { name: 'http-web' }),
  [AUTHORITIES.grpc]: svc('api', 9090, { name: 'grpc-api' }),
  [AUTHORITIES.h2c]: svc('web', 8080, { name: 'tcp-x', appProtocol: 'kubernetes.io/h2c' }),
  [AUTHORITIES.undeclared]: svc('web', 7000, { name: 'data' }),
  [AUTHORITIES.tcp]: svc('db', 5432, { name: 'tcp-postgres' }),
  [AUTHORITIES.pod]: { kind: 'workload', namespace: 'shop', name: 'web-0', port: { port: 8080 } },
};

/** Answers with what it was asked: the request as the handler saw it, and the tunnel it came on. */
export async function echo(exchange: HttpExchange<TunnelDestination>): Promise<void> {
  const { request, tunnel, response } = exchange;
  const chunks: Buffer[] = [];
  for await (const c of request.body) chunks.push(c as Buffer);
  const body = JSON.stringify({
    method: request.method, path: request.path, host: request.host, protocol: request.protocol, grpc: request.grpc,
    headers: request.headers, body: Buffer.concat(chunks).toString(), trace: request.trace,
    destination: tunnel.destination, authority: tunnel.authority, identity: tunnel.identity, security: tunnel.security,
  });
  response.respond(200, { 'content-type': 'application/json', server: 'upstream-app' }, { trailers: false, upstreamServiceTimeMs: 3 });
  response.write(body);
  response.end();
}

export interface Recorded {
  records: RequestRecord[];
  tcp: TcpPassthrough<TunnelDestination>[];
  lookups: TunnelInput[];
  events: string[];
}

export interface StartOptions {
  identity?: WaypointIdentity;
  limits?: Partial<DownstreamLimits>;
  handlers?: Partial<DownstreamHandlers<TunnelDestination>>;
  clock?: Clock;
  log?: Logger;
}

export async function startDownstream(t: TestContext, options: StartOptions = {}): Promise<Recorded & { port: number; downstream: WaypointDownstream<TunnelDestination> }> {
  const recorded: Recorded = { records: [], tcp: [], lookups: [], events: [] };
  const events: ListenerEvents = {
    handshakeFailed: (r) => recorded.events.push(`handshake_failed:${r}`),
    connectionRefused: (r) => recorded.events.push(`connection_refused:${r}`),
    tunnelRefused: (r) => recorded.events.push(`tunnel_refused:${r}`),
    sessionDrained: (r) => recorded.events.push(`session_drained:${r}`),
  };
  const downstream = new WaypointDownstream<TunnelDestination>({
    ...(options.identity ? { identity: options.identity } : {}),
    // A sniff timeout no busy machine reaches, unless a test is about it: verdicts come from the bytes.
    limits: { sniffTimeout: 60, ...options.limits },
    ...(options.clock ? { clock: options.clock } : {}),
    log: options.log ?? silentLogger,
    events,
    lookup: (input) => {
      recorded.lookups.push(input);
      const key = hostPort(input.authority.ip, input.authority.port);
      if (key === AUTHORITIES.elsewhere) return { kind: 'refuse', reason: 'not_served', detail: 'bound to waypoint other' };
      const destination = DESTINATIONS[key];
      if (!destination) return { kind: 'refuse', reason: 'unknown_authority' };
      const principal = input.identity ? formatSpiffeId(input.identity) : undefined;
      return { kind: 'accept', destination, source: { workload: 'client', namespace: 'shop', app: 'client', ...(principal ? { principal } : {}) }, ...(input.claimedSource ? { sourceAddress: input.claimedSource } : {}) };
    },
    handlers: {
      http: options.handlers?.http ?? echo,
      upgrade: options.handlers?.upgrade ?? (async (exchange) => sendLocalReply(exchange, { kind: 'no_route' })),
      tcp: (connection) => {
        recorded.tcp.push(connection);
        (options.handlers?.tcp ?? echoTcp)(connection);
      },
    },
    onRequest: (r) => recorded.records.push(r),
  });
  const { port } = await downstream.listen(LISTEN_IP, 0);
  t.after(async () => {
    downstream.abort();
    await downstream.close();
  });
  return { ...recorded, port, downstream };
}

/** An L4 passthrough that echoes: the head first, then whatever follows, ending when the client does. */
export function echoTcp(connection: TcpPassthrough<TunnelDestination>): void {
  const { stream, head, ended } = connection;
  if (head.length > 0) stream.write(head);
  if (ended) return void stream.end();
  stream.pipe(stream);
}

/** A source ztunnel's HBONE session to the waypoint; `tls`: hboneClientTlsOptions for mutual TLS. */
export async function hboneSession(t: TestContext, port: number, tls?: ConnectionOptions): Promise<ClientHttp2Session> {
  const session = tls ? h2connect(`https://${LISTEN_IP}:${port}`, tls) : h2connect(`http://${LISTEN_IP}:${port}`);
  session.on('error', () => {});
  t.after(() => session.destroy());
  await once(session, 'connect');
  return session;
}

/** Opens a CONNECT stream to `authority` and waits for the answer. */
export async function tunnel(session: ClientHttp2Session, authority: string, headers: OutgoingHttpHeaders = {}): Promise<{ stream: ClientHttp2Stream; status: number }> {
  const stream = session.request({ ':method': 'CONNECT', ':authority': authority, forwarded: 'for="10.244.0.5:40000"', ...headers });
  stream.on('error', () => {});
  const [response] = (await once(stream, 'response')) as [IncomingHttpHeaders];
  return { stream, status: Number(response[':status']) };
}

export interface Http1Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  trailers: Record<string, string | undefined>;
}

/** One HTTP/1.1 request through a tunnel stream (as the client's app would make it over its TCP connection). */
export async function http1(stream: ClientHttp2Stream, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Http1Response> {
  bufferStringWrites(stream);
  const req = httpRequest({
    createConnection: () => stream as never,
    method: options.method ?? 'GET',
    path: options.path ?? '/',
    headers: { host: 'web.shop.svc.cluster.local', ...options.headers },
  });
  req.end(options.body);
  const [res] = await once(req, 'response');
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c);
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(), trailers: res.trailers };
}

/** An HTTP/2 (prior knowledge) connection through a tunnel stream. */
export function h2OverTunnel(t: TestContext, stream: ClientHttp2Stream): ClientHttp2Session {
  const session = h2connect('http://web.shop.svc.cluster.local', { createConnection: () => stream as never });
  session.on('error', () => {});
  t.after(() => session.destroy());
  return session;
}

export interface H2Response {
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders | undefined;
}

export async function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string): Promise<H2Response> {
  const req = session.request(headers, { endStream: body === undefined });
  if (body !== undefined) req.end(body);
  let trailers: IncomingHttpHeaders | undefined;
  req.on('trailers', (tr: IncomingHttpHeaders) => (trailers = tr));
  const [responseHeaders] = (await once(req, 'response')) as [IncomingHttpHeaders];
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return { headers: responseHeaders, body: Buffer.concat(chunks).toString(), trailers };
}

// A whole waypoint on loopback for the router's tests, assembled as the
// process assembles it (startWaypoint) with its cluster state from a test
// source: real backend servers (one per pod and port) behind a real HBONE
// listener playing the destination node's ztunnel, certificates from a real
// meshlet CA for the clients, the waypoint and the backends, and a source
// ztunnel's side of hop 1 (mutual TLS sessions under the client workloads'
// identities, CONNECT to VIP:port, HTTP/1.1 or HTTP/2 inside, kept alive).
//
// Mesh state names pods by their cluster addresses (10.244.x.y); the
// destination listener dials the loopback address each really listens on.
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import type { Client } from 'undici';
import { createRoot } from '../../ca/root.ts';
import { serveCa } from '../../ca/service.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import type { Clock } from '../../lib/core/clock.ts';
import { silentLogger, type Logger } from '../../lib/core/log.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { CertificateStore, type HeldCertificate } from '../../lib/identity/store.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import type { Random } from '../../lib/l7/index.ts';
import { clientOnTunnel } from '../../waypoint/upstream/tunnel-client.ts';
import { startWaypoint, type Waypoint } from '../../waypoint/waypoint.ts';
import { PodsSource, TokenCallers } from '../support/ca-doubles.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { hboneServer, NODE_IP, type HboneServer } from './hbone-server.ts';

export const NS = 'demo';
export const WAYPOINT_NAME = 'waypoint';
export const WAYPOINT_ID = spiffeId(NS, 'waypoint');
/** The client node's address: hop 1 comes from it (sessions from 127.0.0.1 to the waypoint on 127.0.0.1). */
export const CLIENT_NODE_IP = '127.0.0.1';
/** The backends' node: its "ztunnel" is the HBONE listener on NODE_IP. */
export const BACKEND_NODE_IP = NODE_IP;

/** The client workloads, on the client node: `namespace/serviceaccount` → pod address. */
export const CLIENTS: Record<string, { ip: string; extra?: string[] }> = {
  'demo/sleep': { ip: '10.244.1.5', extra: ['10.244.9.7'] },
  'other/curl': { ip: '10.244.1.6' },
};

export type Protocol = 'http' | 'grpc' | 'tcp';

export interface ServiceSpec {
  name: string;
  ports: number[];
  versions: string[];
  protocol?: Protocol;
  /** Not bound to the waypoint (no istio.io/use-waypoint). */
  unbound?: boolean;
}

export interface Received {
  method: string;
  path: string;
  /** As the backend got them: each header's values in order. */
  headers: Record<string, string[]>;
  body: string;
  port: number;
}

/** What a backend answers; default: 200 with its name and an echo of the request. */
export type Handler = (req: Received, res: ServerResponse, pod: Backend) => void;

export interface Backend {
  name: string;
  service: string;
  version: string;
  /** The pod's address in mesh state. */
  ip: string;
  /** Mesh port → where it really listens on loopback. */
  listening: Map<number, number>;
  received: Received[];
  handler?: Handler;
  /** HTTP/1 upgrade requests (WebSocket): answered 101 and echoed unless set. */
  onUpgrade?: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
}

export interface SendRequest {
  to: string;
  port?: number;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  /** `namespace/serviceaccount`; default demo/sleep. */
  from?: string;
  /** The Forwarded claim; default the client pod's address. */
  sourceIp?: string;
  http2?: boolean;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  trailers: Record<string, string>;
}

export interface Stack {
  waypoint: Waypoint;
  hbone: HboneServer;
  backends: Map<string, Backend>;
  services: readonly ServiceSpec[];
  /** The waypoint's cluster state: the fixture's objects and `resources`. */
  setResources(resources: readonly KubeObject[]): void;
  vip(service: string): string;
  send(request: SendRequest): Promise<Response>;
  /** A CONNECT stream to `authority` as `from`: its status, and the stream when 200. */
  tunnel(authority: string, options?: { from?: string; sourceIp?: string }): Promise<{ status: number; stream: ClientHttp2Stream }>;
}

export interface StackOptions {
  services: readonly ServiceSpec[];
  /** The waypoint's clock (router and clusters); default real. */
  clock?: Clock;
  random?: Random;
  log?: Logger;
  /** Readiness, admin (/requests, /config…) and metrics listeners on ephemeral ports. */
  listeners?: boolean;
}

const ignore = () => {};

function tracked(t: TestContext, server: Server | HttpServer): void {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
}

async function listenLoopback(server: Server | HttpServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function echoBody(pod: Backend, req: Received): string {
  return JSON.stringify({ pod: pod.name, ...req });
}

const defaultHandler: Handler = (req, res, pod) => {
  res.writeHead(200, { 'content-type': 'application/json', 'x-backend': `${pod.service}:${pod.version}`, 'x-port': String(req.port) });
  res.end(echoBody(pod, req));
};

async function httpPod(t: TestContext, pod: Backend, meshPort: number): Promise<number> {
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      const received: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headersDistinct as Record<string, string[]>, body: Buffer.concat(chunks).toString(), port: meshPort };
      pod.received.push(received);
      (pod.handler ?? defaultHandler)(received, res, pod);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (pod.onUpgrade) return pod.onUpgrade(req, socket, head);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nx-backend: ${pod.service}:${pod.version}\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  tracked(t, server);
  return listenLoopback(server);
}

async function grpcPod(t: TestContext, pod: Backend, meshPort: number): Promise<number> {
  const server = createH2Server();
  server.on('stream', (stream: ServerHttp2Stream, headers: H2Headers) => {
    stream.on('error', ignore);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => {
      const plain: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && v !== undefined) plain[k] = Array.isArray(v) ? v : [String(v)];
      pod.received.push({ method: String(headers[':method']), path: String(headers[':path']), headers: plain, body: Buffer.concat(chunks).toString(), port: meshPort });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': `${pod.service}:${pod.version}` }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end();
    });
  });
  tracked(t, server as unknown as Server);
  return listenLoopback(server as unknown as Server);
}

async function tcpPod(t: TestContext, pod: Backend): Promise<number> {
  const server = createTcpServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', ignore);
    socket.write(`hello from ${pod.name}\n`);
    socket.pipe(socket);
  });
  tracked(t, server);
  return listenLoopback(server);
}

/** The mesh objects of the fixture: namespaces, nodes, the waypoint's Gateway, client pods, and per service its Service, EndpointSlice and pods. */
export function fixtureObjects(services: readonly ServiceSpec[], backends: ReadonlyMap<string, Backend>): KubeObject[] {
  const objects: KubeObject[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: CLIENT_NODE_IP }] } },
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2' }, status: { addresses: [{ type: 'InternalIP', address: BACKEND_NODE_IP }] } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: WAYPOINT_NAME, namespace: NS },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
  ];
  const pod = (name: string, namespace: string, sa: string, node: string, ip: string, labels: Record<string, string>): KubeObject => ({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, uid: `uid-${namespace}-${name}`, labels, creationTimestamp: '2025-01-01T00:00:00Z' },
    spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'app' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  });
  for (const [who, { ip, extra }] of Object.entries(CLIENTS)) {
    const [namespace, sa] = who.split('/') as [string, string];
    [ip, ...(extra ?? [])].forEach((addr, i) => objects.push(pod(`${sa}-${i}`, namespace, sa, 'n1', addr, { app: sa })));
  }
  services.forEach((s, i) => {
    const portName = (p: number) => `${s.protocol === 'grpc' ? 'grpc' : s.protocol === 'tcp' ? 'tcp' : 'http'}-${p}`;
    objects.push({
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: s.name, namespace: NS, labels: s.unbound ? {} : { 'istio.io/use-waypoint': WAYPOINT_NAME }, creationTimestamp: '2025-01-01T00:00:00Z' },
      spec: { clusterIP: `10.96.0.${10 + i}`, ports: s.ports.map((p) => ({ name: portName(p), port: p, targetPort: p, protocol: 'TCP', ...(s.protocol === 'grpc' ? { appProtocol: 'grpc' } : {}) })) },
    });
    const pods = [...backends.values()].filter((b) => b.service === s.name);
    objects.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${s.name}-1`, namespace: NS, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      endpoints: pods.map((b) => ({ addresses: [b.ip], conditions: { ready: true } })),
      ports: s.ports.map((p) => ({ name: portName(p), port: p, protocol: 'TCP' })),
    });
    for (const b of pods) objects.push(pod(b.name, NS, s.name, 'n2', b.ip, { app: s.name, version: b.version }));
  });
  return objects;
}

interface Identities {
  clients: Map<string, HeldCertificate>;
  waypoint: CertificateStore;
  backends: CertificateStore;
}

/** A real meshlet CA on 127.0.0.1 that knows `pods`; each node's caller presents `token-<node>-…`. */
export async function testCa(t: TestContext, pods: readonly KubeObject[], nodes: readonly string[]): Promise<{ issuer(node: string): Promise<CaClient> }> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-waypoint-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const token = (node: string) => `token-${node}-0123456789abcdef`;
  const ca = await serveCa({
    host: '127.0.0.1', port: 0, stateDir: join(dir, 'ca'),
    trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: silentLogger,
  }, {
    root: await createRoot('cluster.local'), source: new PodsSource([...pods]),
    callers: new TokenCallers(Object.fromEntries(nodes.map((node) => [token(node), node]))),
  });
  t.after(() => ca.close());
  return {
    async issuer(node) {
      await writeFile(join(dir, `${node}.token`), token(node));
      const client = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile: join(dir, `${node}.token`) });
      t.after(() => client.close());
      return client;
    },
  };
}

/** The waypoint's own pod, as the CA knows it (its node is "wp"). */
export const WAYPOINT_POD: KubeObject = {
  apiVersion: 'v1', kind: 'Pod', metadata: { name: 'waypoint-0', namespace: NS, uid: 'uid-waypoint-0' },
  spec: { nodeName: 'wp', serviceAccountName: 'waypoint', containers: [{ name: 'c' }] }, status: { phase: 'Running', podIP: '10.244.3.1' },
};

interface Identities {
  clients: Map<string, HeldCertificate>;
  waypoint: CertificateStore;
  backends: CertificateStore;
}

/** One certificate store per node (the clients', the backends', the waypoint's), from a CA that knows the fixture's pods. */
async function identities(t: TestContext, services: readonly ServiceSpec[], backends: ReadonlyMap<string, Backend>): Promise<Identities> {
  const pods = [...fixtureObjects(services, backends).filter((o) => o.kind === 'Pod'), WAYPOINT_POD];
  const ca = await testCa(t, pods, ['n1', 'n2', 'wp']);
  const store = async (node: string): Promise<CertificateStore> => {
    const certs = new CertificateStore({ issuer: await ca.issuer(node) });
    t.after(() => certs.close());
    return certs;
  };
  const clientCerts = await store('n1');
  const clients = new Map<string, HeldCertificate>();
  for (const who of Object.keys(CLIENTS)) {
    const [namespace, sa] = who.split('/') as [string, string];
    clients.set(who, await clientCerts.ensure(spiffeId(namespace, sa)));
  }
  const backendCerts = await store('n2');
  for (const s of services) if (s.versions.length > 0) await backendCerts.ensure(spiffeId(NS, s.name));
  const waypoint = await store('wp');
  await waypoint.ensure(WAYPOINT_ID);
  return { clients, waypoint, backends: backendCerts };
}

/** Pods per service version, at 10.244.2.x. */
function backendsOf(services: readonly ServiceSpec[]): Map<string, Backend> {
  const backends = new Map<string, Backend>();
  let n = 10;
  for (const s of services) {
    for (const version of s.versions) {
      const name = `${s.name}-${version}`;
      backends.set(name, { name, service: s.name, version, ip: `10.244.2.${n++}`, listening: new Map(), received: [] });
    }
  }
  return backends;
}

/** A source ztunnel's side of hop 1: one mutual TLS session per client identity, one kept-alive HTTP connection per tunnel. */
class HopOne {
  readonly #port: number;
  readonly #certs: Map<string, HeldCertificate>;
  readonly #sessions = new Map<string, ClientHttp2Session>();
  readonly #clients = new Map<string, Client[]>();

  constructor(t: TestContext, port: number, certs: Map<string, HeldCertificate>) {
    this.#port = port;
    this.#certs = certs;
    t.after(() => {
      for (const list of this.#clients.values()) for (const c of list) if (c) void c.destroy().catch(ignore);
      for (const s of this.#sessions.values()) s.destroy();
    });
  }

  async session(from: string): Promise<ClientHttp2Session> {
    let session = this.#sessions.get(from);
    if (session && !session.closed && !session.destroyed) return session;
    const held = this.#certs.get(from);
    if (!held) throw new Error(`no client identity ${from}`);
    session = h2connect(`https://127.0.0.1:${this.#port}`, hboneClientTlsOptions(held, WAYPOINT_ID));
    session.on('error', ignore);
    this.#sessions.set(from, session);
    await once(session, 'connect');
    return session;
  }

  async tunnel(authority: string, from: string, sourceIp: string): Promise<{ status: number; stream: ClientHttp2Stream }> {
    const session = await this.session(from);
    const stream = session.request({ ':method': 'CONNECT', ':authority': authority, forwarded: `for="${sourceIp}:40000"` });
    stream.on('error', ignore);
    // A tunnel refused at once (reset after, or instead of, its answer) has status 0.
    const status = await new Promise<number>((resolve) => {
      stream.once('response', (headers: H2Headers) => resolve(Number(headers[':status'])));
      stream.once('close', () => resolve(0));
    });
    return { status, stream };
  }

  /** A kept-alive connection for (from, source, authority, protocol); `lane` picks one of several, for concurrency. */
  async client(authority: string, from: string, sourceIp: string, http2: boolean, lane: number): Promise<Client> {
    const key = `${from}|${sourceIp}|${authority}|${http2}`;
    const list = this.#clients.get(key) ?? [];
    this.#clients.set(key, list);
    const existing = list[lane];
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const { status, stream } = await this.tunnel(authority, from, sourceIp);
    if (status !== 200) throw new Error(`the waypoint refused the tunnel to ${authority}: ${status}`);
    const client = clientOnTunnel(stream, authority, http2);
    client.on('connectionError', ignore);
    list[lane] = client;
    return client;
  }

  drop(client: Client): void {
    for (const list of this.#clients.values()) {
      const i = list.indexOf(client);
      if (i >= 0) delete list[i];
    }
    void client.destroy().catch(ignore);
  }
}

export async function startStack(t: TestContext, options: StackOptions): Promise<Stack> {
  const { services } = options;
  const backends = backendsOf(services);
  const dial = new Map<string, { ip: string; port: number }>();
  for (const b of backends.values()) {
    const spec = services.find((s) => s.name === b.service)!;
    for (const port of spec.ports) {
      const real = spec.protocol === 'grpc' ? await grpcPod(t, b, port) : spec.protocol === 'tcp' ? await tcpPod(t, b) : await httpPod(t, b, port);
      b.listening.set(port, real);
      dial.set(`${b.ip}:${port}`, { ip: '127.0.0.1', port: real });
    }
  }
  const ids = await identities(t, services, backends);
  const hbone = await hboneServer(t, { identity: { trustDomain: 'cluster.local', certs: ids.backends }, dialTo: (target) => dial.get(`${target.ip}:${target.port}`) });
  const base = fixtureObjects(services, backends);
  const source = new PodsSource(base);
  const waypoint = await startWaypoint({
    gateway: { namespace: NS, name: WAYPOINT_NAME },
    trustDomain: 'cluster.local',
    serviceAccount: 'waypoint',
    certs: ids.waypoint,
    listen: { host: '127.0.0.1', port: 0 },
    ...(options.listeners ? { readiness: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 } } : {}),
    hbonePort: hbone.port,
    log: options.log ?? silentLogger,
    accessLog: new Writable({ write: (_c, _e, cb) => cb() }),
    source,
    name: 'waypoint-test',
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    // A sniff timeout no busy machine reaches: verdicts come from the bytes.
    limits: { sniffTimeout: 60 },
  });
  t.after(() => waypoint.shutdown(0));
  const hop1 = new HopOne(t, waypoint.ports.hbone, ids.clients);
  const vip = (name: string): string => {
    const i = services.findIndex((s) => s.name === name);
    if (i < 0) throw new Error(`no fixture service ${name}`);
    return `10.96.0.${10 + i}`;
  };
  let lane = 0;
  const send = async (r: SendRequest): Promise<Response> => {
    const spec = services.find((s) => s.name === r.to);
    if (!spec) throw new Error(`no fixture service ${r.to}`);
    const port = r.port ?? spec.ports[0]!;
    const from = r.from ?? 'demo/sleep';
    const sourceIp = r.sourceIp ?? CLIENTS[from]!.ip;
    const http2 = r.http2 ?? false;
    const headers = { host: `${r.to}.${NS}:${port}`, ...r.headers };
    for (let attempt = 0; ; attempt++) {
      const client = await hop1.client(`${vip(r.to)}:${port}`, from, sourceIp, http2, lane++ % 8);
      try {
        const res = await client.request({ method: r.method ?? 'GET', path: r.path ?? '/', headers, body: r.body ?? null });
        const body = await res.body.text();
        return { status: res.statusCode, headers: res.headers, body, trailers: res.trailers };
      } catch (err) {
        hop1.drop(client);
        // A kept-alive connection the waypoint closed meanwhile: once more on a new one.
        if (attempt > 0) throw err;
      }
    }
  };
  return {
    waypoint, hbone, backends, services,
    setResources: (resources) => source.set([...base, ...resources]),
    vip,
    send,
    tunnel: (authority, o = {}) => {
      const from = o.from ?? 'demo/sleep';
      return hop1.tunnel(authority, from, o.sourceIp ?? CLIENTS[from]!.ip);
    },
  };
}

/** A clock that moves only when told to, or (auto) straight to each timer as it is set: a fault's delay passes at once, and a test can still see that it was asked for. */
export class SteppingClock implements Clock {
  readonly manual: ManualClock;
  auto = false;

  constructor(start = 1_000_000) {
    this.manual = new ManualClock(start);
  }

  readonly now = (): number => this.manual.now();

  readonly scheduler = {
    set: (fn: () => void, ms: number): unknown => {
      const handle = this.manual.scheduler.set(fn, ms);
      if (this.auto) {
        const due = this.manual.now() + ms;
        setImmediate(() => this.manual.advanceTo(due));
      }
      return handle;
    },
    clear: (handle: unknown): void => this.manual.scheduler.clear(handle as number | undefined),
  };

  advance(ms: number): void {
    this.manual.advance(ms);
  }
}


// Mesh state and two-node loopback set-ups for the ztunnel tests. Addresses
// are 127.0.0.x so every hop is a real socket with a distinct IP:
// node n1 127.0.0.1 (capture listener), client pod 127.0.0.11 and local pod 127.0.0.12 on n1,
// node n2 127.0.0.2 (inbound listener), server pod 127.0.0.21 on n2.
import { DestinationPolicy } from '../../ztunnel/destination-policy.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import { ZtunnelMetrics } from '../../ztunnel/metrics.ts';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { Service, Workload } from '../../lib/mesh/model.ts';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import { FlowTable } from '../../lib/telemetry/flow-table.ts';
import { InboundServer } from '../../ztunnel/inbound.ts';
import { silentLogger, type Logger } from '../../lib/core/log.ts';
import { createOutboundHandler } from '../../ztunnel/outbound.ts';
import { Resolver } from '../../ztunnel/resolve.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import type { Clock } from '../../lib/core/clock.ts';
import type { ZtunnelLimits } from '../../lib/config/ztunnel.ts';

export const CLIENT_IP = '127.0.0.11';
export const SERVER_IP = '127.0.0.21';
export const LOCAL_IP = '127.0.0.12';

export function workload(w: Partial<Workload> & Pick<Workload, 'name' | 'ips' | 'node'>): Workload {
  return {
    uid: `uid-${w.name}`,
    namespace: 'default',
    serviceAccount: 'default',
    labels: {},
    enrolled: true,
    excludeOutboundPorts: [],
    ...w,
  };
}

export function service(s: Partial<Service> & Pick<Service, 'name' | 'vips' | 'ports'>): Service {
  return { namespace: 'default', endpoints: [], ...s };
}

/**
 * Nodes n1 (127.0.0.1) and n2 (127.0.0.2), client and local pods on n1, a
 * server pod on n2 listening on `serverPort`, its Service (whose port "data"
 * its EndpointSlice resolved to `serverPort`), and a Service without endpoints.
 */
export function twoNodeState(serverPort: number): MeshState {
  return {
    authorizationPolicies: [],
    peerAuthentications: [],
    waypoints: [],
    waypointPolicies: [],
    nodes: [
      { name: 'n1', address: '127.0.0.1' },
      { name: 'n2', address: '127.0.0.2' },
    ],
    workloads: [
      workload({ name: 'client', ips: [CLIENT_IP], node: 'n1', labels: { app: 'client' } }),
      workload({ name: 'server', ips: [SERVER_IP], node: 'n2', labels: { app: 'server' } }),
      workload({ name: 'local', ips: [LOCAL_IP], node: 'n1', labels: { app: 'local' } }),
    ],
    services: [
      service({ name: 'server', vips: ['10.96.0.10'], ports: [{ name: 'data', port: 80, protocol: 'TCP' }], endpoints: [{ ip: SERVER_IP, ports: { data: serverPort } }] }),
      service({ name: 'nobody', vips: ['10.96.0.11'], ports: [{ port: 80, protocol: 'TCP' }] }),
    ],
  };
}

const teardowns = new WeakMap<TestContext, (() => unknown)[]>();

/** Registers cleanup that runs after the test, last registered first (clients before the servers they hold open). */
export function defer(t: TestContext, fn: () => unknown): void {
  let stack = teardowns.get(t);
  if (!stack) {
    const fns: (() => unknown)[] = [];
    teardowns.set(t, (stack = fns));
    t.after(async () => {
      for (const f of fns.reverse()) await f();
    });
  }
  stack.push(fn);
}

export async function listen(t: TestContext, server: Server, host: string): Promise<AddressInfo> {
  server.listen(0, host);
  await once(server, 'listening');
  defer(t, () => server.close());
  return server.address() as AddressInfo;
}

/** A TCP server standing in for the destination pod (by default the server pod on n2). */
export async function upstream(t: TestContext, onConnection: (socket: Socket) => void, host = SERVER_IP): Promise<{ server: Server; port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    onConnection(s);
  });
  const { port } = await listen(t, server, host);
  defer(t, () => {
    for (const s of sockets) s.destroy();
  });
  return { server, port };
}

export interface TwoNodes {
  n1: { store: StateStore; flows: FlowTable; pool: TunnelPool; capture: AddressInfo; metrics: ZtunnelMetrics };
  n2: { store: StateStore; flows: FlowTable; inbound: InboundServer; address: AddressInfo; metrics: ZtunnelMetrics };
  /** Connects from the client pod's IP as if the application had connected to `dst`. */
  dial(dst: Endpoint): Socket;
}

/**
 * The client end (n1: capture listener, resolver, tunnel pool) and the server
 * end (n2: inbound tunnel server), each with its own state and flow table.
 * Without the BPF hooks the capture listener cannot learn the original
 * destination from the socket, so `dial` hands it over directly.
 */
export interface TwoNodeOptions {
  /** Both ends' timeouts and caps (unset: the defaults). */
  limits?: Partial<ZtunnelLimits>;
  /** Both ends' session timers (unset: the real clock). */
  clock?: Clock;
  /** Both ends' logger (unset: silent). */
  log?: Logger;
  /** The port n1's pool dials on n2's address (unset: n2's inbound listener): to put another peer there. */
  tunnelPort?: number;
  /** n2's own timeouts and caps, over `limits`. */
  inboundLimits?: Partial<ZtunnelLimits>;
}

export async function twoNodes(t: TestContext, serverPort: number, identities: { n1?: MeshIdentity; n2?: MeshIdentity } = {}, options: TwoNodeOptions = {}): Promise<TwoNodes> {
  const state = twoNodeState(serverPort);
  const security = (identity: MeshIdentity | undefined, flows: FlowTable) => {
    const metrics = new ZtunnelMetrics();
    // As startZtunnel wires them: TCP counters move when a flow opens and closes.
    flows.subscribe((e) => (e.event === 'open' ? metrics.flowOpened(e.flow) : metrics.flowClosed(e.flow)));
    return { metrics, policy: new DestinationPolicy(metrics, silentLogger), ...(identity ? { identity } : {}) };
  };
  const mkStore = () => {
    const store = new StateStore();
    store.apply({ type: 'snapshot', version: 1, state });
    return store;
  };
  const n2 = { store: mkStore(), flows: new FlowTable('n2') };
  const n2Security = security(identities.n2, n2.flows);
  const log = options.log ?? silentLogger;
  const inbound = new InboundServer({ node: 'n2', ...n2, ...n2Security, ...options, limits: { ...options.limits, ...options.inboundLimits }, log, sourceAddress: () => '127.0.0.2' });
  const address = await inbound.listen('127.0.0.2', 0);
  defer(t, () => inbound.close());

  const n1 = { store: mkStore(), flows: new FlowTable('n1') };
  const n1Security = security(identities.n1, n1.flows);

  const pool = new TunnelPool({
    port: options.tunnelPort ?? address.port, log: silentLogger, ...(options.clock ? { clock: options.clock } : {}),
    onSessionDrained: (reason) => n1Security.metrics.drained('outbound', reason),
  });
  defer(t, () => pool.close());
  const destinations = new Map<number, Endpoint>();
  const handler = createOutboundHandler({
    ...n1,
    ...n1Security,
    ...(options.limits ? { limits: options.limits } : {}),
    resolver: new Resolver('n1'),
    pool,
    log,
    sourceAddress: () => '127.0.0.1',
    ownAddresses: new Set(),
    originalDestination: (s) => destinations.get(s.remotePort ?? 0),
  });
  // The accept can be seen before the client's own connect event: whichever comes second hands the socket over.
  const waiting = new Map<number, () => void>();
  const sockets = new Set<Socket>();
  const capture = await listen(t, createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    const port = s.remotePort ?? 0;
    if (destinations.has(port)) handler(s);
    else waiting.set(port, () => handler(s));
  }), '127.0.0.1');
  defer(t, () => {
    for (const s of sockets) s.destroy();
  });
  return {
    n1: { ...n1, pool, capture, metrics: n1Security.metrics },
    n2: { ...n2, inbound, address, metrics: n2Security.metrics },
    dial(dst) {
      const s = connect({ host: capture.address, port: capture.port, localAddress: CLIENT_IP, allowHalfOpen: true });
      s.once('connect', () => {
        const port = s.localPort ?? 0;
        destinations.set(port, dst);
        waiting.get(port)?.();
        waiting.delete(port);
      });
      defer(t, () => s.destroy());
      return s;
    },
  };
}

export async function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await once(s, 'end');
  return Buffer.concat(chunks);
}

// One node's ztunnel: control channel, outbound capture, inbound tunnel,
// admin and readiness, wired to one state store and one flow table.
import type { Server as HttpServer } from 'node:http';
import { statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../lib/core/errors.ts';
import { ztunnelLimits, type ZtunnelConfig } from '../lib/config/ztunnel.ts';
import { createServer as createHttpServer } from '../lib/core/http-server.ts';
import { createAdmin, readinessHandler } from './admin.ts';
import { startControlServer } from './control-server.ts';
import { FlowTable } from '../lib/telemetry/flow-table.ts';
import { InboundServer } from './inbound.ts';
import { closeServer, listenTcp, listenUnix } from '../lib/core/listen.ts';
import { hostPort, isV6 } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import { createOutboundHandler } from './outbound.ts';
import { Resolver } from './resolve.ts';
import { StateStore, type StateView } from '../lib/mesh/state.ts';
import { DestinationPolicy } from './destination-policy.ts';
import { localIdentities, type MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { ZtunnelMetrics } from './metrics.ts';
import { TunnelPool } from '../lib/hbone/tunnel-pool.ts';

/** The flags' config without how certificates are obtained: the command turns those into `identity`. */
export interface ZtunnelOptions extends Omit<ZtunnelConfig, 'drainSeconds' | 'trustDomain' | 'caUrl' | 'caBundle' | 'caTokenFile' | 'plaintextTunnels' | 'certTtl'> {
  /** Workload identities and mutual TLS; absent: cleartext tunnels. */
  identity?: MeshIdentity;
  log: Logger;
}

export interface Ztunnel {
  readonly store: StateStore;
  readonly flows: FlowTable;
  /** Resolves once the capture and inbound listeners listen (after the agent's first state); rejects when one cannot. */
  readonly listeningForTraffic: Promise<void>;
  /** Stops accepting, lets open flows finish for up to `drainMs`, then tears down what is left. */
  shutdown(drainMs: number): Promise<void>;
}

/** The longest a stopping ztunnel keeps taking new connections while its agent is still connected. */
const AGENT_RELEASE_MAX_MS = 3000;

/** How long a stopping ztunnel, not replaced on its node, must see no open flow before its inbound listener closes. */
const INBOUND_QUIET_MS = 1000;

/** How often a ztunnel looks whether a rolling update's new one took its node over. */
const SUPERSEDED_CHECK_MS = 500;

const present = <T>(v: T | undefined): v is T => v !== undefined;

export async function startZtunnel(o: ZtunnelOptions): Promise<Ztunnel> {
  const { log } = o;
  // A previous instance's, in the same pod: this one does not listen yet.
  if (o.listeningFile) await rm(o.listeningFile, { force: true });
  const store = new StateStore();
  const flows = new FlowTable(o.node);
  const { identity } = o;
  const metrics = new ZtunnelMetrics(identity ? () => identity.certs.counters : undefined);
  const policy = new DestinationPolicy(metrics, log);
  flows.subscribe((e) => {
    if (e.event === 'open') return metrics.flowOpened(e.flow);
    policy.forget(e.flow.id);
    metrics.flowClosed(e.flow);
    log.info('access', { ...e.flow });
  });
  const sourceAddress = (ip: string) => (isV6(ip) ? (o.inboundSourceIp6 ?? o.nodeIp6) : (o.inboundSourceIp4 ?? o.nodeIp4));
  const limits = ztunnelLimits(o);
  const pool = new TunnelPool({
    port: o.hbonePort, log, maxStreamsPerSession: limits.hboneMaxStreams, handshakeTimeoutMs: limits.hboneHandshakeTimeout * 1000,
    onSessionFailure: (reason) => metrics.handshakeFailed('outbound', reason),
    onSessionDrained: (reason) => metrics.drained('outbound', reason),
  });
  const captureIps = [o.captureIp4, o.captureIp6].filter(present);
  const ownAddresses = new Set<string>();
  const onOutbound = createOutboundHandler({ store, resolver: new Resolver(o.node), flows, pool, log, sourceAddress, ownAddresses, policy, metrics, limits, ...(identity ? { identity } : {}) });
  const capture = captureIps.map((ip) => {
    const server = createTcpServer({ allowHalfOpen: true, noDelay: true }, onOutbound);
    server.on('error', (err) => log.error('capture_listener_error', { error: err }));
    return { ip, server };
  });
  if (!identity) log.warn('plaintext_tunnels', { message: 'no CA: tunnels between nodes are cleartext HTTP/2' });
  let heldState!: () => void;
  const firstState = new Promise<void>((resolve) => (heldState = resolve));
  const onApplied = (view: StateView) => {
    if (identity) identity.certs.retain(localIdentities(view, o.node, identity.trustDomain));
    policy.onView(view);
    heldState();
  };

  /** Listens, naming the listener in the log, or in the error an operator sees when the address is taken or missing. */
  const bind = async <T>(what: string, address: string, listen: () => Promise<T>): Promise<T> => {
    try {
      const result = await listen();
      log.info('listening', { what, address });
      return result;
    } catch (err) {
      throw new ConfigError(`cannot listen for ${what} on ${address}: ${(err as Error).message}`);
    }
  };
  const control = await bind('control', o.controlSocket, () => startControlServer({ path: o.controlSocket, store, log, onApplied }));

  const http: HttpServer[] = [];
  // The listeners that answer for the node (readiness, metrics, admin on
  // loopback), on ports a rolling update's two ztunnels share.
  const nodeAnswering: HttpServer[] = [];
  const certs = identity ? () => identity.certs.list() : undefined;
  let listening = false;
  let adminSocketIno: number | undefined;
  // A rolling update's new ztunnel replaces the node's admin socket as it
  // starts. The old one then answers not ready on its admin socket and closes
  // the listeners it shares with the new one: SO_REUSEPORT would give it every
  // other connection to them, so half the kubelet's probes of the new pod
  // would meet its 503 and the rollout wait a probe period each time.
  const superseded = (): boolean => adminSocketIno !== undefined && statSync(o.adminSocket, { throwIfNoEntry: false })?.ino !== adminSocketIno;
  const notServing = (): string | undefined => {
    if (superseded()) return `superseded: another ztunnel took over ${o.adminSocket}`;
    return listening ? undefined : 'not listening for traffic yet';
  };
  const extras = { metrics: () => metrics.text(), notServing, ...(certs ? { certs } : {}) };
  const admin = createAdmin(store, flows, extras);
  const adminUnix = createHttpServer(admin.handler);
  http.push(adminUnix);
  await bind('admin', o.adminSocket, () => listenUnix(adminUnix, o.adminSocket));
  adminSocketIno = statSync(o.adminSocket).ino;
  if (o.adminPort !== 0) {
    const adminTcp = createHttpServer(admin.handler);
    http.push(adminTcp);
    nodeAnswering.push(adminTcp);
    await bind('admin', hostPort('127.0.0.1', o.adminPort), () => listenTcp(adminTcp, '127.0.0.1', o.adminPort));
  }
  if (o.readinessPort !== 0) {
    for (const ip of [o.nodeIp4, o.nodeIp6].filter(present)) {
      const ready = createHttpServer(readinessHandler(store, extras));
      http.push(ready);
      nodeAnswering.push(ready);
      await bind('readiness', hostPort(ip, o.readinessPort), () => listenTcp(ready, ip, o.readinessPort));
    }
  }

  if (o.metricsPort !== 0) {
    for (const ip of [o.nodeIp4, o.nodeIp6].filter(present)) {
      const server = createHttpServer((req, res) => {
        if (req.method !== 'GET' || req.url !== '/metrics') return void res.writeHead(404).end();
        void metrics.text().then((text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text));
      });
      http.push(server);
      nodeAnswering.push(server);
      await bind('metrics', hostPort(ip, o.metricsPort), () => listenTcp(server, ip, o.metricsPort));
    }
  }

  const handover = setInterval(() => {
    if (!superseded()) return;
    clearInterval(handover);
    log.info('superseded', { adminSocket: o.adminSocket, closing: nodeAnswering.length });
    for (const s of nodeAnswering) {
      s.close();
      s.closeIdleConnections();
    }
  }, SUPERSEDED_CHECK_MS).unref();

  const inbound = new InboundServer({ node: o.node, store, flows, log, sourceAddress, policy, metrics, limits, ...(identity ? { identity } : {}) });
  let stopping = false;
  // Traffic listeners open once the agent's state is held: until then a
  // rolling update's old ztunnel, on the same ports, takes every connection,
  // and a lone ztunnel could only refuse them anyway.
  const listeningForTraffic = firstState.then(async () => {
    for (const ip of [o.nodeIp4, o.nodeIp6].filter(present)) {
      if (stopping) return;
      await bind('inbound', hostPort(ip, o.hbonePort), () => inbound.listen(ip, o.hbonePort));
    }
    for (const { ip, server } of capture) {
      if (stopping) return;
      const a = await bind('outbound', hostPort(ip, o.outboundPort), () => listenTcp(server, ip, o.outboundPort));
      ownAddresses.add(hostPort(a.address, a.port));
    }
    listening = true;
    if (o.listeningFile && !stopping) await writeFile(o.listeningFile, '');
  });

  return {
    store,
    flows,
    listeningForTraffic,
    async shutdown(drainMs) {
      stopping = true;
      clearInterval(handover);
      if (o.listeningFile) await rm(o.listeningFile, { force: true });
      log.info('shutting_down', { openFlows: flows.openCount, drainMs });
      const deadline = Date.now() + drainMs;
      // Capture sends pods' new connections here until the agent lets go of
      // this ztunnel; an uninstalling agent first removes capture, so new
      // connections go direct instead of meeting a closed listener.
      await control.agentsGone(Math.min(drainMs, AGENT_RELEASE_MAX_MS));
      const capturing = Promise.all(capture.map((c) => closeServer(c.server)));
      // Other nodes' ztunnels may still tunnel here: an uninstall takes the
      // nodes down one by one, and theirs capture until their own agents let
      // go. Unless a new ztunnel took this node over (a rolling update), the
      // inbound listener stays until no flow has been open for a while.
      let quietSince = Date.now();
      while (!superseded() && Date.now() < deadline && Date.now() - quietSince < INBOUND_QUIET_MS) {
        if (flows.openCount > 0) quietSince = Date.now();
        await sleep(100);
      }
      const stopped = Promise.all([capturing, inbound.close()]);
      while (flows.openCount > 0 && Date.now() < deadline) await sleep(100);
      if (flows.openCount > 0) log.warn('drain_timeout', { openFlows: flows.openCount });
      flows.abortAll();
      inbound.abort();
      pool.close();
      identity?.certs.close();
      await stopped;
      admin.endStreams();
      for (const s of http) s.closeIdleConnections();
      await Promise.all([control.close(), ...http.map(closeServer)]);
      log.info('stopped');
    },
  };
}

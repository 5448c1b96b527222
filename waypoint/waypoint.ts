// One waypoint: its view of the cluster (config-source.ts), the router and
// its clusters over hop-2 tunnels under the waypoint's own identity, the
// HBONE listener serving hop 1, telemetry (metrics, access log, recent
// requests), and the readiness, admin and metrics listeners, wired together.
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ListenAddress } from '../lib/config/waypoint.ts';
import type { Clock } from '../lib/core/clock.ts';
import { ConfigError } from '../lib/core/errors.ts';
import { createServer as createHttpServer } from '../lib/core/http-server.ts';
import { hostPort } from '../lib/core/ip.ts';
import { closeServer, listenTcp } from '../lib/core/listen.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ClusterSource } from '../lib/cluster/sources/source.ts';
import { TunnelPool } from '../lib/hbone/tunnel-pool.ts';
import { formatSpiffeId, spiffeId, type SpiffeId } from '../lib/identity/spiffe.ts';
import type { CertificateStore } from '../lib/identity/store.ts';
import type { Random } from '../lib/l7/index.ts';
import { waypointKey, type WaypointRef } from '../lib/mesh/model.ts';
import { adminHandler, metricsHandler, readinessHandler, type Readiness } from './admin.ts';
import { ClusterSet } from './clusters.ts';
import { WaypointConfigSource } from './config-source.ts';
import type { WaypointDestination } from './destination.ts';
import { WaypointDownstream } from './downstream/downstream.ts';
import type { DownstreamLimits } from './downstream/limits.ts';
import { waypointLookup } from './lookup.ts';
import { Mirrors } from './mirrors.ts';
import { WaypointRouter } from './router.ts';
import { AccessLog } from './telemetry/access-log.ts';
import { WaypointMetrics } from './telemetry/metrics.ts';
import { RecentRequests } from './telemetry/recent-requests.ts';
import { RequestTelemetry } from './telemetry/request-telemetry.ts';
import { TunnelConnector } from './upstream/tunnel-connector.ts';

export interface WaypointOptions {
  gateway: WaypointRef;
  trustDomain: string;
  /** The pod's ServiceAccount: the waypoint's identity is `<gateway namespace>/<serviceAccount>`. */
  serviceAccount: string;
  /** Where its certificate comes from; absent: cleartext HBONE both ways (tests only). */
  certs?: CertificateStore;
  listen: ListenAddress;
  /** GET /healthz/ready alone, for the kubelet. Port 0 of this, admin or metrics: an ephemeral port (tests); undefined: off. */
  readiness?: ListenAddress;
  /** The admin API (recent requests, config, clusters, certs): what it shows stays on loopback unless the operator says otherwise. */
  admin?: ListenAddress;
  metrics?: ListenAddress;
  /** The nodes' ztunnels' HBONE port (hop 2). */
  hbonePort: number;
  log: Logger;
  /** One JSON line per request; default stdout. */
  accessLog?: Writable;
  /** Default: a KubeSource over WAYPOINT_KINDS with `kubeconfig` (or in-cluster). */
  source?: ClusterSource;
  kubeconfig?: string;
  /** Prefix of recent-request ids; default the host name (the pod's). */
  name?: string;
  /** The router's clock (delays, timeouts, backoff) and chance; defaults real. */
  clock?: Clock;
  random?: Random;
  limits?: Partial<DownstreamLimits>;
  /** The cluster source hit something retrying cannot fix (a bad kubeconfig). */
  onFatal?(error: unknown): void;
}

export interface WaypointPorts {
  hbone: number;
  readiness?: number;
  admin?: number;
  metrics?: number;
}

export interface Waypoint {
  readonly id: SpiffeId;
  readonly ports: WaypointPorts;
  readonly router: WaypointRouter;
  readonly source: WaypointConfigSource;
  readonly metrics: WaypointMetrics;
  readonly recent: RecentRequests;
  readonly mirrors: Mirrors;
  readonly clusters: ClusterSet;
  readiness(): Readiness;
  /** Stops taking tunnels, lets open requests finish for up to `drainMs`, then closes everything. */
  shutdown(drainMs: number): Promise<void>;
}

const AFNO = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL']);

/** Listens on `address`; `[::]` where the node has no IPv6 falls back to 0.0.0.0. Names the listener in the error an operator sees. */
async function bind(what: string, address: ListenAddress, listen: (host: string, port: number) => Promise<AddressInfo>, log: Logger): Promise<AddressInfo> {
  try {
    const a = await listen(address.host, address.port);
    log.info('listening', { what, address: hostPort(a.address, a.port) });
    return a;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (address.host === '::' && AFNO.has(code)) return bind(what, { host: '0.0.0.0', port: address.port }, listen, log);
    throw new ConfigError(`cannot listen for ${what} on ${hostPort(address.host, address.port)}: ${(err as Error).message}`);
  }
}

export async function startWaypoint(o: WaypointOptions): Promise<Waypoint> {
  const { log, certs } = o;
  const id = spiffeId(o.gateway.namespace, o.serviceAccount, o.trustDomain);
  const metrics = new WaypointMetrics();
  const recent = new RecentRequests(o.name ?? hostname());
  const telemetry = new RequestTelemetry({ metrics, recent, log: new AccessLog(o.accessLog ?? process.stdout, { onDropped: () => metrics.accessLogDropped() }) });
  // Requested now and renewed at half its lifetime by the store, for as long as the waypoint runs.
  certs?.retain([id]);
  if (!certs) log.warn('plaintext_tunnels', { message: 'no CA: HBONE to and from the waypoint is cleartext HTTP/2' });
  const pool = new TunnelPool({ port: o.hbonePort, log });
  const connector = new TunnelConnector({ pool, ...(certs ? { identity: { self: id, certs } } : {}) });
  const clusters = new ClusterSet({ connector, ...(o.clock ? { clock: o.clock } : {}) });
  const mirrors = new Mirrors({ clusters, log, ...(o.clock ? { clock: o.clock } : {}) });
  const router = new WaypointRouter({ clusters, connector, mirrors, metrics, log, ...(o.clock ? { clock: o.clock } : {}), ...(o.random ? { random: o.random } : {}) });
  const source = new WaypointConfigSource({
    self: { gateway: o.gateway, trustDomain: o.trustDomain },
    log,
    ...(o.source ? { source: o.source } : {}),
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    onConfig: (config) => router.setConfig(config),
  });
  const downstream = new WaypointDownstream<WaypointDestination>({
    ...(certs ? { identity: { trustDomain: o.trustDomain, certs, id } } : {}),
    ...(o.limits ? { limits: o.limits } : {}),
    log,
    lookup: waypointLookup(() => router.config),
    handlers: router.handlers,
    events: metrics,
    onRequest: telemetry.record,
  });
  let draining = false;
  const readiness = (): Readiness => {
    const waiting: string[] = [];
    if (draining) waiting.push('shutting down');
    if (certs && !certs.secureContext(id)) waiting.push(`its certificate for ${formatSpiffeId(id)} is not issued yet; check that the CA is reachable and accepts the pod's token`);
    if (!source.synced) waiting.push('the cluster has not been read yet; check the waypoint\'s access to the Kubernetes API');
    else if (!source.config?.gateway) waiting.push(`its Gateway ${waypointKey(o.gateway)} is not in the cluster (missing, not of class istio-waypoint or meshlet-waypoint, or rejected; see /config)`);
    return { ready: waiting.length === 0, waiting };
  };

  const servers: HttpServer[] = [];
  const admin = adminHandler({ recent, config: () => source.status(), clusters: () => clusters.stats(), ...(certs ? { certs: () => certs.list() } : {}) });
  const ports: WaypointPorts = { hbone: 0 };
  try {
    ports.hbone = (await bind('hbone', o.listen, (host, port) => downstream.listen(host, port), log)).port;
    if (o.readiness) {
      const server = createHttpServer(readinessHandler(readiness));
      servers.push(server);
      ports.readiness = (await bind('readiness', o.readiness, (host, port) => listenTcp(server, host, port), log)).port;
    }
    if (o.admin) {
      const server = createHttpServer((req, res) => admin.handle(req, res));
      servers.push(server);
      ports.admin = (await bind('admin', o.admin, (host, port) => listenTcp(server, host, port), log)).port;
    }
    if (o.metrics) {
      const server = createHttpServer(metricsHandler(() => metrics.text(), metrics.registry.contentType));
      servers.push(server);
      ports.metrics = (await bind('metrics', o.metrics, (host, port) => listenTcp(server, host, port), log)).port;
    }
  } catch (err) {
    // Nothing half-started stays behind: what listened is closed.
    downstream.abort();
    await downstream.close();
    await Promise.all(servers.filter((s) => s.listening).map(closeServer));
    pool.close();
    throw err;
  }
  source.start().catch((error: unknown) => {
    log.error('cluster_source_failed', { error });
    o.onFatal?.(error);
  });

  return {
    id,
    ports,
    router,
    source,
    metrics,
    recent,
    mirrors,
    clusters,
    readiness,
    async shutdown(drainMs) {
      draining = true;
      log.info('shutting_down', { sessions: downstream.sessionCount, drainMs });
      const closing = downstream.close();
      const deadline = Date.now() + drainMs;
      while (downstream.sessionCount > 0 && Date.now() < deadline) await sleep(100);
      downstream.abort();
      await closing;
      telemetry.flush();
      source.stop();
      admin.endStreams();
      await clusters.close();
      pool.close();
      certs?.close();
      for (const s of servers) s.closeIdleConnections();
      await Promise.all(servers.map(closeServer));
      log.info('stopped');
    },
  };
}

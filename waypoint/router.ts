// The waypoint's per-request pipeline, in Envoy's filter order for an Istio
// waypoint: the path normalised (request-facts.ts), L7 authorization (a
// denial is 403 `RBAC: access denied`), route selection (no route: 404 NR;
// a redirect or direct response is answered here), faults (a delay, DI; an
// abort, FI), the route's rewrite and request header operations, then the
// cluster (forward.ts: retries, timeouts, response header operations) while
// mirrors get their copies on the side. WebSocket upgrades take the same
// path up to the cluster (upgrade.ts); TCP-family tunnels are carried at L4
// (tcp-proxy.ts). Requests read the config current when they start; a new
// one applies to the next request.
import { realClock, type Clock } from '../lib/core/clock.ts';
import type { Logger } from '../lib/core/log.ts';
import {
  applyHeaderOps, applyRewrite, defaultRetryPolicy, selectRoute, shadowAuthority,
  type L7Request, type Random, type RouteMatchResult, type RouteSelection,
} from '../lib/l7/index.ts';
import type { ClusterLookup, ClusterSet } from './clusters.ts';
import type { WaypointConfig } from './config.ts';
import type { WaypointDestination, WorkloadDestination } from './destination.ts';
import type { DownstreamHandlers, UpgradeExchange } from './downstream/downstream.ts';
import type { HttpExchange } from './downstream/exchange.ts';
import { sendLocalReply } from './downstream/local-reply.ts';
import { forward } from './forward.ts';
import type { Mirrors } from './mirrors.ts';
import { DEFAULT_MAX_BUFFERED_BODY_BYTES, RequestBody } from './request-body.ts';
import { balanceViewOf, l7RequestOf, upstreamHeadersOf } from './request-facts.ts';
import { proxyTcp } from './tcp-proxy.ts';
import type { WaypointMetrics } from './telemetry/metrics.ts';
import { sleep } from './timers.ts';
import { forwardUpgrade } from './upgrade.ts';
import type { TunnelConnector } from './upstream/tunnel-connector.ts';

export interface RouterOptions {
  clusters: ClusterSet;
  connector: TunnelConnector;
  mirrors: Mirrors;
  /** Fault delays, timeouts and retry backoff. */
  clock?: Clock;
  /** Routing's chances, drawn in selectRoute's order: fault delay, fault abort, backend, mirrors. */
  random?: Random;
  /** The retry backoff's jitter. */
  backoffRandom?: Random;
  /** Request body bytes kept for retries and mirrors (request-body.ts). */
  maxBufferedBodyBytes?: number;
  /** For TCP passthrough's metrics. */
  metrics?: WaypointMetrics;
  log: Logger;
}

type Forwarding = Extract<RouteMatchResult['action'], { kind: 'forward' }>;

/** A request the pipeline has routed to a cluster (everything else it has answered). */
interface Routed {
  config: WaypointConfig;
  l7: L7Request;
  selection: RouteMatchResult;
  action: Forwarding;
  target: Extract<ClusterLookup, { ok: true }>;
}

/** Pod-IP traffic names no Service, so no route applies: it goes to the pod, with Istio's default retries. */
function workloadRoute(d: WorkloadDestination): RouteMatchResult {
  return {
    kind: 'route',
    route: { kind: 'default', rule: 0, match: 0, name: 'default' },
    action: { kind: 'forward', backend: { host: d.ip, port: d.port.port }, retry: defaultRetryPolicy(), mirrors: [] },
    fault: {},
    requestHeaders: [],
    responseHeaders: [],
  };
}

export class WaypointRouter {
  readonly #o: RouterOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  #config: WaypointConfig | undefined;

  readonly handlers: DownstreamHandlers<WaypointDestination> = {
    http: (exchange) => this.#http(exchange),
    upgrade: (exchange) => this.#upgrade(exchange),
    tcp: (connection) => proxyTcp({ config: this.#config, clusters: this.#o.clusters, connector: this.#o.connector, log: this.#o.log, ...(this.#o.metrics ? { metrics: this.#o.metrics } : {}) }, connection),
  };

  constructor(options: RouterOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#random = options.random ?? Math.random;
  }

  get config(): WaypointConfig | undefined {
    return this.#config;
  }

  /** A new snapshot: the next requests route by it; the clusters take its endpoints and policies now. */
  setConfig(config: WaypointConfig): void {
    this.#config = config;
    this.#o.clusters.update(config);
  }

  async #http(exchange: HttpExchange<WaypointDestination>): Promise<void> {
    const routed = await this.#route(exchange);
    if (!routed) return;
    const { config, l7, selection, action, target } = routed;
    const { request } = exchange;
    const { path, authority } = applyRewrite(l7, action.rewrite);
    const headers = applyHeaderOps(upstreamHeadersOf(exchange, authority), selection.requestHeaders);
    const body = request.hasBody ? new RequestBody(request.body, this.#o.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED_BODY_BYTES) : undefined;
    const balance = balanceViewOf(exchange);
    const timeoutMs = action.timeoutMs;
    // Started first: the primary takes the body before any mirror waits for it.
    const primary = forward(
      { exchange, body, balance, clock: this.#clock, random: this.#o.backoffRandom ?? Math.random, trustDomain: config.self.trustDomain },
      { target, method: request.method, path, headers, ...(timeoutMs !== undefined ? { timeoutMs } : {}), retry: action.retry, responseHeaders: selection.responseHeaders },
    );
    if (action.mirrors.length > 0) {
      const host = headers.host;
      const shadowHeaders = { ...headers, host: shadowAuthority(Array.isArray(host) ? (host[0] ?? authority) : (host ?? authority)) };
      for (const mirror of action.mirrors) {
        this.#o.mirrors.send(config, mirror, balance, { method: request.method, path, headers: shadowHeaders, body, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
      }
    }
    await primary;
  }

  async #upgrade(exchange: UpgradeExchange<WaypointDestination>): Promise<void> {
    const routed = await this.#route(exchange);
    if (!routed) return;
    const { config, l7, selection, action, target } = routed;
    const { path, authority } = applyRewrite(l7, action.rewrite);
    await forwardUpgrade(
      { exchange, connector: this.#o.connector, balance: balanceViewOf(exchange), trustDomain: config.self.trustDomain },
      { target, method: exchange.request.method, path, headers: applyHeaderOps(upstreamHeadersOf(exchange, authority), selection.requestHeaders), responseHeaders: selection.responseHeaders },
    );
  }

  /** Authorization, route, faults and local answers; what is left to forward, or undefined once answered. */
  async #route(exchange: HttpExchange<WaypointDestination>): Promise<Routed | undefined> {
    const config = this.#config;
    const { info } = exchange;
    const destination = exchange.tunnel.destination;
    if (!config) {
      sendLocalReply(exchange, { kind: 'no_healthy_upstream' });
      return undefined;
    }
    const l7 = l7RequestOf(exchange);
    const decision = config.authz.decide(l7);
    if (!decision.allowed) {
      sendLocalReply(exchange, { kind: 'rbac_denied', ...(decision.policy ? { policy: decision.policy } : {}) });
      return undefined;
    }
    const selection: RouteSelection = destination.kind === 'workload' ? workloadRoute(destination) : selectRoute(config.routes, l7, this.#random);
    if (selection.kind === 'no_route') {
      sendLocalReply(exchange, { kind: 'no_route' });
      return undefined;
    }
    info.routeName = selection.route.name;
    const { fault, action } = selection;
    if (fault.delayMs !== undefined && fault.delayMs > 0) {
      info.flag('DI');
      if (!(await sleep(this.#clock, fault.delayMs, exchange.signal))) return undefined;
    }
    if (fault.abort) {
      sendLocalReply(exchange, 'httpStatus' in fault.abort ? { kind: 'fault_abort', status: fault.abort.httpStatus } : { kind: 'fault_abort', status: 200, grpcStatus: fault.abort.grpcStatus });
      return undefined;
    }
    if (action.kind === 'redirect') {
      sendLocalReply(exchange, { kind: 'direct_response', status: action.status, headers: applyHeaderOps({ location: action.location }, selection.responseHeaders) });
      return undefined;
    }
    if (action.kind === 'direct') {
      const { status, body, grpcStatus } = action.response;
      sendLocalReply(exchange, {
        kind: 'direct_response', status, headers: applyHeaderOps({}, selection.responseHeaders),
        ...(body !== undefined ? { body } : {}), ...(grpcStatus !== undefined ? { grpcStatus } : {}),
      });
      return undefined;
    }
    const target = destination.kind === 'workload' ? this.#o.clusters.forWorkload(config, destination) : this.#o.clusters.forBackend(config, action.backend);
    if (!target.ok) {
      this.#o.log.warn('no_cluster', { route: selection.route.name, backend: `${action.backend.host}:${action.backend.port}${action.backend.subset ? `/${action.backend.subset}` : ''}`, reason: target.reason });
      sendLocalReply(exchange, { kind: 'no_healthy_upstream' });
      return undefined;
    }
    return { config, l7, selection, action, target };
  }
}

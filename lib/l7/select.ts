// selectRoute: the rule a request takes and everything it decides for that
// request. Whatever is left to chance is drawn from the injected `random`
// (values in [0, 1)), always in this order, so a seeded random replays the
// same decisions: fault delay, fault abort, backend, then each mirror.
import { FAULT_ABORT_BODY } from './local-replies.ts';
import { redirectLocation, type BoundRewrite } from './rewrite.ts';
import { isGrpc, type L7Request } from './request.ts';
import { PreparedRequest } from './match.ts';
import { defaultRetryPolicy } from './retry.ts';
import type { CompiledEntry, HostRoutes, RouteRef, RouteTable } from './route-table.ts';
import type { Backend, DirectResponse, HeaderOps, RetryPolicy, RouteDestination } from './types.ts';

export type Random = () => number;

/** A backend with its port settled. */
export interface ResolvedBackend {
  host: string;
  port: number;
  subset?: string;
}

export type SelectedAction =
  | {
      kind: 'forward';
      backend: ResolvedBackend;
      timeoutMs?: number;
      retry: RetryPolicy | null;
      /** Apply with applyRewrite (rewrite.ts). */
      rewrite?: BoundRewrite;
      /** The mirrors this request goes to (already sampled): fire and forget, Host with `-shadow`. */
      mirrors: ResolvedBackend[];
    }
  | { kind: 'redirect'; status: number; location: string }
  /** `reason` is set when the answer stands in for a backend Gateway API calls invalid. */
  | { kind: 'direct'; response: DirectResponse; reason?: string };

export interface FaultDecision {
  delayMs?: number;
  /** Answer at once with this status (and FAULT_ABORT_BODY), or this gRPC status. */
  abort?: { httpStatus: number; body: string } | { grpcStatus: number };
}

export interface RouteMatchResult {
  kind: 'route';
  route: RouteRef;
  action: SelectedAction;
  /** The faults that fire for this request. */
  fault: FaultDecision;
  /** Apply in order with applyHeaderOps (header-ops.ts). */
  requestHeaders: HeaderOps[];
  responseHeaders: HeaderOps[];
}

/** Envoy's 404 with response flag NR. */
export interface NoRouteResult {
  kind: 'no_route';
  reason: string;
}

export type RouteSelection = RouteMatchResult | NoRouteResult;

const fires = (percent: number, random: Random): boolean => random() * 100 < percent;

export function selectRoute(table: RouteTable, request: L7Request, random: Random = Math.random): RouteSelection {
  const { host, port } = request.service;
  const routes = table.routesFor(host);
  const prepared = new PreparedRequest(request);
  const candidates = candidatesFor(routes, prepared, port, isGrpc(request));
  if (candidates === null) return defaultRoute(request);
  for (const entry of candidates) {
    if ((entry.port === undefined || entry.port === port) && entry.test(prepared)) return resolve(entry, table, request, random);
  }
  return { kind: 'no_route', reason: `no rule for ${host}:${port} matches ${request.method} ${request.path}` };
}

/** The entries a request is matched against, in order; null when no rule applies to the service at all. */
function candidatesFor(routes: HostRoutes, r: PreparedRequest, port: number, grpc: boolean): CompiledEntry[] | null {
  const onPort = (entries: CompiledEntry[]) => entries.some((e) => e.port === undefined || e.port === port);
  const ns = r.sourceNamespace;
  const groups = [ns === null ? undefined : routes.consumers.get(ns), routes.producer, routes.gateway];
  for (const g of groups) {
    if (!g || !(onPort(g.http) || onPort(g.grpc))) continue;
    if (grpc && onPort(g.grpc)) return g.grpc;
    return onPort(g.http) ? g.http : g.grpc;
  }
  // As Istio builds a waypoint's routes per port: VirtualService rules that cannot match this port leave it to the default route.
  return routes.virtual.some((e) => e.match?.port === undefined || e.match.port === port) ? routes.virtual : null;
}

/** No VirtualService or route: to the service itself, with Istio's default retries. */
function defaultRoute(request: L7Request): RouteMatchResult {
  return {
    kind: 'route',
    route: { kind: 'default', rule: 0, match: 0, name: 'default' },
    action: { kind: 'forward', backend: { host: request.service.host, port: request.service.port }, retry: defaultRetryPolicy(), mirrors: [] },
    fault: {},
    requestHeaders: [],
    responseHeaders: [],
  };
}

function resolve(entry: CompiledEntry, table: RouteTable, request: L7Request, random: Random): RouteMatchResult {
  const { rule } = entry;
  const fault: FaultDecision = {};
  const f = rule.fault;
  if (f?.delay && fires(f.delay.percent, random)) fault.delayMs = f.delay.fixedDelayMs;
  if (f?.abort && fires(f.abort.percent, random)) {
    fault.abort = 'httpStatus' in f.abort ? { httpStatus: f.abort.httpStatus, body: FAULT_ABORT_BODY } : { grpcStatus: f.abort.grpcStatus };
  }
  const base = { kind: 'route' as const, route: entry.ref, fault };
  const a = rule.action;
  if (a.kind === 'redirect') {
    return { ...base, action: { kind: 'redirect', status: a.redirect.status, location: redirectLocation(request, entry.redirect!) }, requestHeaders: [], responseHeaders: [rule.headers.response] };
  }
  if (a.kind === 'direct') {
    return { ...base, action: { kind: 'direct', response: a.response }, requestHeaders: [], responseHeaders: [rule.headers.response] };
  }
  const chosen = pickDestination(a.destinations, random);
  const mirrors = a.mirrors.filter((m) => fires(m.percent, random)).map((m) => resolveBackend(m.backend, table, request));
  if (!chosen || 'invalid' in chosen) {
    const reason = chosen ? chosen.invalid : 'the rule has no backend with a weight';
    return { ...base, action: { kind: 'direct', response: { status: 500 }, reason }, requestHeaders: [], responseHeaders: [rule.headers.response] };
  }
  return {
    ...base,
    action: {
      kind: 'forward',
      backend: resolveBackend(chosen.backend, table, request),
      ...(a.timeoutMs !== undefined ? { timeoutMs: a.timeoutMs } : {}),
      retry: a.retry,
      ...(entry.rewrite ? { rewrite: entry.rewrite } : {}),
      mirrors,
    },
    // Most specific first, so the rule's own value wins where both set a header.
    requestHeaders: [chosen.headers.request, rule.headers.request],
    responseHeaders: [chosen.headers.response, rule.headers.response],
  };
}

/** weight/sum of weights, drawn with one random number; null when every weight is 0. */
export function pickDestination(destinations: readonly RouteDestination[], random: Random): RouteDestination | null {
  let total = 0;
  for (const d of destinations) total += d.weight;
  if (total <= 0) return null;
  let point = random() * total;
  for (const d of destinations) {
    if (d.weight <= 0) continue;
    if (point < d.weight) return d;
    point -= d.weight;
  }
  // Rounding at the very top of the range: the last one with a weight.
  return [...destinations].reverse().find((d) => d.weight > 0) ?? null;
}

/** A destination without a port goes to the request's port on its own service, else to the service's only port, else the request's. */
function resolveBackend(b: Backend, table: RouteTable, request: L7Request): ResolvedBackend {
  let port = b.port;
  if (port === undefined && b.host !== request.service.host) {
    const ports = table.options.servicePorts?.(b.host);
    if (ports?.length === 1) port = ports[0];
  }
  return { host: b.host, port: port ?? request.service.port, ...(b.subset !== undefined ? { subset: b.subset } : {}) };
}

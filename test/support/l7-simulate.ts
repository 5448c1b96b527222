// Runs an L7 case (l7-cases.ts) through the route side alone: the resources
// converted and compiled as the waypoint will, the request authorized,
// routed, and its answer worked out as the waypoint would serve it. The
// unit suite compares that with the case's expectation; an end-to-end suite
// compares what curl sees through a real waypoint with the same expectation.
import type { KubeObject } from '../../lib/cluster/objects.ts';
import {
  applyHeaderOps, applyRewrite, convertL7Objects, DestinationRuleIndex, evaluateL7Authz, L7AuthzSet, normalizePath, RBAC_DENIED_BODY,
  RBAC_DENIED_STATUS, RouteTable, selectRoute, serviceHost, serviceOfHost, type HeaderMap, type L7Rejection, type L7Request, type Random,
  type RetryPolicy,
} from '../../lib/l7/index.ts';
import { BACKEND_HEADER, CASE_NAMESPACE, CLIENT, SERVICES, WAYPOINT, type CaseRequest } from './l7-cases.ts';

export interface Waypoint {
  table: RouteTable;
  authz: L7AuthzSet;
  destinationRules: DestinationRuleIndex;
  rejected: L7Rejection[];
}

export function waypointFor(resources: readonly KubeObject[]): Waypoint {
  const { config, rejected } = convertL7Objects(resources, { rootNamespace: 'meshlet-system' });
  const ports = (host: string) => {
    const svc = serviceOfHost(host);
    return svc && svc.namespace === CASE_NAMESPACE ? SERVICES[svc.name]?.ports : undefined;
  };
  return {
    table: new RouteTable(config.routes, { waypoint: { namespace: WAYPOINT.namespace, name: WAYPOINT.name }, servicePorts: ports }),
    authz: new L7AuthzSet(config.authorizationPolicies, { waypoint: WAYPOINT }),
    destinationRules: new DestinationRuleIndex(config.destinationRules, { waypointNamespace: WAYPOINT.namespace, rootNamespace: 'meshlet-system' }),
    rejected,
  };
}

const VIPS: Record<string, string> = Object.fromEntries(Object.keys(SERVICES).map((name, i) => [name, `10.96.0.${10 + i}`]));

export function requestOf(c: CaseRequest): L7Request {
  const [ns, sa] = (c.from ?? CLIENT).split('/') as [string, string];
  const svc = SERVICES[c.to];
  if (!svc) throw new Error(`case names an unknown service ${c.to}`);
  const port = c.port ?? svc.ports[0]!;
  const { path, query } = normalizePath(c.path ?? '/');
  const headers: Record<string, string> = { host: `${c.to}.${CASE_NAMESPACE}:${port}` };
  for (const [k, v] of Object.entries(c.headers ?? {})) headers[k.toLowerCase()] = v;
  return {
    method: c.method ?? 'GET',
    service: { host: serviceHost(c.to, CASE_NAMESPACE), port, address: VIPS[c.to]! },
    path,
    query,
    headers,
    source: { ip: c.sourceIp ?? '10.244.1.5', principal: `spiffe://cluster.local/ns/${ns}/sa/${sa}`, namespace: ns },
  };
}

/** What the client gets, or what the backend is asked for. */
export type Outcome =
  | {
      kind: 'forward';
      /** `<service>` or `<service>:<subset>` in the case namespace, else the FQDN. */
      backend: string;
      port: number;
      /** The :path the backend sees, query included. */
      path: string;
      authority: string;
      /** The request headers the backend sees. */
      requestHeaders: HeaderMap;
      /** The response headers the client sees, for a backend answering with BACKEND_HEADER. */
      responseHeaders: HeaderMap;
      timeoutMs: number | null;
      retry: RetryPolicy | null;
      mirrors: string[];
      delayMs: number;
    }
  | { kind: 'status'; status: number; body: string; location?: string; responseHeaders: HeaderMap; reason: string; delayMs: number };

function label(host: string, subset?: string): string {
  const svc = serviceOfHost(host);
  const name = svc && svc.namespace === CASE_NAMESPACE ? svc.name : host;
  return subset === undefined ? name : `${name}:${subset}`;
}

export function outcomeOf(w: Waypoint, request: L7Request, random: Random): Outcome {
  const decision = evaluateL7Authz(w.authz, request);
  if (!decision.allowed) return { kind: 'status', status: RBAC_DENIED_STATUS, body: RBAC_DENIED_BODY, responseHeaders: {}, reason: decision.reason, delayMs: 0 };
  const selection = selectRoute(w.table, request, random);
  if (selection.kind === 'no_route') return { kind: 'status', status: 404, body: '', responseHeaders: {}, reason: selection.reason, delayMs: 0 };
  const delayMs = selection.fault.delayMs ?? 0;
  const abort = selection.fault.abort;
  if (abort) {
    if ('httpStatus' in abort) return { kind: 'status', status: abort.httpStatus, body: abort.body, responseHeaders: {}, reason: 'fault abort', delayMs };
    return { kind: 'status', status: 200, body: '', responseHeaders: { 'grpc-status': String(abort.grpcStatus) }, reason: 'fault abort', delayMs };
  }
  const action = selection.action;
  const responseHeaders = (base: HeaderMap) => applyHeaderOps(base, selection.responseHeaders);
  switch (action.kind) {
    case 'redirect':
      return { kind: 'status', status: action.status, body: '', location: action.location, responseHeaders: responseHeaders({}), reason: 'redirect', delayMs };
    case 'direct': {
      const grpc: HeaderMap = action.response.grpcStatus === undefined ? {} : { 'grpc-status': String(action.response.grpcStatus) };
      return { kind: 'status', status: action.response.status, body: action.response.body ?? '', responseHeaders: responseHeaders(grpc), reason: action.reason ?? 'direct response', delayMs };
    }
    case 'forward': {
      const { path, authority } = applyRewrite(request, action.rewrite);
      const requestHeaders = applyHeaderOps({ ...request.headers, host: authority }, selection.requestHeaders);
      const backend = label(action.backend.host, action.backend.subset);
      return {
        kind: 'forward',
        backend,
        port: action.backend.port,
        path,
        authority: typeof requestHeaders.host === 'string' ? requestHeaders.host : authority,
        requestHeaders,
        responseHeaders: responseHeaders({ [BACKEND_HEADER]: backend }),
        timeoutMs: action.timeoutMs ?? null,
        retry: action.retry,
        mirrors: action.mirrors.map((m) => label(m.host, m.subset)),
        delayMs,
      };
    }
  }
}

/** A small seeded generator (mulberry32): the same seed replays the same draws. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The waypoint's route table: per destination service, the rules that apply,
// compiled once per change. How the resources combine for one service:
//
// - Gateway API routes first. GAMMA's groups, each used alone (GEP-1294):
//   consumer routes (in the client's namespace, attached to a Service in
//   another) for that namespace's clients; else producer routes (in the
//   Service's namespace); else routes attached to the waypoint's Gateway
//   (filtered by their hostnames). Within a group, rules from every route
//   are ordered by the spec's precedence, never by list order; gRPC requests
//   use the group's GRPCRoutes when it has any (the spec forbids merging
//   GRPCRoutes with HTTPRoutes), everything else its HTTPRoutes.
// - VirtualServices only when no Gateway API route applies: Istio says the
//   two should not be mixed in ambient mode, and Gateway API is its
//   recommended API there, so meshlet picks it deterministically and reports
//   the VirtualService as shadowed. VirtualServices apply when they are in
//   the service's namespace or the waypoint's (Istio's waypoint rule) and
//   visible to the waypoint's namespace; rules of several are tried oldest
//   object first, each in list order, the first match wins.
// - Neither: the default route, to the service itself.
// When rules exist but none matches, there is no route (Envoy's 404 NR).
import { DEFAULT_DOMAIN, hostMatches, serviceHost, serviceOfHost } from './hosts.ts';
import { compileRequestMatch, type RequestPredicate } from './match.ts';
import { bindRedirect, bindRewrite, type BoundRedirect, type BoundRewrite } from './rewrite.ts';
import type { ConvertedGatewayRoute, ConvertedRoute, ConvertedVirtualService, RequestMatch, RouteRule } from './types.ts';

export interface RouteTableOptions {
  /** The waypoint's own Gateway: routes attached to it apply to every service it serves. */
  waypoint: { namespace: string; name: string };
  domain?: string;
  /** A service's ports: a destination that names no port goes to the service's only port, as in Istio. */
  servicePorts?: (host: string) => readonly number[] | undefined;
}

/** Which rule a request matched, for access logs and metrics. */
export interface RouteRef {
  kind: 'VirtualService' | 'HTTPRoute' | 'GRPCRoute' | 'default';
  /** `namespace/name`; absent for the default route. */
  object?: string;
  rule: number;
  match: number;
  /** Istio's route name: the rule's name (and the match's), or `<namespace>.<name>.<rule>` for Gateway API routes. */
  name: string;
}

export interface CompiledEntry {
  ref: RouteRef;
  rule: RouteRule;
  /** The condition that selected it; undefined for a rule without matches. */
  match: RequestMatch | undefined;
  /** Attached to this service port only (parentRef.port). */
  port?: number;
  test: RequestPredicate;
  /** The rule's rewrite or redirect, bound to this match (the prefix it replaces). */
  rewrite?: BoundRewrite;
  redirect?: BoundRedirect;
}

interface GatewayGroup {
  http: CompiledEntry[];
  grpc: CompiledEntry[];
}

export interface HostRoutes {
  consumers: ReadonlyMap<string, GatewayGroup>;
  producer: GatewayGroup;
  gateway: GatewayGroup;
  virtual: CompiledEntry[];
}

export interface TableNote {
  object: string;
  message: string;
}

/** The per-host cache holds at most this many hosts; hosts are the services a waypoint serves. */
const MAX_CACHED_HOSTS = 4096;
const HBONE_PORT = 15008;
const WAYPOINT_LISTENER = 'mesh';

interface Attached {
  route: ConvertedGatewayRoute;
  entries: Ranked[];
}

export class RouteTable {
  readonly options: Readonly<RouteTableOptions> & { domain: string };
  readonly notes: readonly TableNote[];
  #virtual: { vs: ConvertedVirtualService; entries: CompiledEntry[] }[];
  /** By service host: routes attached to it, producer and consumer alike. */
  #byService = new Map<string, Attached[]>();
  #gatewayAttached: Attached[] = [];
  #cache = new Map<string, HostRoutes>();

  constructor(routes: readonly ConvertedRoute[], options: RouteTableOptions) {
    this.options = { ...options, domain: options.domain ?? DEFAULT_DOMAIN };
    const notes: TableNote[] = [];
    const wns = options.waypoint.namespace;
    const ordered = [...routes].sort((a, b) => a.createdAt - b.createdAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.#virtual = ordered
      .filter((r): r is ConvertedVirtualService => r.kind === 'VirtualService' && r.rules.length > 0 && (r.exportTo === null || r.exportTo.includes(wns)))
      .map((vs) => ({ vs, entries: virtualEntries(vs) }));
    for (const route of ordered) {
      if (route.kind === 'VirtualService') continue;
      const entries = gatewayEntries(route);
      for (const parent of route.parents) {
        if (parent.kind === 'service') {
          const host = serviceHost(parent.name, parent.namespace, this.options.domain);
          const list = this.#byService.get(host) ?? [];
          list.push({ route, entries: parent.port === undefined ? entries : entries.map((e) => ({ ...e, port: parent.port })) });
          this.#byService.set(host, list);
        } else if (parent.namespace === wns && parent.name === options.waypoint.name && (parent.sectionName ?? WAYPOINT_LISTENER) === WAYPOINT_LISTENER && (parent.port ?? HBONE_PORT) === HBONE_PORT) {
          this.#gatewayAttached.push({ route, entries });
        }
      }
    }
    for (const [host, attached] of this.#byService) {
      const serviceNs = serviceOfHost(host, this.options.domain)?.namespace;
      // Consumer routes alone shadow the VirtualService for their own namespaces' clients only.
      const consumers = attached.some((a) => a.route.namespace === serviceNs) ? [] : [...new Set(attached.map((a) => a.route.namespace))].sort();
      const who = consumers.length === 0 ? '' : ` for clients in ${consumers.join(', ')}`;
      for (const { vs } of this.#virtual) {
        if (this.#virtualApplies(vs, host)) notes.push({ object: `VirtualService ${vs.key}`, message: `shadowed for ${host}${who} by Gateway API routes, which meshlet applies instead (Istio advises against mixing the two in ambient mode)` });
      }
    }
    this.notes = notes;
  }

  /** The compiled rules for one service host. */
  routesFor(host: string): HostRoutes {
    const cached = this.#cache.get(host);
    if (cached) return cached;
    const built = this.#build(host);
    if (this.#cache.size >= MAX_CACHED_HOSTS) this.#cache.clear();
    this.#cache.set(host, built);
    return built;
  }

  #virtualApplies(vs: ConvertedVirtualService, host: string): boolean {
    const serviceNs = serviceOfHost(host, this.options.domain)?.namespace;
    return (vs.namespace === serviceNs || vs.namespace === this.options.waypoint.namespace) && vs.hosts.some((h) => hostMatches(h, host));
  }

  #build(host: string): HostRoutes {
    const serviceNs = serviceOfHost(host, this.options.domain)?.namespace;
    const attached = this.#byService.get(host) ?? [];
    const consumers = new Map<string, Attached[]>();
    const producers: Attached[] = [];
    for (const a of attached) {
      if (a.route.namespace === serviceNs) producers.push(a);
      else consumers.set(a.route.namespace, [...(consumers.get(a.route.namespace) ?? []), a]);
    }
    const onGateway = this.#gatewayAttached.filter((a) => a.route.hostnames.length === 0 || a.route.hostnames.some((h) => hostMatches(h, host)));
    return {
      consumers: new Map([...consumers].map(([ns, list]) => [ns, group(list)])),
      producer: group(producers),
      gateway: group(onGateway),
      virtual: this.#virtual.filter(({ vs }) => this.#virtualApplies(vs, host)).flatMap(({ entries }) => entries),
    };
  }
}

function matchName(rule: RouteRule, match: RequestMatch | undefined): string {
  return [rule.name, match?.name].filter((n) => n !== undefined && n !== '').join('.');
}

/** The parts of an entry that come from the rule and its match alone. */
function compiled(rule: RouteRule, match: RequestMatch | undefined): Pick<CompiledEntry, 'rule' | 'match' | 'test' | 'rewrite' | 'redirect'> {
  const a = rule.action;
  return {
    rule,
    match,
    test: match ? compileRequestMatch(match) : () => true,
    ...(a.kind === 'forward' && a.rewrite ? { rewrite: bindRewrite(a.rewrite, match) } : {}),
    ...(a.kind === 'redirect' ? { redirect: bindRedirect(a.redirect, match) } : {}),
  };
}

function virtualEntries(vs: ConvertedVirtualService): CompiledEntry[] {
  return vs.rules.flatMap((rule, r) => {
    const matches: (RequestMatch | undefined)[] = rule.matches.length > 0 ? rule.matches : [undefined];
    return matches.map((match, m) => ({
      ref: { kind: 'VirtualService' as const, object: vs.key, rule: r, match: m, name: matchName(rule, match) },
      ...compiled(rule, match),
    }));
  });
}

interface Ranked extends CompiledEntry {
  rank: number[];
}

/** Entries with the sort key the spec's precedence gives them (bigger first, then older, then by key). */
function gatewayEntries(route: ConvertedGatewayRoute): Ranked[] {
  return route.rules.flatMap((rule, r) => {
    // A GRPCRoute rule without matches matches every request.
    const matches: (RequestMatch | undefined)[] = rule.matches.length > 0 ? rule.matches : [undefined];
    return matches.map((match, m) => ({
      ref: { kind: route.kind, object: route.key, rule: r, match: m, name: rule.name ?? `${route.namespace}.${route.name}.${r}` },
      ...compiled(rule, match),
      rank: route.kind === 'HTTPRoute' ? httpRank(match) : grpcRank(match),
    }));
  });
}

/** Exact path, longest prefix, method, most headers, most query parameters; regex paths after prefixes, as Istio orders them. */
function httpRank(m: RequestMatch | undefined): number[] {
  const path = m?.path;
  const kind = path === undefined ? 0 : path.kind === 'exact' ? 3 : path.kind === 'regex' ? 1 : 2;
  return [kind, path?.value.length ?? 0, m?.method ? 1 : 0, m?.headers.length ?? 0, m?.queryParams.length ?? 0];
}

/** Characters of the matching service, then of the method, then the number of header matches. */
function grpcRank(m: RequestMatch | undefined): number[] {
  return [m?.grpc?.service?.value.length ?? 0, m?.grpc?.method?.value.length ?? 0, m?.headers.length ?? 0];
}

function byPrecedence(a: { route: ConvertedGatewayRoute; entry: Ranked }, b: { route: ConvertedGatewayRoute; entry: Ranked }): number {
  const ra = a.entry.rank;
  const rb = b.entry.rank;
  for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return rb[i]! - ra[i]!;
  // Then the oldest route, then {namespace}/{name}, then the first rule (and match) in list order.
  return a.route.createdAt - b.route.createdAt
    || (a.route.key < b.route.key ? -1 : a.route.key > b.route.key ? 1 : 0)
    || a.entry.ref.rule - b.entry.ref.rule
    || a.entry.ref.match - b.entry.ref.match;
}

function group(attached: Attached[]): GatewayGroup {
  const sorted = (kind: 'HTTPRoute' | 'GRPCRoute') => attached
    .filter((a) => a.route.kind === kind)
    .flatMap((a) => a.entries.map((entry) => ({ route: a.route, entry })))
    .sort(byPrecedence)
    .map(({ entry }): CompiledEntry => entry);
  return { http: sorted('HTTPRoute'), grpc: sorted('GRPCRoute') };
}

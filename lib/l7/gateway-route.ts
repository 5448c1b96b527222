// gateway.networking.k8s.io HTTPRoute and GRPCRoute → ConvertedGatewayRoute,
// as GAMMA (mesh) routes: attached to a Service (producer or consumer route)
// or to the waypoint's Gateway. Each object is checked on its own and a bad
// one is rejected alone. Semantics follow the v1.6 spec and Istio's
// conversion where the spec leaves a choice (config/kube/gateway/conversion.go).
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import { dnsLabelProblem } from '../cluster/names.ts';
import { metaOf, onlyKeys, record, specOf, type Fail } from '../policy/fields.ts';
import { checkGroupVersion, GATEWAY_GROUP, gatewayDuration, headerName, headerValue, integer, isSet, list, quote, text } from './fields.ts';
import { DEFAULT_DOMAIN, serviceHost } from './hosts.ts';
import { checkRegex } from './regex.ts';
import { gatewayRetry } from './retry.ts';
import {
  noHeaderOps, noHeaderRules, type Backend, type ConvertedGatewayRoute, type HeaderCondition, type HeaderOps, type HeaderRules, type MirrorPolicy,
  type NameMatch, type ParentRef, type PathMatch, type PathRewrite, type QueryCondition, type Redirect, type RequestMatch, type Rewrite,
  type RouteDestination, type RouteRule, type RuleAction, type StringMatch,
} from './types.ts';
import type { RouteConvertOptions } from './virtual-service.ts';

/** The spec's own bounds (its CRD validation), checked again here. */
const MAX_PARENTS = 32;
const MAX_HOSTNAMES = 16;
const MAX_RULES = 16;
const MAX_MATCHES = 64;
const MAX_FILTERS = 16;
const MAX_BACKENDS = 16;
const MAX_HEADERS = 16;

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const REDIRECT_CODES = [301, 302, 303, 307, 308];
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PRECISE_HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;
/** gRPC's UNAVAILABLE: GRPCRoute's answer where HTTPRoute's is 500. */
const GRPC_UNAVAILABLE = 14;

type RouteKind = 'HTTPRoute' | 'GRPCRoute';

interface Context {
  kind: RouteKind;
  namespace: string;
  domain: string;
  fail: Fail;
  warnings: string[];
}

/** Throws InvalidObjectError naming the field and the fix. */
export function convertHTTPRoute(obj: KubeObject, options: RouteConvertOptions = {}): ConvertedGatewayRoute {
  return convertRoute(obj, 'HTTPRoute', ['v1', 'v1beta1'], options);
}

/** Throws InvalidObjectError naming the field and the fix. */
export function convertGRPCRoute(obj: KubeObject, options: RouteConvertOptions = {}): ConvertedGatewayRoute {
  return convertRoute(obj, 'GRPCRoute', ['v1', 'v1alpha2'], options);
}

function convertRoute(obj: KubeObject, kind: RouteKind, versions: string[], options: RouteConvertOptions): ConvertedGatewayRoute {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkGroupVersion(obj, GATEWAY_GROUP, versions, fail);
  const { name, namespace, createdAt } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, ['parentRefs', 'hostnames', 'rules'], 'spec', fail);
  const ctx: Context = { kind, namespace, domain: options.domain ?? DEFAULT_DOMAIN, fail, warnings: [] };
  const parents = list(spec.parentRefs, 'spec.parentRefs', fail, MAX_PARENTS).flatMap((p, i) => parentRef(p, `spec.parentRefs[${i}]`, ctx));
  const hostnames = list(spec.hostnames, 'spec.hostnames', fail, MAX_HOSTNAMES).map((h, i) => {
    const host = text(h, `spec.hostnames[${i}]`, fail, { max: 253 });
    if (!HOSTNAME.test(host)) fail(`spec.hostnames[${i}] ${quote(host)} is not a host name (lower case, an optional leading "*.")`);
    return host;
  });
  const rawRules = list(spec.rules, 'spec.rules', fail, MAX_RULES);
  // The spec's default: one rule matching every request, which has no backend and so answers 500.
  const rules = (rawRules.length > 0 ? rawRules : [{}]).map((r, i) => convertRule(r, `spec.rules[${i}]`, ctx));
  return { kind, key: `${namespace}/${name}`, namespace, name, createdAt, parents, hostnames, rules, warnings: ctx.warnings };
}

/** [] for a parent that is no concern of a mesh (another kind of Gateway parent is still kept; the table picks its own). */
function parentRef(v: unknown, at: string, ctx: Context): ParentRef[] {
  const { fail } = ctx;
  const p = record(v, at, fail);
  onlyKeys(p, ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'], at, fail);
  const group = isSet(p.group) ? text(p.group, `${at}.group`, fail, { empty: true, max: 253 }) : GATEWAY_GROUP;
  const kind = isSet(p.kind) ? text(p.kind, `${at}.kind`, fail, { max: 63 }) : 'Gateway';
  const name = objectName(p.name, `${at}.name`, fail);
  const namespace = isSet(p.namespace) ? namespaceName(p.namespace, `${at}.namespace`, fail) : ctx.namespace;
  const port = isSet(p.port) ? integer(p.port, `${at}.port`, 1, 65535, fail) : undefined;
  if ((group === '' || group === 'core') && kind === 'Service') {
    if (isSet(p.sectionName)) fail(`${at}.sectionName selects a Service port by name, which meshlet does not resolve; set ${at}.port to the port number`);
    return [{ kind: 'service', namespace, name, ...(port !== undefined ? { port } : {}) }];
  }
  if (group === GATEWAY_GROUP && kind === 'Gateway') {
    const sectionName = isSet(p.sectionName) ? text(p.sectionName, `${at}.sectionName`, fail, { max: 253 }) : undefined;
    return [{ kind: 'gateway', namespace, name, ...(sectionName !== undefined ? { sectionName } : {}), ...(port !== undefined ? { port } : {}) }];
  }
  ctx.warnings.push(`${at} is a ${group === '' ? '' : `${group}/`}${kind}, which a waypoint does not route for; meshlet attaches routes to Services and to the waypoint's Gateway`);
  return [];
}

function objectName(v: unknown, at: string, fail: Fail): string {
  const name = text(v, at, fail, { max: 253 });
  if (!PRECISE_HOSTNAME.test(name)) fail(`${at} ${quote(name)} is not a Kubernetes object name`);
  return name;
}

function namespaceName(v: unknown, at: string, fail: Fail): string {
  const problem = dnsLabelProblem(v, at);
  if (problem) fail(problem);
  return v as string;
}

const HTTP_RULE_KEYS = ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry', 'sessionPersistence'];
const GRPC_RULE_KEYS = ['name', 'matches', 'filters', 'backendRefs', 'sessionPersistence'];

function convertRule(v: unknown, at: string, ctx: Context): RouteRule {
  const { fail, kind } = ctx;
  const r = record(v, at, fail);
  onlyKeys(r, kind === 'HTTPRoute' ? HTTP_RULE_KEYS : GRPC_RULE_KEYS, at, fail);
  const name = isSet(r.name) ? objectName(r.name, `${at}.name`, fail) : undefined;
  if (isSet(r.sessionPersistence)) ctx.warnings.push(`${at}.sessionPersistence is not supported: requests are balanced without affinity`);
  const rawMatches = list(r.matches, `${at}.matches`, fail, MAX_MATCHES);
  const matches: RequestMatch[] = kind === 'HTTPRoute'
    ? (rawMatches.length > 0 ? rawMatches : [{}]).map((m, i) => httpMatch(m, `${at}.matches[${i}]`, fail))
    : rawMatches.map((m, i) => grpcMatch(m, `${at}.matches[${i}]`, fail));
  if (name !== undefined) for (const m of matches) m.name = name;

  const filters = filtersOf(r.filters, `${at}.filters`, matches, ctx);
  const headers: HeaderRules = { request: filters.request, response: filters.response };
  // Every field is checked whatever the rule ends up doing.
  const destinations = list(r.backendRefs, `${at}.backendRefs`, fail, MAX_BACKENDS).flatMap((b, i) => backendRef(b, `${at}.backendRefs[${i}]`, ctx));
  let retry = gatewayRetry(r.retry, `${at}.retry`, fail);
  let timeoutMs: number | undefined;
  if (isSet(r.timeouts)) {
    const t = record(r.timeouts, `${at}.timeouts`, fail);
    onlyKeys(t, ['request', 'backendRequest'], `${at}.timeouts`, fail);
    const request = isSet(t.request) ? gatewayDuration(t.request, `${at}.timeouts.request`, fail) : 0;
    const backend = isSet(t.backendRequest) ? gatewayDuration(t.backendRequest, `${at}.timeouts.backendRequest`, fail) : 0;
    if (request > 0 && backend > request) fail(`${at}.timeouts.backendRequest is longer than timeouts.request, which covers every try; shorten it`);
    if (request > 0) timeoutMs = request;
    // Istio's mapping: with a retry stanza it bounds each try, without one it is the route timeout.
    if (backend > 0) {
      if (isSet(r.retry) && retry) retry = { ...retry, perTryTimeoutMs: backend };
      else timeoutMs = backend;
    }
  }

  const done = (action: RuleAction): RouteRule => ({ ...(name !== undefined ? { name } : {}), matches, action, headers });
  if (filters.unenforceable) {
    // The spec: a filter that cannot be applied must not be skipped; the requests it would have processed get an error.
    ctx.warnings.push(`${at} uses ${filters.unenforceable}, which meshlet cannot apply; the rule answers 500 instead of skipping it`);
    return done({ kind: 'direct', response: { status: 500 } });
  }
  if (filters.redirect) return done({ kind: 'redirect', redirect: filters.redirect });
  if (destinations.length === 0) {
    // No backend, or every weight 0: 500 for HTTPRoute, UNAVAILABLE for GRPCRoute.
    return done({ kind: 'direct', response: kind === 'HTTPRoute' ? { status: 500 } : { status: 200, grpcStatus: GRPC_UNAVAILABLE } });
  }
  return done({ kind: 'forward', destinations, ...(timeoutMs !== undefined ? { timeoutMs } : {}), retry, mirrors: filters.mirrors, ...(filters.rewrite ? { rewrite: filters.rewrite } : {}) });
}

function httpMatch(v: unknown, at: string, fail: Fail): RequestMatch {
  const m = record(v, at, fail);
  onlyKeys(m, ['path', 'headers', 'queryParams', 'method'], at, fail);
  const out: RequestMatch = { headers: [], withoutHeaders: [], queryParams: [], path: pathMatch(m.path, `${at}.path`, fail) };
  out.headers = firstByName(list(m.headers, `${at}.headers`, fail, MAX_HEADERS).map((h, i) => headerMatch(h, `${at}.headers[${i}]`, fail)), (n) => n.toLowerCase());
  out.queryParams = firstByName(list(m.queryParams, `${at}.queryParams`, fail, MAX_HEADERS).map((q, i) => queryMatch(q, `${at}.queryParams[${i}]`, fail)), (n) => n);
  if (isSet(m.method)) {
    if (typeof m.method !== 'string' || !HTTP_METHODS.includes(m.method)) fail(`${at}.method ${quote(m.method)} is not one of ${HTTP_METHODS.join(', ')}`);
    out.method = { kind: 'exact', value: m.method as string };
  }
  return out;
}

/** The spec: of entries with equivalent names only the first counts. */
function firstByName<T extends { name: string }>(entries: T[], key: (name: string) => string): T[] {
  const seen = new Set<string>();
  return entries.filter((e) => !seen.has(key(e.name)) && seen.add(key(e.name)));
}

function pathMatch(v: unknown, at: string, fail: Fail): PathMatch {
  const p = isSet(v) ? record(v, at, fail) : {};
  onlyKeys(p, ['type', 'value'], at, fail);
  const type = p.type ?? 'PathPrefix';
  const value = isSet(p.value) ? text(p.value, `${at}.value`, fail, { max: 1024 }) : '/';
  if (type === 'RegularExpression') return { kind: 'regex', value: checkRegex(value, `${at}.value`, fail) };
  if (type !== 'Exact' && type !== 'PathPrefix') return fail(`${at}.type ${quote(type)} is not one of Exact, PathPrefix, RegularExpression`);
  checkPath(value, `${at}.value`, fail);
  if (type === 'Exact') return { kind: 'exact', value };
  return { kind: 'segment_prefix', value: value.replace(/\/+$/, '') };
}

/** The spec's rules for Exact and PathPrefix values (its CRD validation, checked again). */
function checkPath(value: string, at: string, fail: Fail): void {
  if (!value.startsWith('/')) fail(`${at} ${quote(value)} must start with "/"`);
  if (!PATH_CHARS.test(value)) fail(`${at} ${quote(value)} has characters a path cannot hold unescaped`);
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (value.includes(bad)) fail(`${at} ${quote(value)} must not contain ${quote(bad)}`);
  if (value.endsWith('/..') || value.endsWith('/.')) fail(`${at} ${quote(value)} must not end with a dot segment`);
}

function valueMatch(type: unknown, value: string, at: string, fail: Fail): StringMatch {
  const t = type ?? 'Exact';
  if (t === 'Exact') return { kind: 'exact', value };
  if (t === 'RegularExpression') return { kind: 'regex', value: checkRegex(value, `${at}.value`, fail) };
  return fail(`${at}.type ${quote(t)} is not one of Exact, RegularExpression`);
}

function headerMatch(v: unknown, at: string, fail: Fail): HeaderCondition {
  const h = record(v, at, fail);
  onlyKeys(h, ['type', 'name', 'value'], at, fail);
  const value = text(h.value, `${at}.value`, fail, { max: 4096 });
  return { name: headerName(h.name, `${at}.name`, fail), match: valueMatch(h.type, value, at, fail) };
}

function queryMatch(v: unknown, at: string, fail: Fail): QueryCondition {
  const q = record(v, at, fail);
  onlyKeys(q, ['type', 'name', 'value'], at, fail);
  const value = text(q.value, `${at}.value`, fail, { max: 1024 });
  const name = text(q.name, `${at}.name`, fail, { max: 256 });
  return { name, match: valueMatch(q.type, value, at, fail) };
}

const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

function grpcMatch(v: unknown, at: string, fail: Fail): RequestMatch {
  const m = record(v, at, fail);
  onlyKeys(m, ['method', 'headers'], at, fail);
  const out: RequestMatch = { headers: [], withoutHeaders: [], queryParams: [] };
  out.headers = firstByName(list(m.headers, `${at}.headers`, fail, MAX_HEADERS).map((h, i) => headerMatch(h, `${at}.headers[${i}]`, fail)), (n) => n.toLowerCase());
  if (isSet(m.method)) {
    const mm = record(m.method, `${at}.method`, fail);
    onlyKeys(mm, ['type', 'service', 'method'], `${at}.method`, fail);
    const type = mm.type ?? 'Exact';
    if (type !== 'Exact' && type !== 'RegularExpression') fail(`${at}.method.type ${quote(type)} is not one of Exact, RegularExpression`);
    const part = (key: 'service' | 'method', shape: RegExp): NameMatch | undefined => {
      if (!isSet(mm[key]) || mm[key] === '') return undefined;
      const value = text(mm[key], `${at}.method.${key}`, fail, { max: 1024 });
      if (type === 'RegularExpression') return { kind: 'regex', value: checkRegex(value, `${at}.method.${key}`, fail) };
      if (!shape.test(value)) fail(`${at}.method.${key} ${quote(value)} is not a gRPC ${key} name`);
      return { kind: 'exact', value };
    };
    const service = part('service', GRPC_SERVICE);
    const method = part('method', GRPC_METHOD);
    if (!service && !method) fail(`${at}.method must set service or method`);
    out.grpc = { ...(service ? { service } : {}), ...(method ? { method } : {}) };
  }
  return out;
}

interface Filters {
  request: HeaderOps;
  response: HeaderOps;
  redirect?: Redirect;
  rewrite?: Rewrite;
  mirrors: MirrorPolicy[];
  /** A filter meshlet cannot apply, by name. */
  unenforceable?: string;
}

const HTTP_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS', 'ExternalAuth'];
const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'];
const FILTER_FIELDS: Record<string, string> = {
  RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect', URLRewrite: 'urlRewrite', ExtensionRef: 'extensionRef', CORS: 'cors', ExternalAuth: 'externalAuth',
};

function filtersOf(v: unknown, at: string, matches: RequestMatch[], ctx: Context): Filters {
  const { fail } = ctx;
  const out: Filters = { request: noHeaderOps(), response: noHeaderOps(), mirrors: [] };
  const seen = new Set<string>();
  const known = ctx.kind === 'HTTPRoute' ? HTTP_FILTERS : GRPC_FILTERS;
  list(v, at, fail, MAX_FILTERS).forEach((raw, i) => {
    const field = `${at}[${i}]`;
    const f = record(raw, field, fail);
    const type = f.type;
    if (typeof type !== 'string' || !known.includes(type)) return fail(`${field}.type ${quote(type)} is not one of ${known.join(', ')}`);
    const key = FILTER_FIELDS[type]!;
    onlyKeys(f, ['type', key], field, fail);
    if (!isSet(f[key])) fail(`${field} is of type ${type} but does not set ${key}`);
    // Only RequestMirror (and ExtensionRef) may appear more than once.
    if (seen.has(type) && type !== 'RequestMirror' && type !== 'ExtensionRef') fail(`${field} repeats a ${type} filter; a rule takes one`);
    seen.add(type);
    const body = f[key];
    const inner = `${field}.${key}`;
    switch (type) {
      case 'RequestHeaderModifier':
        out.request = headerFilter(body, inner, fail);
        break;
      case 'ResponseHeaderModifier':
        out.response = headerFilter(body, inner, fail);
        break;
      case 'RequestMirror': {
        const mirror = mirrorFilter(body, inner, ctx);
        if (mirror) out.mirrors.push(mirror);
        break;
      }
      case 'RequestRedirect':
        out.redirect = redirectFilter(body, inner, matches, fail);
        break;
      case 'URLRewrite':
        out.rewrite = rewriteFilter(body, inner, matches, fail);
        break;
      case 'CORS':
        fail(`${field}: the CORS filter is not supported by meshlet's waypoint; answer CORS preflights in the application`);
        break;
      case 'ExtensionRef':
      case 'ExternalAuth':
        record(body, inner, fail);
        out.unenforceable ??= `the ${type} filter (${field})`;
        break;
    }
  });
  if (out.redirect && out.rewrite) fail(`${at} combines RequestRedirect and URLRewrite, which the spec forbids on one rule`);
  return out;
}

function headerFilter(v: unknown, at: string, fail: Fail): HeaderOps {
  const o = record(v, at, fail);
  onlyKeys(o, ['set', 'add', 'remove'], at, fail);
  const pairs = (key: 'set' | 'add') => firstByName(list(o[key], `${at}.${key}`, fail, MAX_HEADERS).map((e, i) => {
    const field = `${at}.${key}[${i}]`;
    const h = record(e, field, fail);
    onlyKeys(h, ['name', 'value'], field, fail);
    return { name: headerName(h.name, `${field}.name`, fail), value: headerValue(h.value, `${field}.value`, fail) };
  }), (n) => n);
  const ops: HeaderOps = { set: pairs('set'), add: pairs('add'), remove: list(o.remove, `${at}.remove`, fail, MAX_HEADERS).map((n, i) => headerName(n, `${at}.remove[${i}]`, fail)) };
  // The spec: one action per header name.
  const names = [...ops.set.map((h) => h.name), ...ops.add.map((h) => h.name), ...ops.remove];
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) fail(`${at} acts on header ${quote(twice)} more than once; the spec allows one action per header name`);
  return ops;
}

function pathModifier(v: unknown, at: string, matches: RequestMatch[], fail: Fail): PathRewrite {
  const p = record(v, at, fail);
  onlyKeys(p, ['type', 'replaceFullPath', 'replacePrefixMatch'], at, fail);
  if (p.type === 'ReplaceFullPath') {
    if (isSet(p.replacePrefixMatch)) fail(`${at}.replacePrefixMatch is set but type is ReplaceFullPath`);
    return { kind: 'full', value: text(p.replaceFullPath, `${at}.replaceFullPath`, fail, { empty: true, max: 1024 }) };
  }
  if (p.type === 'ReplacePrefixMatch') {
    if (isSet(p.replaceFullPath)) fail(`${at}.replaceFullPath is set but type is ReplacePrefixMatch`);
    if (matches.some((m) => m.path?.kind !== 'segment_prefix')) fail(`${at}: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match`);
    return { kind: 'replace_segment_prefix', value: text(p.replacePrefixMatch, `${at}.replacePrefixMatch`, fail, { empty: true, max: 1024 }) };
  }
  return fail(`${at}.type ${quote(p.type)} is not one of ReplaceFullPath, ReplacePrefixMatch`);
}

function preciseHostname(v: unknown, at: string, fail: Fail): string {
  const host = text(v, at, fail, { max: 253 });
  if (!PRECISE_HOSTNAME.test(host)) fail(`${at} ${quote(host)} is not a host name`);
  return host;
}

function redirectFilter(v: unknown, at: string, matches: RequestMatch[], fail: Fail): Redirect {
  const o = record(v, at, fail);
  onlyKeys(o, ['scheme', 'hostname', 'path', 'port', 'statusCode'], at, fail);
  const status = isSet(o.statusCode) ? integer(o.statusCode, `${at}.statusCode`, 300, 399, fail) : 302;
  if (!REDIRECT_CODES.includes(status)) fail(`${at}.statusCode ${status} is not one of ${REDIRECT_CODES.join(', ')}`);
  const out: Redirect = { status };
  if (isSet(o.scheme)) {
    if (o.scheme !== 'http' && o.scheme !== 'https') fail(`${at}.scheme ${quote(o.scheme)} is not one of http, https`);
    out.scheme = o.scheme as string;
  }
  if (isSet(o.hostname)) out.authority = preciseHostname(o.hostname, `${at}.hostname`, fail);
  if (isSet(o.path)) out.path = pathModifier(o.path, `${at}.path`, matches, fail);
  // Istio's reading of the spec: an explicit port; else the scheme's default when a scheme is set; else the request's port.
  if (isSet(o.port)) out.port = { kind: 'fixed', port: integer(o.port, `${at}.port`, 1, 65535, fail) };
  else out.port = out.scheme ? { kind: 'protocol_default' } : { kind: 'request' };
  return out;
}

function rewriteFilter(v: unknown, at: string, matches: RequestMatch[], fail: Fail): Rewrite {
  const o = record(v, at, fail);
  onlyKeys(o, ['hostname', 'path'], at, fail);
  const out: Rewrite = {};
  if (isSet(o.hostname)) out.authority = preciseHostname(o.hostname, `${at}.hostname`, fail);
  if (isSet(o.path)) out.path = pathModifier(o.path, `${at}.path`, matches, fail);
  return out;
}

/** null for a mirror to something that is not a Service: dropped, as Istio drops it. */
function mirrorFilter(v: unknown, at: string, ctx: Context): MirrorPolicy | null {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['backendRef', 'percent', 'fraction'], at, fail);
  if (isSet(o.percent) && isSet(o.fraction)) fail(`${at} sets percent and fraction; choose one`);
  let percent = 100;
  if (isSet(o.percent)) percent = integer(o.percent, `${at}.percent`, 0, 100, fail);
  if (isSet(o.fraction)) {
    const f = record(o.fraction, `${at}.fraction`, fail);
    onlyKeys(f, ['numerator', 'denominator'], `${at}.fraction`, fail);
    const denominator = isSet(f.denominator) ? integer(f.denominator, `${at}.fraction.denominator`, 1, 2 ** 31 - 1, fail) : 100;
    const numerator = integer(f.numerator, `${at}.fraction.numerator`, 0, denominator, fail);
    percent = (100 * numerator) / denominator;
  }
  const target = backendTarget(o.backendRef, `${at}.backendRef`, ctx, { weight: false });
  if ('invalid' in target) {
    ctx.warnings.push(`${at} is dropped: ${target.invalid}`);
    return null;
  }
  return { backend: target.backend, percent };
}

function backendRef(v: unknown, at: string, ctx: Context): RouteDestination[] {
  const { fail } = ctx;
  const o = record(v, at, fail);
  const weight = isSet(o.weight) ? integer(o.weight, `${at}.weight`, 0, 1_000_000, fail) : 1;
  const target = backendTarget(o, at, ctx, { weight: true });
  const headers: HeaderRules = noHeaderRules();
  const seen = new Set<string>();
  list(o.filters, `${at}.filters`, fail, MAX_FILTERS).forEach((raw, i) => {
    const field = `${at}.filters[${i}]`;
    const f = record(raw, field, fail);
    if (f.type !== 'RequestHeaderModifier' && f.type !== 'ResponseHeaderModifier') {
      fail(`${field}.type ${quote(f.type)}: a backendRef takes only RequestHeaderModifier and ResponseHeaderModifier filters`);
    }
    if (seen.has(f.type as string)) fail(`${field} repeats a ${String(f.type)} filter`);
    seen.add(f.type as string);
    const key = FILTER_FIELDS[f.type as string]!;
    onlyKeys(f, ['type', key], field, fail);
    if (f.type === 'RequestHeaderModifier') headers.request = headerFilter(f[key], `${field}.${key}`, fail);
    else headers.response = headerFilter(f[key], `${field}.${key}`, fail);
  });
  // A weight of 0 takes no traffic at all.
  if (weight === 0) return [];
  if ('invalid' in target) {
    ctx.warnings.push(`${at}: ${target.invalid}; its share of the traffic is answered with 500`);
    return [{ weight, invalid: target.invalid }];
  }
  return [{ weight, backend: target.backend, headers }];
}

function backendTarget(v: unknown, at: string, ctx: Context, { weight }: { weight: boolean }): { backend: Backend } | { invalid: string } {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['group', 'kind', 'name', 'namespace', 'port', ...(weight ? ['weight', 'filters'] : [])], at, fail);
  const group = isSet(o.group) ? text(o.group, `${at}.group`, fail, { empty: true, max: 253 }) : '';
  const kind = isSet(o.kind) ? text(o.kind, `${at}.kind`, fail, { max: 63 }) : 'Service';
  const name = objectName(o.name, `${at}.name`, fail);
  const namespace = isSet(o.namespace) ? namespaceName(o.namespace, `${at}.namespace`, fail) : ctx.namespace;
  if (!((group === '' || group === 'core') && kind === 'Service')) {
    return { invalid: `${group === '' ? '' : `${group}/`}${kind} ${namespace}/${name} is not a Service, the only backend meshlet routes to` };
  }
  // Istio refuses the rule without it: a Service backend needs its port.
  if (!isSet(o.port)) fail(`${at}.port is required for a Service backend; set the Service port`);
  const port = integer(o.port, `${at}.port`, 1, 65535, fail);
  // In a mesh, routes reach backends in other namespaces without a ReferenceGrant (GEP-1294).
  return { backend: { host: serviceHost(name, namespace, ctx.domain), port } };
}

// networking.istio.io VirtualService → ConvertedVirtualService, for the
// waypoint. Each object is checked on its own and a bad one is rejected alone
// (InvalidObjectError naming the field). Only what applies to waypoints is
// kept: rules bound to the `mesh` gateway, HTTP rules; matches on source
// labels are dropped as Istio's waypoints drop them.
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import { dnsLabelProblem } from '../cluster/names.ts';
import { metaOf, onlyKeys, record, specOf, type Fail } from '../policy/fields.ts';
import { bool, checkGroupVersion, exportToOf, headerName, headerValue, integer, isSet, istioDuration, list, NETWORKING_GROUP, optionalText, percentOf, quote, text } from './fields.ts';
import { DEFAULT_DOMAIN, resolveHost } from './hosts.ts';
import { checkRegex } from './regex.ts';
import { istioRetry } from './retry.ts';
import {
  noHeaderOps, noHeaderRules, type Backend, type ConvertedVirtualService, type DirectResponse, type FaultPolicy, type HeaderCondition,
  type HeaderOps, type HeaderRules, type MirrorPolicy, type QueryCondition, type Redirect, type RequestMatch, type Rewrite, type RouteDestination,
  type RouteRule, type RuleAction, type StringMatch,
} from './types.ts';

export const NETWORKING_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'];

export interface RouteConvertOptions {
  /** The cluster's DNS domain; default cluster.local. */
  domain?: string;
}

/** Bounds on one object: every table meshlet holds is bounded. */
const MAX_RULES = 512;
const MAX_MATCHES = 64;
const MAX_DESTINATIONS = 64;
const MAX_MIRRORS = 16;
const MAX_HEADERS = 64;

const SPEC_KEYS = ['hosts', 'gateways', 'http', 'tls', 'tcp', 'exportTo'];
const RULE_KEYS = ['name', 'match', 'route', 'redirect', 'directResponse', 'delegate', 'rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrors', 'mirrorPercent', 'mirrorPercentage', 'corsPolicy', 'headers'];
const MATCH_KEYS = ['name', 'uri', 'scheme', 'method', 'authority', 'headers', 'port', 'sourceLabels', 'gateways', 'queryParams', 'ignoreUriCase', 'withoutHeaders', 'sourceNamespace', 'statPrefix'];
/** Header keys Istio's header match ignores: they are matched by their own fields. */
const PSEUDO_KEYS = ['uri', 'scheme', 'method', 'authority'];
const MESH_GATEWAY = 'mesh';

interface Context {
  namespace: string;
  domain: string;
  fail: Fail;
  warnings: string[];
}

/** Throws InvalidObjectError naming the field and the fix. */
export function convertVirtualService(obj: KubeObject, options: RouteConvertOptions = {}): ConvertedVirtualService {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkGroupVersion(obj, NETWORKING_GROUP, NETWORKING_VERSIONS, fail);
  const { name, namespace, createdAt } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, SPEC_KEYS, 'spec', fail);
  const ctx: Context = { namespace, domain: options.domain ?? DEFAULT_DOMAIN, fail, warnings: [] };

  const rawHosts = list(spec.hosts, 'spec.hosts', fail, 64);
  if (rawHosts.length === 0) fail('spec.hosts is empty; name the services this VirtualService routes (delegate VirtualServices are not supported)');
  const hosts = [...new Set(rawHosts.map((h, i) => resolveHost(h, `spec.hosts[${i}]`, namespace, ctx.domain, fail, { wildcard: true })))];
  const gateways = list(spec.gateways, 'spec.gateways', fail, 64).map((g, i) => text(g, `spec.gateways[${i}]`, fail));
  const exportTo = exportToOf(spec.exportTo, namespace, fail);

  for (const key of ['tls', 'tcp'] as const) {
    if (list(spec[key], `spec.${key}`, fail).length > 0) ctx.warnings.push(`spec.${key} is not applied: the waypoint routes HTTP here; TCP and TLS traffic goes to the service as it is`);
  }
  const rules: RouteRule[] = [];
  const meshBound = gateways.length === 0 || gateways.includes(MESH_GATEWAY);
  list(spec.http, 'spec.http', fail, MAX_RULES).forEach((raw, i) => {
    const rule = convertRule(raw, `spec.http[${i}]`, ctx);
    if (rule && meshBound) rules.push(rule);
  });
  return { kind: 'VirtualService', key: `${namespace}/${name}`, namespace, name, createdAt, hosts, exportTo, rules, warnings: ctx.warnings };
}

/** null for a rule none of whose matches applies to a waypoint. */
function convertRule(raw: unknown, at: string, ctx: Context): RouteRule | null {
  const { fail } = ctx;
  const r = record(raw, at, fail);
  onlyKeys(r, RULE_KEYS, at, fail);
  if (isSet(r.delegate)) fail(`${at}.delegate is not supported: write the delegate's rules into this VirtualService`);
  if (isSet(r.corsPolicy)) fail(`${at}.corsPolicy is not supported by meshlet's waypoint; answer CORS preflights in the application`);

  const rawMatches = list(r.match, `${at}.match`, fail, MAX_MATCHES);
  const matches: RequestMatch[] = [];
  rawMatches.forEach((m, j) => {
    const match = convertMatch(m, `${at}.match[${j}]`, ctx);
    if (match) matches.push(match);
  });
  const name = optionalText(r.name, `${at}.name`, fail, { max: 253 });
  const headers = headerRules(r.headers, `${at}.headers`, ctx);
  const fault = isSet(r.fault) ? faultOf(r.fault, `${at}.fault`, ctx) : undefined;
  const action = actionOf(r, at, matches, ctx);
  // Checked whole either way; but when every match was for gateways or source labels, the rule must not become a catch-all.
  if (rawMatches.length > 0 && matches.length === 0) return null;
  return { ...(name !== undefined ? { name } : {}), matches, action, headers, ...(fault ? { fault } : {}) };
}

function actionOf(r: Record<string, unknown>, at: string, matches: RequestMatch[], ctx: Context): RuleAction {
  const { fail } = ctx;
  const routes = list(r.route, `${at}.route`, fail, MAX_DESTINATIONS);
  const kinds = [routes.length > 0 && 'route', isSet(r.redirect) && 'redirect', isSet(r.directResponse) && 'directResponse'].filter(Boolean);
  if (kinds.length === 0) fail(`${at} has no action: set route, redirect or directResponse`);
  if (kinds.length > 1) fail(`${at} sets ${kinds.join(' and ')}; a rule takes exactly one of route, redirect and directResponse`);
  if (routes.length === 0) {
    if (isSet(r.rewrite)) fail(`${at}.rewrite applies only to a rule that forwards (route); a redirect says its own uri and authority`);
    for (const key of ['timeout', 'retries', 'mirror', 'mirrors'] as const) {
      if (isSet(r[key])) ctx.warnings.push(`${at}.${key} is ignored: it applies only to a rule that forwards (route)`);
    }
    if (isSet(r.redirect)) return { kind: 'redirect', redirect: redirectOf(r.redirect, `${at}.redirect`, matches, ctx) };
    return { kind: 'direct', response: directResponseOf(r.directResponse, `${at}.directResponse`, fail) };
  }
  const destinations = destinationsOf(routes, `${at}.route`, ctx);
  const timeoutMs = isSet(r.timeout) ? istioDuration(r.timeout, `${at}.timeout`, fail, { min: 0 }) : 0;
  const retry = istioRetry(r.retries, `${at}.retries`, fail, ctx.warnings);
  const mirrors = mirrorsOf(r, at, ctx);
  const rewrite = isSet(r.rewrite) ? rewriteOf(r.rewrite, `${at}.rewrite`, matches, ctx) : undefined;
  return { kind: 'forward', destinations, ...(timeoutMs > 0 ? { timeoutMs } : {}), retry, mirrors, ...(rewrite ? { rewrite } : {}) };
}

/** null for a match that never applies to a waypoint (other gateways, source labels). */
function convertMatch(raw: unknown, at: string, ctx: Context): RequestMatch | null {
  const { fail } = ctx;
  const m = record(raw, at, fail);
  onlyKeys(m, MATCH_KEYS, at, fail);
  const gateways = list(m.gateways, `${at}.gateways`, fail, 64).map((g, i) => text(g, `${at}.gateways[${i}]`, fail));
  const sourceLabels = isSet(m.sourceLabels) ? Object.keys(labelsOf(m.sourceLabels, `${at}.sourceLabels`, fail)).length > 0 : false;
  const out: RequestMatch = { headers: [], withoutHeaders: [], queryParams: [] };
  const name = optionalText(m.name, `${at}.name`, fail, { max: 253 });
  if (name !== undefined) out.name = name;
  if (isSet(m.uri)) {
    const uri = stringMatch(m.uri, `${at}.uri`, fail);
    if (uri.kind !== 'present') out.path = uri;
  }
  if (isSet(m.ignoreUriCase) && bool(m.ignoreUriCase, `${at}.ignoreUriCase`, fail)) out.ignoreCase = true;
  if (isSet(m.method)) out.method = stringMatch(m.method, `${at}.method`, fail);
  if (isSet(m.authority)) out.authority = stringMatch(m.authority, `${at}.authority`, fail);
  if (isSet(m.scheme)) {
    out.scheme = stringMatch(m.scheme, `${at}.scheme`, fail);
  }
  out.headers.push(...headerConditions(m.headers, `${at}.headers`, ctx));
  out.withoutHeaders.push(...headerConditions(m.withoutHeaders, `${at}.withoutHeaders`, ctx));
  if (isSet(m.queryParams)) {
    const params = record(m.queryParams, `${at}.queryParams`, fail);
    if (Object.keys(params).length > MAX_HEADERS) fail(`${at}.queryParams has more than ${MAX_HEADERS} entries`);
    for (const [key, value] of Object.entries(params)) {
      out.queryParams.push({ name: text(key, `${at}.queryParams key`, fail, { max: 256 }), match: stringMatch(value, `${at}.queryParams["${key}"]`, fail) } satisfies QueryCondition);
    }
  }
  if (isSet(m.port) && m.port !== 0) out.port = integer(m.port, `${at}.port`, 1, 65535, fail);
  if (isSet(m.sourceNamespace)) {
    const problem = dnsLabelProblem(m.sourceNamespace, `${at}.sourceNamespace`);
    if (problem) fail(problem);
    out.sourceNamespace = m.sourceNamespace as string;
  }
  optionalText(m.statPrefix, `${at}.statPrefix`, fail, { max: 253 });
  if (gateways.length > 0 && !gateways.includes(MESH_GATEWAY)) return null;
  if (sourceLabels) {
    ctx.warnings.push(`${at} matches sourceLabels, which waypoints cannot see (Istio's ambient mode drops such matches too); the match is ignored`);
    return null;
  }
  return out;
}

function labelsOf(v: unknown, at: string, fail: Fail): Record<string, unknown> {
  const labels = record(v, at, fail);
  for (const [k, value] of Object.entries(labels)) text(value, `${at}["${k}"]`, fail, { empty: true, max: 63 });
  return labels;
}

function headerConditions(v: unknown, at: string, ctx: Context): HeaderCondition[] {
  if (!isSet(v)) return [];
  const map = record(v, at, ctx.fail);
  if (Object.keys(map).length > MAX_HEADERS) ctx.fail(`${at} has more than ${MAX_HEADERS} entries`);
  const out: HeaderCondition[] = [];
  for (const [key, value] of Object.entries(map)) {
    if (PSEUDO_KEYS.includes(key)) {
      ctx.warnings.push(`${at}["${key}"] is ignored, as Istio ignores it; match it with the match's own ${key} field`);
      continue;
    }
    out.push({ name: headerName(key, `${at} key`, ctx.fail), match: stringMatch(value, `${at}["${key}"]`, ctx.fail) });
  }
  return out;
}

/** Istio's StringMatch: one of exact, prefix, regex; `{}` (or regex `*`) checks presence. */
export function stringMatch(v: unknown, at: string, fail: Fail): StringMatch {
  const o = record(v, at, fail);
  onlyKeys(o, ['exact', 'prefix', 'regex'], at, fail);
  const set = Object.keys(o).filter((k) => isSet(o[k]));
  if (set.length > 1) fail(`${at} sets ${set.join(' and ')}; a string match takes one of exact, prefix and regex`);
  if (set.length === 0) return { kind: 'present' };
  const kind = set[0] as 'exact' | 'prefix' | 'regex';
  if (kind === 'regex') {
    if (o.regex === '*') return { kind: 'present' };
    return { kind, value: checkRegex(o.regex, `${at}.regex`, fail) };
  }
  return { kind, value: text(o[kind], `${at}.${kind}`, fail, { empty: true }) };
}

function destinationsOf(routes: unknown[], at: string, ctx: Context): RouteDestination[] {
  const out = routes.map((raw, i) => {
    const field = `${at}[${i}]`;
    const d = record(raw, field, ctx.fail);
    onlyKeys(d, ['destination', 'weight', 'headers'], field, ctx.fail);
    const weight = isSet(d.weight) ? integer(d.weight, `${field}.weight`, 0, 1_000_000, ctx.fail) : undefined;
    return { backend: destination(d.destination, `${field}.destination`, ctx), weight, headers: headerRules(d.headers, `${field}.headers`, ctx) };
  });
  // One destination takes everything, whatever its weight; of several, each gets weight/sum.
  if (out.length === 1) return [{ ...out[0]!, weight: 100 }];
  if (out.every((d) => !d.weight)) ctx.fail(`${at} lists ${out.length} destinations without a weight; give each its share (weights need not add up to 100)`);
  return out.map((d) => ({ ...d, weight: d.weight ?? 0 }));
}

function destination(v: unknown, at: string, ctx: Context): Backend {
  const { fail } = ctx;
  const d = record(v, at, fail);
  onlyKeys(d, ['host', 'subset', 'port'], at, fail);
  const backend: Backend = { host: resolveHost(d.host, `${at}.host`, ctx.namespace, ctx.domain, fail) };
  if (isSet(d.port)) {
    const p = record(d.port, `${at}.port`, fail);
    onlyKeys(p, ['number'], `${at}.port`, fail);
    if (isSet(p.number) && p.number !== 0) backend.port = integer(p.number, `${at}.port.number`, 1, 65535, fail);
  }
  if (isSet(d.subset) && d.subset !== '') backend.subset = subsetName(d.subset, `${at}.subset`, fail);
  return backend;
}

export function subsetName(v: unknown, at: string, fail: Fail): string {
  const s = text(v, at, fail, { max: 253 });
  if (!/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(s)) fail(`${at} ${quote(s)} is not a subset name: letters, digits, "-", "_" and "." only`);
  return s;
}

function headerRules(v: unknown, at: string, ctx: Context): HeaderRules {
  const { fail } = ctx;
  if (!isSet(v)) return noHeaderRules();
  const h = record(v, at, fail);
  onlyKeys(h, ['request', 'response'], at, fail);
  return { request: headerOps(h.request, `${at}.request`, fail), response: headerOps(h.response, `${at}.response`, fail) };
}

function headerOps(v: unknown, at: string, fail: Fail): HeaderOps {
  if (!isSet(v)) return noHeaderOps();
  const o = record(v, at, fail);
  onlyKeys(o, ['set', 'add', 'remove'], at, fail);
  const pairs = (key: 'set' | 'add') => {
    if (!isSet(o[key])) return [];
    const map = record(o[key], `${at}.${key}`, fail);
    if (Object.keys(map).length > MAX_HEADERS) fail(`${at}.${key} has more than ${MAX_HEADERS} entries`);
    return Object.entries(map).map(([k, value]) => ({ name: opHeaderName(k, `${at}.${key} key`, fail), value: headerValue(value, `${at}.${key}["${k}"]`, fail) }));
  };
  return {
    set: pairs('set'),
    add: pairs('add'),
    remove: list(o.remove, `${at}.remove`, fail, MAX_HEADERS).map((n, i) => opHeaderName(n, `${at}.remove[${i}]`, fail)),
  };
}

/** `:authority` is the HTTP/2 name of Host; Istio rewrites the authority for either. */
function opHeaderName(v: unknown, at: string, fail: Fail): string {
  return v === ':authority' ? 'host' : headerName(v, at, fail);
}

function faultOf(v: unknown, at: string, ctx: Context): FaultPolicy {
  const { fail } = ctx;
  const f = record(v, at, fail);
  onlyKeys(f, ['delay', 'abort'], at, fail);
  const out: FaultPolicy = {};
  if (isSet(f.delay)) {
    const d = record(f.delay, `${at}.delay`, fail);
    onlyKeys(d, ['fixedDelay', 'exponentialDelay', 'percentage', 'percent'], `${at}.delay`, fail);
    if (isSet(d.exponentialDelay)) fail(`${at}.delay.exponentialDelay is not supported; use fixedDelay`);
    if (!isSet(d.fixedDelay)) fail(`${at}.delay needs fixedDelay, e.g. "5s"`);
    // Istio: without a percentage no request is delayed; the integer `percent` is its deprecated form.
    const percent = isSet(d.percentage) ? percentOf(d.percentage, `${at}.delay.percentage`, fail) : isSet(d.percent) ? integer(d.percent, `${at}.delay.percent`, 0, 100, fail) : 0;
    out.delay = { percent, fixedDelayMs: istioDuration(d.fixedDelay, `${at}.delay.fixedDelay`, fail) };
  }
  if (isSet(f.abort)) {
    const a = record(f.abort, `${at}.abort`, fail);
    onlyKeys(a, ['httpStatus', 'grpcStatus', 'http2Error', 'percentage'], `${at}.abort`, fail);
    if (isSet(a.http2Error)) fail(`${at}.abort.http2Error is not supported; use httpStatus or grpcStatus`);
    const percent = isSet(a.percentage) ? percentOf(a.percentage, `${at}.abort.percentage`, fail) : 0;
    if (isSet(a.httpStatus) && isSet(a.grpcStatus)) fail(`${at}.abort sets httpStatus and grpcStatus; choose one`);
    if (isSet(a.grpcStatus)) out.abort = { percent, grpcStatus: grpcStatusOf(a.grpcStatus, `${at}.abort.grpcStatus`, fail) };
    else if (isSet(a.httpStatus)) out.abort = { percent, httpStatus: integer(a.httpStatus, `${at}.abort.httpStatus`, 200, 599, fail) };
    else fail(`${at}.abort needs httpStatus (e.g. 503) or grpcStatus (e.g. UNAVAILABLE)`);
  }
  return out;
}

/** gRPC's status names, in code order (grpc/doc/statuscodes.md). */
const GRPC_STATUSES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

function grpcStatusOf(v: unknown, at: string, fail: Fail): number {
  const code = GRPC_STATUSES.indexOf(text(v, at, fail));
  if (code < 0) fail(`${at} ${quote(v)} is not a gRPC status; use one of ${GRPC_STATUSES.join(', ')}`);
  return code;
}

function mirrorsOf(r: Record<string, unknown>, at: string, ctx: Context): MirrorPolicy[] {
  const { fail } = ctx;
  if (isSet(r.mirror) && isSet(r.mirrors)) fail(`${at} sets mirror and mirrors; list every mirror under mirrors`);
  if (isSet(r.mirror)) {
    if (isSet(r.mirrorPercent) && isSet(r.mirrorPercentage)) fail(`${at} sets mirrorPercent and mirrorPercentage; keep mirrorPercentage`);
    // Absent: all the traffic is mirrored.
    const percent = isSet(r.mirrorPercentage) ? percentOf(r.mirrorPercentage, `${at}.mirrorPercentage`, fail) : isSet(r.mirrorPercent) ? integer(r.mirrorPercent, `${at}.mirrorPercent`, 0, 100, fail) : 100;
    return [{ backend: destination(r.mirror, `${at}.mirror`, ctx), percent }];
  }
  if (isSet(r.mirrorPercent) || isSet(r.mirrorPercentage)) fail(`${at}.mirrorPercentage applies to mirror; with mirrors, set each one's percentage`);
  return list(r.mirrors, `${at}.mirrors`, fail, MAX_MIRRORS).map((raw, i) => {
    const field = `${at}.mirrors[${i}]`;
    const m = record(raw, field, fail);
    onlyKeys(m, ['destination', 'percentage'], field, fail);
    return { backend: destination(m.destination, `${field}.destination`, ctx), percent: isSet(m.percentage) ? percentOf(m.percentage, `${field}.percentage`, fail) : 100 };
  });
}

function rewriteOf(v: unknown, at: string, matches: RequestMatch[], ctx: Context): Rewrite | undefined {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['uri', 'authority', 'uriRegexRewrite'], at, fail);
  const out: Rewrite = {};
  const uri = optionalText(o.uri, `${at}.uri`, fail, { empty: true });
  if (isSet(o.uriRegexRewrite)) {
    if (uri) fail(`${at} sets uri and uriRegexRewrite; choose one`);
    const rr = record(o.uriRegexRewrite, `${at}.uriRegexRewrite`, fail);
    onlyKeys(rr, ['match', 'rewrite'], `${at}.uriRegexRewrite`, fail);
    out.path = { kind: 'regex', pattern: checkRegex(rr.match, `${at}.uriRegexRewrite.match`, fail), substitution: text(rr.rewrite, `${at}.uriRegexRewrite.rewrite`, fail, { empty: true }) };
  } else if (uri) {
    // Envoy's prefix_rewrite swaps the matched prefix or exact path; it has no meaning for a regex match.
    if (matches.some((m) => m.path?.kind === 'regex')) fail(`${at}.uri cannot rewrite a path matched by a regex; use uriRegexRewrite`);
    out.path = { kind: 'replace_prefix', value: uri };
  }
  const authority = optionalText(o.authority, `${at}.authority`, fail, { empty: true, max: 253 });
  if (authority) out.authority = authority;
  return out.path || out.authority ? out : undefined;
}

const REDIRECT_CODES = [301, 302, 303, 307, 308];

function redirectOf(v: unknown, at: string, matches: RequestMatch[], ctx: Context): Redirect {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['uri', 'authority', 'port', 'derivePort', 'scheme', 'redirectCode', 'prefixRewrite'], at, fail);
  const status = isSet(o.redirectCode) && o.redirectCode !== 0 ? integer(o.redirectCode, `${at}.redirectCode`, 300, 399, fail) : 301;
  if (!REDIRECT_CODES.includes(status)) fail(`${at}.redirectCode ${status} is not a redirect Envoy sends; use 301, 302, 303, 307 or 308`);
  const out: Redirect = { status };
  const uri = optionalText(o.uri, `${at}.uri`, fail, { empty: true });
  const prefix = optionalText(o.prefixRewrite, `${at}.prefixRewrite`, fail, { empty: true });
  if (uri && prefix !== undefined) fail(`${at} sets uri and prefixRewrite; choose one`);
  if (uri) out.path = { kind: 'full', value: uri };
  if (prefix !== undefined) {
    if (matches.some((m) => m.path !== undefined && m.path.kind !== 'prefix')) fail(`${at}.prefixRewrite needs a prefix uri match on every match of the rule`);
    out.path = { kind: 'replace_prefix', value: prefix };
  }
  const authority = optionalText(o.authority, `${at}.authority`, fail, { empty: true, max: 253 });
  if (authority) out.authority = authority;
  const scheme = optionalText(o.scheme, `${at}.scheme`, fail, { empty: true, max: 32 });
  if (scheme) {
    if (!/^[a-z][a-z0-9+.-]*$/i.test(scheme)) fail(`${at}.scheme ${quote(scheme)} is not a URL scheme`);
    out.scheme = scheme.toLowerCase();
  }
  if (isSet(o.port) && isSet(o.derivePort)) fail(`${at} sets port and derivePort; choose one`);
  if (isSet(o.port)) out.port = { kind: 'fixed', port: integer(o.port, `${at}.port`, 1, 65535, fail) };
  if (isSet(o.derivePort)) {
    if (o.derivePort === 'FROM_PROTOCOL_DEFAULT') out.port = { kind: 'protocol_default' };
    else if (o.derivePort === 'FROM_REQUEST_PORT') out.port = { kind: 'request' };
    else fail(`${at}.derivePort ${quote(o.derivePort)} is not one of FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT`);
  }
  return out;
}

function directResponseOf(v: unknown, at: string, fail: Fail): DirectResponse {
  const o = record(v, at, fail);
  onlyKeys(o, ['status', 'body'], at, fail);
  const out: DirectResponse = { status: integer(o.status, `${at}.status`, 200, 599, fail) };
  if (isSet(o.body)) {
    const b = record(o.body, `${at}.body`, fail);
    onlyKeys(b, ['string', 'bytes'], `${at}.body`, fail);
    if (isSet(b.bytes)) fail(`${at}.body.bytes is not supported; use body.string`);
    // Envoy's limit on a direct response body.
    out.body = text(b.string, `${at}.body.string`, fail, { empty: true, max: 4096 });
  }
  return out;
}

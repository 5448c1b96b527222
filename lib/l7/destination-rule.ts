// networking.istio.io DestinationRule → ConvertedDestinationRule: per host,
// the traffic policy (ClusterPolicy parts, cluster-policy.ts) at the rule,
// port, subset and subset-port levels, and each subset's labels. Checked on
// its own; a bad one is rejected alone. Fields meshlet accepts without
// enforcing (locality, warm-up, TCP keepalive...) are listed as warnings.
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import { metaOf, onlyKeys, record, specOf, type Fail } from '../policy/fields.ts';
import type { ConnectionPoolLimits, HashKey, LoadBalancerPolicy, OutlierDetectionPolicy } from './cluster-policy.ts';
import { bool, checkGroupVersion, exportToOf, headerName, integer, isSet, istioDuration, list, NETWORKING_GROUP, quote, text } from './fields.ts';
import { DEFAULT_DOMAIN, resolveHost } from './hosts.ts';
import { NETWORKING_VERSIONS, subsetName, type RouteConvertOptions } from './virtual-service.ts';

/** The parts of a ClusterPolicy one level sets; an absent part is inherited whole from the level above (Istio's MergeTrafficPolicy). */
export interface TrafficPolicyParts {
  loadBalancer?: LoadBalancerPolicy;
  connectionPool?: ConnectionPoolLimits;
  outlierDetection?: OutlierDetectionPolicy;
}

export interface PolicyLevel extends TrafficPolicyParts {
  /** portLevelSettings, by service port. */
  ports: { port: number; policy: TrafficPolicyParts }[];
}

export interface DestinationSubset {
  name: string;
  labels: Record<string, string>;
  policy: PolicyLevel;
}

export interface ConvertedDestinationRule {
  kind: 'DestinationRule';
  key: string;
  namespace: string;
  name: string;
  createdAt: number;
  /** FQDN, or a `*.suffix` wildcard. */
  host: string;
  /** Namespaces it is visible to; null: all. */
  exportTo: string[] | null;
  /** False when it selects sidecar workloads (workloadSelector): a waypoint does not apply it. */
  forWaypoints: boolean;
  policy: PolicyLevel;
  subsets: DestinationSubset[];
  warnings: string[];
}

/** Istio's (Envoy's) outlier detection defaults for the fields a rule leaves out. */
export const OUTLIER_DEFAULTS = { consecutive5xxErrors: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0 } as const;

const MAX_SUBSETS = 128;
const MAX_PORTS = 64;
/** Envoy's "unlimited", 2^32-1 in a uint32; Istio's fields are int32. */
const MAX_LIMIT = 2 ** 31 - 1;

interface Context {
  fail: Fail;
  warnings: string[];
}

/** Throws InvalidObjectError naming the field and the fix. */
export function convertDestinationRule(obj: KubeObject, options: RouteConvertOptions = {}): ConvertedDestinationRule {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkGroupVersion(obj, NETWORKING_GROUP, NETWORKING_VERSIONS, fail);
  const { name, namespace, createdAt } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, ['host', 'trafficPolicy', 'subsets', 'exportTo', 'workloadSelector'], 'spec', fail);
  const ctx: Context = { fail, warnings: [] };
  const host = resolveHost(spec.host, 'spec.host', namespace, options.domain ?? DEFAULT_DOMAIN, fail, { wildcard: true });
  const forWaypoints = !isSet(spec.workloadSelector);
  if (!forWaypoints) ctx.warnings.push('spec.workloadSelector makes the rule apply to selected sidecars only; waypoints do not apply it');
  const policy = level(spec.trafficPolicy, 'spec.trafficPolicy', ctx);
  const subsets: DestinationSubset[] = list(spec.subsets, 'spec.subsets', fail, MAX_SUBSETS).map((raw, i) => {
    const at = `spec.subsets[${i}]`;
    const s = record(raw, at, fail);
    onlyKeys(s, ['name', 'labels', 'trafficPolicy'], at, fail);
    return { name: subsetName(s.name, `${at}.name`, fail), labels: labelsOf(s.labels, `${at}.labels`, fail), policy: level(s.trafficPolicy, `${at}.trafficPolicy`, ctx) };
  });
  const names = subsets.map((s) => s.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) fail(`spec.subsets names ${quote(twice)} twice; subset names are unique`);
  const exportTo = exportToOf(spec.exportTo, namespace, fail);
  return { kind: 'DestinationRule', key: `${namespace}/${name}`, namespace, name, createdAt, host, exportTo, forWaypoints, policy, subsets, warnings: ctx.warnings };
}

function labelsOf(v: unknown, at: string, fail: Fail): Record<string, string> {
  if (!isSet(v)) return {};
  const m = record(v, at, fail);
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(m)) {
    if (k === '' || k.length > 317) fail(`${at} has a key ${quote(k)} that is no label name`);
    out[k] = text(value, `${at}["${k}"]`, fail, { empty: true, max: 63 });
  }
  return out;
}

const POLICY_KEYS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls', 'portLevelSettings', 'tunnel', 'proxyProtocol', 'retryBudget'];

function level(v: unknown, at: string, ctx: Context): PolicyLevel {
  if (!isSet(v)) return { ports: [] };
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, POLICY_KEYS, at, fail);
  if (isSet(o.tunnel)) fail(`${at}.tunnel is not supported: the waypoint reaches endpoints over HBONE`);
  if (isSet(o.proxyProtocol)) fail(`${at}.proxyProtocol is not supported by meshlet's waypoint`);
  if (isSet(o.retryBudget)) ctx.warnings.push(`${at}.retryBudget is not applied; connectionPool.http.maxRetries bounds retries`);
  const parts = partsOf(o, at, ctx);
  const ports = list(o.portLevelSettings, `${at}.portLevelSettings`, fail, MAX_PORTS).map((raw, i) => {
    const field = `${at}.portLevelSettings[${i}]`;
    const p = record(raw, field, fail);
    onlyKeys(p, ['port', 'loadBalancer', 'connectionPool', 'outlierDetection', 'tls'], field, fail);
    const sel = record(p.port, `${field}.port`, fail);
    onlyKeys(sel, ['number'], `${field}.port`, fail);
    return { port: integer(sel.number, `${field}.port.number`, 1, 65535, fail), policy: partsOf(p, field, ctx) };
  });
  const numbers = ports.map((p) => p.port);
  const twice = numbers.find((n, i) => numbers.indexOf(n) !== i);
  if (twice !== undefined) fail(`${at}.portLevelSettings sets port ${twice} twice`);
  return { ...parts, ports };
}

function partsOf(o: Record<string, unknown>, at: string, ctx: Context): TrafficPolicyParts {
  const out: TrafficPolicyParts = {};
  if (isSet(o.tls)) tls(o.tls, `${at}.tls`, ctx);
  if (isSet(o.loadBalancer)) {
    const lb = loadBalancer(o.loadBalancer, `${at}.loadBalancer`, ctx);
    if (lb) out.loadBalancer = lb;
  }
  if (isSet(o.connectionPool)) out.connectionPool = connectionPool(o.connectionPool, `${at}.connectionPool`, ctx);
  if (isSet(o.outlierDetection)) out.outlierDetection = outlierDetection(o.outlierDetection, `${at}.outlierDetection`, ctx);
  return out;
}

function tls(v: unknown, at: string, ctx: Context): void {
  const o = record(v, at, ctx.fail);
  const mode = o.mode ?? 'DISABLE';
  if (mode === 'SIMPLE' || mode === 'MUTUAL') ctx.fail(`${at}.mode ${mode} (TLS from the waypoint to the application) is not supported; the waypoint reaches endpoints over HBONE mTLS`);
  if (mode !== 'ISTIO_MUTUAL' && mode !== 'DISABLE') ctx.fail(`${at}.mode ${quote(mode)} is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL`);
  // Either way the waypoint's hop to the endpoint is HBONE, which is mTLS.
  ctx.warnings.push(`${at} is not applied: the waypoint always reaches endpoints over HBONE mTLS`);
}

/** undefined for UNSPECIFIED: the level inherits. */
function loadBalancer(v: unknown, at: string, ctx: Context): LoadBalancerPolicy | undefined {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['simple', 'consistentHash', 'localityLbSetting', 'warmupDurationSecs', 'warmup', 'zoneAwareLbSetting'], at, fail);
  for (const key of ['localityLbSetting', 'zoneAwareLbSetting', 'warmupDurationSecs', 'warmup']) {
    if (isSet(o[key])) ctx.warnings.push(`${at}.${key} is not applied: meshlet balances across all ready endpoints alike`);
  }
  if (isSet(o.simple) && isSet(o.consistentHash)) fail(`${at} sets simple and consistentHash; choose one`);
  if (isSet(o.consistentHash)) return { kind: 'consistent_hash', hashKey: hashKey(o.consistentHash, `${at}.consistentHash`, ctx) };
  switch (o.simple ?? 'UNSPECIFIED') {
    case 'UNSPECIFIED':
      return undefined;
    case 'ROUND_ROBIN':
      return { kind: 'round_robin' };
    case 'RANDOM':
      return { kind: 'random' };
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      return { kind: 'least_request' };
    case 'PASSTHROUGH':
      return fail(`${at}.simple PASSTHROUGH is not supported: the waypoint picks an endpoint of the service`);
    default:
      return fail(`${at}.simple ${quote(o.simple)} is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM`);
  }
}

function hashKey(v: unknown, at: string, ctx: Context): HashKey {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName', 'ringHash', 'maglev', 'minimumRingSize'], at, fail);
  const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => isSet(o[k]) && o[k] !== false);
  if (keys.length !== 1) fail(`${at} must set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName${keys.length ? `; it sets ${keys.join(' and ')}` : ''}`);
  for (const key of ['ringHash', 'maglev', 'minimumRingSize']) if (isSet(o[key])) ctx.warnings.push(`${at}.${key} is not applied: meshlet's hash ring has its own size`);
  if (isSet(o.httpHeaderName)) return { kind: 'header', name: headerName(o.httpHeaderName, `${at}.httpHeaderName`, fail) };
  if (isSet(o.httpQueryParameterName)) return { kind: 'query_parameter', name: text(o.httpQueryParameterName, `${at}.httpQueryParameterName`, fail, { max: 256 }) };
  if (isSet(o.useSourceIp)) {
    bool(o.useSourceIp, `${at}.useSourceIp`, fail);
    return { kind: 'source_ip' };
  }
  const c = record(o.httpCookie, `${at}.httpCookie`, fail);
  onlyKeys(c, ['name', 'path', 'ttl', 'attributes'], `${at}.httpCookie`, fail);
  const name = text(c.name, `${at}.httpCookie.name`, fail, { max: 256 });
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) fail(`${at}.httpCookie.name ${quote(name)} is not a cookie name`);
  if (isSet(c.path) || isSet(c.attributes)) ctx.warnings.push(`${at}.httpCookie path and attributes are not applied to the cookie meshlet sets`);
  const key: HashKey = { kind: 'cookie', name };
  if (isSet(c.ttl)) {
    const ttlMs = istioDuration(c.ttl, `${at}.httpCookie.ttl`, fail, { min: 0 });
    if (ttlMs > 0) key.ttlMs = ttlMs;
  }
  return key;
}

function connectionPool(v: unknown, at: string, ctx: Context): ConnectionPoolLimits {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['tcp', 'http'], at, fail);
  const out: ConnectionPoolLimits = {};
  // 0 means "not set" in Istio's int32 fields: Envoy's default applies.
  const limit = (field: Record<string, unknown>, key: string, where: string): number | undefined => {
    if (!isSet(field[key])) return undefined;
    const n = integer(field[key], `${where}.${key}`, 0, MAX_LIMIT, fail);
    return n === 0 ? undefined : n;
  };
  const assign = <K extends keyof ConnectionPoolLimits>(key: K, value: number | undefined) => {
    if (value !== undefined) out[key] = value;
  };
  if (isSet(o.tcp)) {
    const t = record(o.tcp, `${at}.tcp`, fail);
    onlyKeys(t, ['maxConnections', 'connectTimeout', 'tcpKeepalive', 'maxConnectionDuration', 'idleTimeout'], `${at}.tcp`, fail);
    assign('maxConnections', limit(t, 'maxConnections', `${at}.tcp`));
    for (const key of ['connectTimeout', 'tcpKeepalive', 'maxConnectionDuration', 'idleTimeout']) if (isSet(t[key])) ctx.warnings.push(`${at}.tcp.${key} is not applied by meshlet's waypoint`);
  }
  if (isSet(o.http)) {
    const h = record(o.http, `${at}.http`, fail);
    onlyKeys(h, ['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'idleTimeout', 'h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams', 'http2KeepAlive'], `${at}.http`, fail);
    assign('http1MaxPendingRequests', limit(h, 'http1MaxPendingRequests', `${at}.http`));
    assign('http2MaxRequests', limit(h, 'http2MaxRequests', `${at}.http`));
    assign('maxRequestsPerConnection', limit(h, 'maxRequestsPerConnection', `${at}.http`));
    assign('maxRetries', limit(h, 'maxRetries', `${at}.http`));
    for (const key of ['idleTimeout', 'h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams', 'http2KeepAlive']) if (isSet(h[key])) ctx.warnings.push(`${at}.http.${key} is not applied by meshlet's waypoint`);
  }
  return out;
}

function outlierDetection(v: unknown, at: string, ctx: Context): OutlierDetectionPolicy {
  const { fail } = ctx;
  const o = record(v, at, fail);
  onlyKeys(o, ['consecutiveErrors', 'splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures', 'consecutiveGatewayErrors', 'consecutive5xxErrors', 'interval', 'baseEjectionTime', 'maxEjectionPercent', 'minHealthPercent', 'outlierDetectionHttpErrorCodes'], at, fail);
  if (isSet(o.consecutiveErrors)) fail(`${at}.consecutiveErrors is deprecated and no longer applied by Istio; use consecutive5xxErrors or consecutiveGatewayErrors`);
  if (list(o.outlierDetectionHttpErrorCodes, `${at}.outlierDetectionHttpErrorCodes`, fail).length > 0) fail(`${at}.outlierDetectionHttpErrorCodes is not supported; 5xx responses count as errors`);
  if (isSet(o.splitExternalLocalOriginErrors) || isSet(o.consecutiveLocalOriginFailures)) ctx.warnings.push(`${at}: local-origin failures are not counted apart; connect failures count as 5xx errors`);
  const count = (key: string): number | undefined => (isSet(o[key]) ? integer(o[key], `${at}.${key}`, 0, MAX_LIMIT, fail) : undefined);
  const out: OutlierDetectionPolicy = {
    intervalMs: isSet(o.interval) ? istioDuration(o.interval, `${at}.interval`, fail) : OUTLIER_DEFAULTS.intervalMs,
    baseEjectionTimeMs: isSet(o.baseEjectionTime) ? istioDuration(o.baseEjectionTime, `${at}.baseEjectionTime`, fail) : OUTLIER_DEFAULTS.baseEjectionTimeMs,
    // Istio leaves 0 (unset) to Envoy's default of 10%.
    maxEjectionPercent: (isSet(o.maxEjectionPercent) ? integer(o.maxEjectionPercent, `${at}.maxEjectionPercent`, 0, 100, fail) : 0) || OUTLIER_DEFAULTS.maxEjectionPercent,
    minHealthPercent: isSet(o.minHealthPercent) ? integer(o.minHealthPercent, `${at}.minHealthPercent`, 0, 100, fail) : OUTLIER_DEFAULTS.minHealthPercent,
  };
  // Absent: Envoy's 5; 0 disables it (the field is then left out).
  const fiveXx = count('consecutive5xxErrors') ?? OUTLIER_DEFAULTS.consecutive5xxErrors;
  if (fiveXx > 0) out.consecutive5xxErrors = fiveXx;
  // Off unless set above 0.
  const gateway = count('consecutiveGatewayErrors');
  if (gateway !== undefined && gateway > 0) out.consecutiveGatewayErrors = gateway;
  return out;
}

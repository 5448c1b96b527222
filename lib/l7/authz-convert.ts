// security.istio.io AuthorizationPolicy with targetRefs → L7AuthzPolicy, for
// the waypoint. Waypoints take only policies bound by targetRefs (a Gateway
// of the waypoint, a Service, or a GatewayClass from the root namespace);
// `selector` and namespace-wide policies are the ztunnel's, so they convert
// to null here. The source and port fields are read as lib/policy reads
// them; the HTTP fields are added. Each object is checked on its own; a
// rejected one fails closed (authz-fail-closed.ts).
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import { checkApiVersion, metaOf, onlyKeys, parsePort, record, specOf, stringList, type Fail } from '../policy/fields.ts';
import { L4_CONDITION_KEYS, l4ConditionMatch, setL4, sourceL4Match } from '../policy/l4-convert.ts';
import { checkPattern } from '../policy/match.ts';
import { DEFAULT_ROOT_NAMESPACE, type AuthzAction, type L4Match, type PolicyOptions } from '../policy/types.ts';
import type { HeaderRequirement, L7AuthzPolicy, L7Match, L7Rule, L7Target } from './authz-types.ts';
import { GATEWAY_GROUP, headerName, isSet, quote, text } from './fields.ts';
import { checkPathPattern } from './path-pattern.ts';

const SPEC_KEYS = ['selector', 'targetRef', 'targetRefs', 'action', 'rules', 'provider'];
const RULE_KEYS = ['from', 'to', 'when'];
const SOURCE_KEYS = ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_KEYS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];
/** Attributes no request through a meshlet waypoint has: meshlet has no RequestAuthentication (JWT), and the inner request carries no SNI. */
const ABSENT_CONDITION = /^(request\.auth\.(principal|audiences|presenter|claims\[.+\])|connection\.sni)$/;
const HEADER_CONDITION = /^request\.headers\[(.+)\]$/;
const MAX_TARGETS = 16;
const MAX_RULES = 512;

/** null for a policy that is not the waypoint's (selector or namespace-wide, or AUDIT). Throws InvalidObjectError naming the field and the fix. */
export function convertL7AuthorizationPolicy(obj: KubeObject, options: PolicyOptions = {}): L7AuthzPolicy | null {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkApiVersion(obj, fail);
  const { name, namespace } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, SPEC_KEYS, 'spec', fail);
  const refs = targetRefsOf(spec, fail);
  if (refs === null) return null;
  if (isSet(spec.selector)) fail('spec sets selector and targetRefs; a policy takes one or the other');
  const action = actionOf(spec, fail);
  if (action === null) return null;
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const targets = refs.flatMap((ref, i) => targetOf(ref, `spec.targetRefs[${i}]`, namespace, root, fail));
  const warnings: string[] = [];
  const rawRules = spec.rules ?? [];
  if (!Array.isArray(rawRules)) fail('spec.rules must be a list');
  if ((rawRules as unknown[]).length > MAX_RULES) fail(`spec.rules has more than ${MAX_RULES} rules`);
  if (action === 'DENY' && (rawRules as unknown[]).length === 0) {
    fail('a DENY policy without rules never matches; add an empty rule `rules: [{}]` to deny everything it targets');
  }
  const rules = (rawRules as unknown[]).map((raw, i) => convertRule(raw, `spec.rules[${i}]`, namespace, fail, warnings));
  return { key: `${namespace}/${name}`, namespace, name, action, targets, rules, warnings };
}

/** The raw target references; null when the policy has none (it is then the ztunnel's). */
export function targetRefsOf(spec: Record<string, unknown>, fail: Fail): Record<string, unknown>[] | null {
  const refs: unknown[] = [];
  if (isSet(spec.targetRef)) refs.push(spec.targetRef);
  if (isSet(spec.targetRefs)) {
    if (!Array.isArray(spec.targetRefs)) return fail('spec.targetRefs must be a list');
    refs.push(...spec.targetRefs);
  }
  if (refs.length === 0) return null;
  if (refs.length > MAX_TARGETS) fail(`spec.targetRefs has ${refs.length} entries; at most ${MAX_TARGETS}`);
  return refs.map((r, i) => record(r, `spec.targetRefs[${i}]`, fail));
}

/** The target one reference names; [] for a ServiceEntry, which no request through meshlet reaches. */
export function targetOf(ref: Record<string, unknown>, at: string, namespace: string, root: string, fail: Fail): L7Target[] {
  onlyKeys(ref, ['group', 'kind', 'name', 'namespace'], at, fail);
  const group = isSet(ref.group) ? text(ref.group, `${at}.group`, fail, { empty: true, max: 253 }) : '';
  const kind = text(ref.kind, `${at}.kind`, fail, { max: 63 });
  const name = text(ref.name, `${at}.name`, fail, { max: 253 });
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) fail(`${at}.name ${quote(name)} is not a Kubernetes object name`);
  if (isSet(ref.namespace) && ref.namespace !== '' && ref.namespace !== namespace) fail(`${at}.namespace: a policy targets objects in its own namespace only (Istio's rule)`);
  if (group === GATEWAY_GROUP && kind === 'Gateway') return [{ kind: 'gateway', namespace, name }];
  if (group === GATEWAY_GROUP && kind === 'GatewayClass') {
    if (namespace !== root) fail(`${at}: a GatewayClass is targeted from the root namespace ${root} only`);
    return [{ kind: 'gateway_class', name }];
  }
  if ((group === '' || group === 'core') && kind === 'Service') return [{ kind: 'service', namespace, name }];
  if (group === 'networking.istio.io' && kind === 'ServiceEntry') {
    return fail(`${at}: ServiceEntry targets are not supported; meshlet's waypoint serves Kubernetes Services`);
  }
  return fail(`${at} is ${quote(`${group}/${kind}`)}; a waypoint policy targets a gateway.networking.k8s.io Gateway or GatewayClass, or a Service`);
}

/** null for AUDIT, which marks requests and never decides one. */
function actionOf(spec: Record<string, unknown>, fail: Fail): AuthzAction | null {
  const action = spec.action ?? 'ALLOW';
  if (spec.provider !== undefined && action !== 'CUSTOM') fail('spec.provider is only valid with action CUSTOM; remove it');
  if (action === 'ALLOW' || action === 'DENY') return action;
  if (action === 'AUDIT') return null;
  if (action === 'CUSTOM') return fail('action CUSTOM needs an external authorizer, which meshlet does not call; use ALLOW or DENY');
  return fail(`spec.action ${quote(action)} is not an action; use ALLOW (the default) or DENY`);
}

function convertRule(raw: unknown, at: string, policyNs: string, fail: Fail, warnings: string[]): L7Rule {
  const rule = record(raw, at, fail);
  onlyKeys(rule, RULE_KEYS, at, fail);
  const clauses: L7Match[][] = [];
  for (const [key, inner] of [['from', 'source'], ['to', 'operation']] as const) {
    if (!isSet(rule[key])) continue;
    const entries = rule[key];
    if (!Array.isArray(entries) || entries.length === 0) fail(`${at}.${key} must be a non-empty list; omit it to match any ${inner}`);
    clauses.push((entries as unknown[]).map((entry, j) => {
      const field = `${at}.${key}[${j}]`;
      const e = record(entry, field, fail);
      onlyKeys(e, [inner], field, fail);
      const body = record(e[inner], `${field}.${inner}`, fail);
      return key === 'from' ? source(body, `${field}.source`, policyNs, fail, warnings) : operation(body, `${field}.operation`, fail);
    }));
  }
  if (isSet(rule.when)) {
    if (!Array.isArray(rule.when)) fail(`${at}.when must be a list`);
    (rule.when as unknown[]).forEach((c, j) => clauses.push([condition(c, `${at}.when[${j}]`, fail, warnings)]));
  }
  return { clauses };
}

function source(src: Record<string, unknown>, at: string, policyNs: string, fail: Fail, warnings: string[]): L7Match {
  onlyKeys(src, SOURCE_KEYS, at, fail);
  const list = (k: string) => stringList(src[k], `${at}.${k}`, fail);
  if (!SOURCE_KEYS.some((k) => list(k)?.length)) fail(`${at} must set at least one field; omit \`from\` to match any source`);
  if (list('remoteIpBlocks')?.length || list('notRemoteIpBlocks')?.length) {
    warnings.push(`${at}: remoteIpBlocks are enforced as ipBlocks: meshlet does not trust X-Forwarded-For, so the remote address is the client's own`);
  }
  // Service accounts match exactly, so a wildcard is refused here; sourceL4Match checks the rest of the name.
  for (const k of ['serviceAccounts', 'notServiceAccounts']) {
    list(k)?.forEach((a, i) => {
      if (a.includes('*')) fail(`${at}.${k}[${i}] ${quote(a)} must be "<namespace>/<serviceaccount>" or "<serviceaccount>", without wildcards`);
    });
  }
  const out: L7Match = {};
  const l4 = sourceL4Match(list, at, policyNs, fail);
  if (Object.keys(l4).length > 0) out.l4 = l4;
  // No request through meshlet carries a JWT principal: requiring one never matches, excluding one always does.
  if (list('requestPrincipals')?.length) out.never = `${at}.requestPrincipals`;
  if (list('requestPrincipals')?.length || list('notRequestPrincipals')?.length) {
    warnings.push(`${at}: request principals come from JWTs, which meshlet does not validate, so no request has one`);
  }
  return out;
}

function operation(op: Record<string, unknown>, at: string, fail: Fail): L7Match {
  onlyKeys(op, OPERATION_KEYS, at, fail);
  const list = (k: string) => stringList(op[k], `${at}.${k}`, fail);
  if (!OPERATION_KEYS.some((k) => list(k)?.length)) fail(`${at} must set at least one field; omit \`to\` to match any operation`);
  const out: L7Match = {};
  const l4: L4Match = {};
  setPorts(l4, 'ports', list('ports'), `${at}.ports`, fail);
  setPorts(l4, 'notPorts', list('notPorts'), `${at}.notPorts`, fail);
  if (Object.keys(l4).length > 0) out.l4 = l4;
  for (const k of ['methods', 'notMethods'] as const) setList(out, k, list(k)?.map((m, i) => checkPattern(m, `${at}.${k}[${i}]`, fail)));
  for (const k of ['hosts', 'notHosts'] as const) setList(out, k, list(k)?.map((h, i) => checkPattern(h, `${at}.${k}[${i}]`, fail).toLowerCase()));
  for (const k of ['paths', 'notPaths'] as const) setList(out, k, list(k)?.map((p, i) => checkPathPattern(p, `${at}.${k}[${i}]`, fail)));
  return out;
}

function condition(raw: unknown, at: string, fail: Fail, warnings: string[]): L7Match {
  const c = record(raw, at, fail);
  onlyKeys(c, ['key', 'values', 'notValues'], at, fail);
  const key = c.key;
  if (typeof key !== 'string' || key === '') return fail(`${at}.key must be a non-empty string`);
  const values = stringList(c.values, `${at}.values`, fail);
  const notValues = stringList(c.notValues, `${at}.notValues`, fail);
  if (!values?.length && !notValues?.length) fail(`${at} (key ${key}) must set values or notValues`);
  const header = HEADER_CONDITION.exec(key);
  if (header) {
    const requirement: HeaderRequirement = { name: headerName(header[1], `${at}.key`, fail) };
    if (values?.length) requirement.values = values.map((v, i) => headerPattern(v, `${at}.values[${i}]`, fail));
    if (notValues?.length) requirement.notValues = notValues.map((v, i) => headerPattern(v, `${at}.notValues[${i}]`, fail));
    return { header: requirement };
  }
  if (ABSENT_CONDITION.test(key)) {
    warnings.push(`${at}: ${key} is never set on a request through meshlet's waypoint (no JWT validation, no inner SNI)`);
    return values?.length ? { never: `${at} key ${key}` } : {};
  }
  if (!L4_CONDITION_KEYS.includes(key)) fail(`${at}.key ${quote(key)} is not a condition meshlet's waypoint checks; use request.headers[<name>], ${L4_CONDITION_KEYS.join(', ')}`);
  if (key === 'remote.ip') warnings.push(`${at}: remote.ip is enforced as source.ip: meshlet does not trust X-Forwarded-For`);
  return { l4: l4ConditionMatch(key, values, notValues, at, fail) };
}

/** A header value pattern: exact, `prefix*`, `*suffix` or `*`; any value a header can carry. */
function headerPattern(v: string, at: string, fail: Fail): string {
  if (v.length > 4096) fail(`${at} is longer than any header meshlet accepts`);
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(v) || !v.isWellFormed()) fail(`${at} holds a character no header can carry`);
  if (v.length > 1 && (v.slice(1, -1).includes('*') || (v.startsWith('*') && v.endsWith('*')))) fail(`${at} ${quote(v)} puts * in the middle or at both ends; use one * at the start or the end`);
  return v;
}

function setList<K extends 'methods' | 'notMethods' | 'hosts' | 'notHosts' | 'paths' | 'notPaths'>(m: L7Match, key: K, value: string[] | undefined): void {
  if (value !== undefined && value.length > 0) m[key] = value;
}

function setPorts(m: L4Match, key: 'ports' | 'notPorts', values: string[] | undefined, field: string, fail: Fail): void {
  setL4(m, key, values?.map((v, i) => parsePort(v) ?? fail(`${field}[${i}] ${quote(v)} is not a port; use numbers from 1 to 65535`)));
}

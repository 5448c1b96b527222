// security.istio.io AuthorizationPolicy → AuthzPolicy. Phase one of a policy
// update: each object is checked on its own and a bad one is rejected alone.
// Attributes only an HTTP proxy can see fail closed, as in Istio's ztunnel:
// an ALLOW rule using them is dropped (never matches); a DENY rule is kept
// without them (matches more). Either way the operator gets a warning.
import { InvalidObjectError } from '../core/errors.ts';
import { isRecord, objectRef, type KubeObject } from '../cluster/objects.ts';
import { checkApiVersion, metaOf, onlyKeys, record, selectorOf, specOf, stringList, type Fail } from './fields.ts';
import { L4_CONDITION_KEYS, l4ConditionMatch, l4Ports, setL4, sourceL4Match } from './l4-convert.ts';
import { DEFAULT_ROOT_NAMESPACE, type AuthzAction, type AuthzPolicy, type AuthzRule, type L4Match, type PolicyOptions, type PolicyScope } from './types.ts';

const SPEC_KEYS = ['selector', 'targetRef', 'targetRefs', 'action', 'rules', 'provider'];
const RULE_KEYS = ['from', 'to', 'when'];
const SOURCE_L4 = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const SOURCE_L7 = ['requestPrincipals', 'notRequestPrincipals'];
const OPERATION_L4 = ['ports', 'notPorts'];
const OPERATION_L7 = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const isL7Key = (key: string) => key.startsWith('request.') || key === 'connection.sni' || key.startsWith('experimental.envoy.filters.');

/**
 * Whether the policy binds itself with targetRefs (or targetRef) to a
 * waypoint Gateway, a GatewayClass or a Service: then it is the waypoint's
 * (lib/l7), which the L4 engine neither enforces nor stands in for, even when
 * the references cannot be read. An empty list binds nothing (Istio's reading,
 * and lib/l7's): such a policy is the ztunnel's.
 */
export function bindsTargetRefs(obj: KubeObject): boolean {
  const spec = obj.spec;
  if (obj.kind !== 'AuthorizationPolicy' || !isRecord(spec)) return false;
  const set = (v: unknown): boolean => v !== undefined && v !== null;
  return set(spec.targetRef) || (set(spec.targetRefs) && !(Array.isArray(spec.targetRefs) && spec.targetRefs.length === 0));
}

/** Throws InvalidObjectError naming the field and the fix. */
export function convertAuthorizationPolicy(obj: KubeObject, options: PolicyOptions = {}): AuthzPolicy {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkApiVersion(obj, fail);
  const { name, namespace } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, SPEC_KEYS, 'spec', fail);

  const targets = spec.targetRefs ?? [];
  if ((spec.targetRef !== undefined && spec.targetRef !== null) || !Array.isArray(targets) || targets.length > 0) {
    fail('spec.targetRefs binds the policy to a waypoint, Gateway or Service, which the L4 engine does not enforce; select workloads with spec.selector.matchLabels, or no selector for the whole namespace');
  }
  const action = actionOf(spec, fail);
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const matchLabels = selectorOf(spec.selector, 'spec.selector', fail);
  const scope: PolicyScope = { namespace: namespace === root ? null : namespace, matchLabels };
  const warnings: string[] = [];
  if (spec.selector !== undefined && spec.selector !== null && matchLabels === null) {
    warnings.push('spec.selector has no matchLabels, so the policy applies to every workload in its scope');
  }

  const rawRules = spec.rules ?? [];
  if (!Array.isArray(rawRules)) fail('spec.rules must be a list');
  if (action === 'DENY' && rawRules.length === 0) {
    fail('a DENY policy without rules never matches; add an empty rule `rules: [{}]` to deny everything it selects');
  }
  const rules: AuthzRule[] = [];
  (rawRules as unknown[]).forEach((raw, i) => {
    const rule = convertRule(raw, `spec.rules[${i}]`, action, namespace, fail, warnings);
    if (rule) rules.push(rule);
  });
  return { key: `${namespace}/${name}`, namespace, name, action, scope, rules, warnings };
}

function actionOf(spec: Record<string, unknown>, fail: Fail): AuthzAction {
  const action = spec.action ?? 'ALLOW';
  if (spec.provider !== undefined && action !== 'CUSTOM') fail('spec.provider is only valid with action CUSTOM; remove it');
  if (action === 'ALLOW' || action === 'DENY') return action;
  if (action === 'AUDIT') {
    return fail('action AUDIT only marks requests for an Envoy audit plugin, which meshlet does not have; remove the policy or use ALLOW or DENY');
  }
  if (action === 'CUSTOM') {
    return fail('action CUSTOM delegates to an external authorizer through an HTTP proxy, which the ztunnel is not; use ALLOW or DENY here and put CUSTOM policies on a waypoint');
  }
  return fail(`spec.action ${JSON.stringify(action)} is not an action; use ALLOW (the default) or DENY`);
}

/** Returns null for an ALLOW rule that L4 can never match. */
function convertRule(raw: unknown, where: string, action: AuthzAction, policyNs: string, fail: Fail, warnings: string[]): AuthzRule | null {
  const rule = record(raw, where, fail);
  onlyKeys(rule, RULE_KEYS, where, fail);
  const l7: string[] = [];
  const clauses: L4Match[][] = [];
  for (const [key, inner] of [['from', 'source'], ['to', 'operation']] as const) {
    if (rule[key] === undefined || rule[key] === null) continue;
    const entries = rule[key];
    if (!Array.isArray(entries) || entries.length === 0) fail(`${where}.${key} must be a non-empty list; omit it to match any ${inner}`);
    clauses.push((entries as unknown[]).map((entry, j) => {
      const at = `${where}.${key}[${j}]`;
      const e = record(entry, at, fail);
      onlyKeys(e, [inner], at, fail);
      const body = record(e[inner], `${at}.${inner}`, fail);
      return key === 'from' ? convertSource(body, `${at}.source`, policyNs, fail, l7, warnings) : convertOperation(body, `${at}.operation`, fail, l7);
    }));
  }
  if (rule.when !== undefined && rule.when !== null) {
    if (!Array.isArray(rule.when)) fail(`${where}.when must be a list`);
    (rule.when as unknown[]).forEach((raw, j) => {
      const match = convertCondition(raw, `${where}.when[${j}]`, fail, l7, warnings);
      if (match) clauses.push([match]);
    });
  }
  if (l7.length === 0) return { clauses };
  const found = l7.join(', ');
  if (action === 'ALLOW') {
    warnings.push(`${where} uses ${found}, which only an HTTP proxy can check; in an ALLOW policy the ztunnel never matches that rule (stricter than written). Put HTTP rules on a waypoint`);
    return null;
  }
  warnings.push(`${where} uses ${found}, which only an HTTP proxy can check; the ztunnel enforces this DENY rule without them, so it denies more than written. Put HTTP rules on a waypoint`);
  return { clauses };
}

function convertSource(src: Record<string, unknown>, at: string, policyNs: string, fail: Fail, l7: string[], warnings: string[]): L4Match {
  onlyKeys(src, [...SOURCE_L4, ...SOURCE_L7], at, fail);
  const list = (k: string) => stringList(src[k], `${at}.${k}`, fail);
  if (![...SOURCE_L4, ...SOURCE_L7].some((k) => list(k)?.length)) fail(`${at} must set at least one field; omit \`from\` to match any source`);
  for (const k of SOURCE_L7) if (list(k)?.length) l7.push(`${at}.${k}`);
  if (list('remoteIpBlocks')?.length || list('notRemoteIpBlocks')?.length) {
    warnings.push(`${at}: remoteIpBlocks are enforced as ipBlocks (and notRemoteIpBlocks as notIpBlocks): without a proxy hop the peer address is the client, but a client behind a proxy or waypoint is seen as that proxy`);
  }
  return sourceL4Match(list, at, policyNs, fail);
}

function convertOperation(op: Record<string, unknown>, at: string, fail: Fail, l7: string[]): L4Match {
  onlyKeys(op, [...OPERATION_L4, ...OPERATION_L7], at, fail);
  const list = (k: string) => stringList(op[k], `${at}.${k}`, fail);
  if (![...OPERATION_L4, ...OPERATION_L7].some((k) => list(k)?.length)) fail(`${at} must set at least one field; omit \`to\` to match any operation`);
  for (const k of OPERATION_L7) if (list(k)?.length) l7.push(`${at}.${k}`);
  const m: L4Match = {};
  setL4(m, 'ports', l4Ports(list('ports'), `${at}.ports`, fail));
  setL4(m, 'notPorts', l4Ports(list('notPorts'), `${at}.notPorts`, fail));
  return m;
}

/** Returns null for a condition L4 cannot check (recorded in l7). */
function convertCondition(raw: unknown, at: string, fail: Fail, l7: string[], warnings: string[]): L4Match | null {
  const c = record(raw, at, fail);
  onlyKeys(c, ['key', 'values', 'notValues'], at, fail);
  const key = c.key;
  if (typeof key !== 'string' || key === '') return fail(`${at}.key must be a non-empty string`);
  const values = stringList(c.values, `${at}.values`, fail);
  const notValues = stringList(c.notValues, `${at}.notValues`, fail);
  if (!values?.length && !notValues?.length) fail(`${at} (key ${key}) must set values or notValues`);
  if (isL7Key(key)) {
    l7.push(`${at} key ${key}`);
    return null;
  }
  if (!L4_CONDITION_KEYS.includes(key)) {
    fail(`${at}.key "${key}" is not a condition Istio defines; at L4 meshlet checks ${L4_CONDITION_KEYS.join(', ')}`);
  }
  if (key === 'remote.ip') warnings.push(`${at}: remote.ip is enforced as source.ip, the peer address, which is a proxy's for clients behind one`);
  return l4ConditionMatch(key, values, notValues, at, fail);
}

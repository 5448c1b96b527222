// Phase one of a control update for the policy kinds: the converted forms of
// policy/types.ts, checked field by field, so that what the ztunnel compiles
// into matchers (a CIDR list, a port set) is exactly what the agent's
// converter can produce, and a value of any other shape is refused naming
// the field instead of throwing where the policy store is built.
import { objectNameProblem } from '../cluster/names.ts';
import { parseCidr } from '../policy/match.ts';
import type { AuthzPolicy, AuthzRule, L4Match, MtlsSetting, PeerAuthPolicy } from '../policy/types.ts';
import type { L7Target } from '../l7/authz-types.ts';
import type { WaypointPolicy } from './model.ts';
import { fail, int, list, obj } from './validate.ts';

type Obj = Record<string, unknown>;

const STRING_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts'] as const;
const CIDR_FIELDS = ['sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps'] as const;
const PORT_FIELDS = ['ports', 'notPorts'] as const;
const MATCH_FIELDS: readonly string[] = [...STRING_FIELDS, ...CIDR_FIELDS, ...PORT_FIELDS];
const MTLS: readonly string[] = ['STRICT', 'PERMISSIVE', 'UNSET'];
const LEVELS: readonly string[] = ['mesh', 'namespace', 'workload'];

function text(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') fail(where, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

/** key, namespace and name, with key = namespace/name. */
function identity(o: Obj, where: string): { key: string; namespace: string; name: string } {
  const problem = objectNameProblem(o.namespace, 'namespace') ?? objectNameProblem(o.name, 'name');
  if (problem) fail(where, problem);
  const key = text(o.key, `${where}.key`);
  const namespace = o.namespace as string;
  const name = o.name as string;
  if (key !== `${namespace}/${name}`) fail(where, `key ${JSON.stringify(key)} does not match namespace/name`);
  return { key, namespace, name };
}

function labels(v: unknown, where: string): Record<string, string> | null {
  if (v === null) return null;
  const m = obj(v, where);
  for (const [k, value] of Object.entries(m)) if (typeof value !== 'string') fail(`${where}.${k}`, 'must be a string');
  return { ...(m as Record<string, string>) };
}

function match(v: unknown, where: string): L4Match {
  const o = obj(v, where);
  const m: L4Match = {};
  for (const key of Object.keys(o)) if (!MATCH_FIELDS.includes(key)) fail(where, `${key} is not a field of an L4 match`);
  for (const f of STRING_FIELDS) if (o[f] !== undefined) m[f] = list(o, f, where).map((s, i) => text(s, `${where}.${f}[${i}]`));
  for (const f of CIDR_FIELDS) {
    if (o[f] === undefined) continue;
    m[f] = list(o, f, where).map((c, i) => {
      if (typeof c !== 'string' || parseCidr(c) !== c) fail(`${where}.${f}[${i}]`, `not a canonical address/prefix: ${JSON.stringify(c)}`);
      return c;
    });
  }
  for (const f of PORT_FIELDS) if (o[f] !== undefined) m[f] = list(o, f, where).map((p, i) => int(p, `${where}.${f}[${i}]`, 1, 65535));
  return m;
}

function rule(v: unknown, where: string): AuthzRule {
  const o = obj(v, where);
  return {
    clauses: list(o, 'clauses', where).map((clause, i) => {
      if (!Array.isArray(clause)) fail(`${where}.clauses[${i}]`, 'must be an array');
      return (clause as unknown[]).map((m, j) => match(m, `${where}.clauses[${i}][${j}]`));
    }),
  };
}

function failClosed(o: Obj, where: string): { failClosed?: string } {
  return o.failClosed === undefined ? {} : { failClosed: text(o.failClosed, `${where}.failClosed`) };
}

export function validateAuthzPolicy(v: unknown, where: string): AuthzPolicy {
  const o = obj(v, where);
  const id = identity(o, where);
  const at = `AuthorizationPolicy ${id.key}`;
  if (o.action !== 'ALLOW' && o.action !== 'DENY') fail(at, `action must be ALLOW or DENY, got ${JSON.stringify(o.action)}`);
  const scope = obj(o.scope, `${at}.scope`);
  if (scope.namespace !== null && typeof scope.namespace !== 'string') fail(`${at}.scope.namespace`, 'must be a string or null');
  return {
    ...id,
    action: o.action,
    scope: { namespace: scope.namespace as string | null, matchLabels: labels(scope.matchLabels, `${at}.scope.matchLabels`) },
    rules: list(o, 'rules', at).map((r, i) => rule(r, `${at}.rules[${i}]`)),
    warnings: list(o, 'warnings', at).map((w, i) => text(w, `${at}.warnings[${i}]`)),
    ...failClosed(o, at),
  };
}

const mtls = (v: unknown, where: string): MtlsSetting => {
  if (typeof v !== 'string' || !MTLS.includes(v)) fail(where, `must be one of ${MTLS.join(', ')}, got ${JSON.stringify(v)}`);
  return v as MtlsSetting;
};

export function validatePeerAuthentication(v: unknown, where: string): PeerAuthPolicy {
  const o = obj(v, where);
  const id = identity(o, where);
  const at = `PeerAuthentication ${id.key}`;
  if (typeof o.level !== 'string' || !LEVELS.includes(o.level)) fail(at, `level must be one of ${LEVELS.join(', ')}`);
  const matchLabels = labels(o.matchLabels, `${at}.matchLabels`);
  // The store compiles workload-level policies by selector and the others by namespace alone.
  if ((o.level === 'workload') !== (matchLabels !== null)) fail(at, 'matchLabels must be set for the workload level, and only there');
  if (typeof o.createdAt !== 'number' || !Number.isFinite(o.createdAt)) fail(at, 'createdAt must be a number');
  return {
    ...id,
    level: o.level as PeerAuthPolicy['level'],
    matchLabels,
    mode: mtls(o.mode, `${at}.mode`),
    portLevelMtls: list(o, 'portLevelMtls', at).map((e, i) => {
      const p = obj(e, `${at}.portLevelMtls[${i}]`);
      return { port: int(p.port, `${at}.portLevelMtls[${i}].port`, 1, 65535), mode: mtls(p.mode, `${at}.portLevelMtls[${i}].mode`) };
    }),
    createdAt: o.createdAt,
    ...failClosed(o, at),
  };
}

/** A target as lib/l7's conversion (or its fail-closed stand-in) makes one. */
function target(v: unknown, where: string): L7Target {
  const o = obj(v, where);
  const named = (key: string): string => {
    const problem = objectNameProblem(o[key], key);
    if (problem) fail(where, problem);
    return o[key] as string;
  };
  const only = (...keys: string[]) => {
    for (const key of Object.keys(o)) if (key !== 'kind' && !keys.includes(key)) fail(where, `${key} is not a field of a ${String(o.kind)} target`);
  };
  switch (o.kind) {
    case 'gateway':
    case 'service':
      only('namespace', 'name');
      return { kind: o.kind, namespace: named('namespace'), name: named('name') };
    case 'gateway_class':
      only('name');
      return { kind: 'gateway_class', name: named('name') };
    case 'namespace':
      only('namespace');
      return { kind: 'namespace', namespace: named('namespace') };
    case 'mesh':
      only();
      return { kind: 'mesh' };
    default:
      return fail(where, `kind must be gateway, service, gateway_class, namespace or mesh, got ${JSON.stringify(o.kind)}`);
  }
}

export function validateWaypointPolicy(v: unknown, where: string): WaypointPolicy {
  const o = obj(v, where);
  const id = identity(o, where);
  const at = `waypoint AuthorizationPolicy ${id.key}`;
  if (o.action !== 'ALLOW' && o.action !== 'DENY') fail(at, `action must be ALLOW or DENY, got ${JSON.stringify(o.action)}`);
  return { ...id, action: o.action, targets: list(o, 'targets', at).map((t, i) => target(t, `${at}.targets[${i}]`)), ...failClosed(o, at) };
}

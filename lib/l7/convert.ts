// Phase one of a waypoint config update from raw cluster objects: each
// routing object and each waypoint AuthorizationPolicy converted on its own.
// Never throws, whatever the objects hold: a bad one is reported with its
// reason and left out; a rejected waypoint policy is replaced by its
// fail-closed stand-in. Keeping a rejected route's last good form is the
// caller's (as ClusterState does for its kinds), since only it sees updates
// over time.
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import type { PolicyOptions } from '../policy/types.ts';
import { convertL7AuthorizationPolicy } from './authz-convert.ts';
import { l7FailClosedEffect, l7FailClosedPolicy } from './authz-fail-closed.ts';
import type { L7AuthzPolicy } from './authz-types.ts';
import { convertDestinationRule, type ConvertedDestinationRule } from './destination-rule.ts';
import { GATEWAY_GROUP, NETWORKING_GROUP } from './fields.ts';
import { convertGRPCRoute, convertHTTPRoute } from './gateway-route.ts';
import type { ConvertedRoute } from './types.ts';
import { convertVirtualService, type RouteConvertOptions } from './virtual-service.ts';

export interface L7ConvertOptions extends RouteConvertOptions, PolicyOptions {}

export interface L7Config {
  routes: ConvertedRoute[];
  destinationRules: ConvertedDestinationRule[];
  authorizationPolicies: L7AuthzPolicy[];
}

export interface L7Rejection {
  /** "Kind namespace/name". */
  object: string;
  reason: string;
  rule: 'invalid';
  /** A waypoint policy's stand-in: what it does in the policy's place. */
  failClosed?: string;
}

export interface L7Update {
  config: L7Config;
  rejected: L7Rejection[];
}

type Converted =
  | { kind: 'route'; value: ConvertedRoute }
  | { kind: 'destinationRule'; value: ConvertedDestinationRule }
  | { kind: 'policy'; value: L7AuthzPolicy }
  | null;

const groupOf = (obj: KubeObject): string => (typeof obj.apiVersion === 'string' ? obj.apiVersion.split('/')[0]! : '');

/** One object; null for kinds the waypoint does not read (and for policies that are the ztunnel's). Throws InvalidObjectError. */
export function convertL7Object(obj: KubeObject, options: L7ConvertOptions = {}): Converted {
  const group = groupOf(obj);
  if (group === NETWORKING_GROUP && obj.kind === 'VirtualService') return { kind: 'route', value: convertVirtualService(obj, options) };
  if (group === NETWORKING_GROUP && obj.kind === 'DestinationRule') return { kind: 'destinationRule', value: convertDestinationRule(obj, options) };
  if (group === GATEWAY_GROUP && obj.kind === 'HTTPRoute') return { kind: 'route', value: convertHTTPRoute(obj, options) };
  if (group === GATEWAY_GROUP && obj.kind === 'GRPCRoute') return { kind: 'route', value: convertGRPCRoute(obj, options) };
  if (group === 'security.istio.io' && obj.kind === 'AuthorizationPolicy') {
    const policy = convertL7AuthorizationPolicy(obj, options);
    return policy ? { kind: 'policy', value: policy } : null;
  }
  return null;
}

export function convertL7Objects(objects: readonly KubeObject[], options: L7ConvertOptions = {}): L7Update {
  const config: L7Config = { routes: [], destinationRules: [], authorizationPolicies: [] };
  const rejected: L7Rejection[] = [];
  const seen = new Set<string>();
  for (const obj of objects) {
    const ref = objectRef(obj);
    let converted: Converted;
    try {
      converted = convertL7Object(obj, options);
    } catch (err) {
      const reason = err instanceof InvalidObjectError ? err.reason : `meshlet could not convert it: ${err instanceof Error ? err.message : String(err)}`;
      const standIn = standInFor(obj, reason, options);
      if (standIn) config.authorizationPolicies.push(standIn);
      rejected.push({ object: ref, reason, rule: 'invalid', ...(standIn ? { failClosed: l7FailClosedEffect(standIn) } : {}) });
      continue;
    }
    if (!converted) continue;
    // One object per kind, namespace and name, as a source holds them.
    const id = `${converted.kind}:${ref}`;
    if (seen.has(id)) {
      rejected.push({ object: ref, reason: 'the update holds two objects of this kind, namespace and name; only the first counts', rule: 'invalid' });
      continue;
    }
    seen.add(id);
    if (converted.kind === 'route') config.routes.push(converted.value);
    else if (converted.kind === 'destinationRule') config.destinationRules.push(converted.value);
    else config.authorizationPolicies.push(converted.value);
  }
  return { config, rejected };
}

function standInFor(obj: KubeObject, reason: string, options: PolicyOptions): L7AuthzPolicy | null {
  try {
    return l7FailClosedPolicy(obj, reason, options);
  } catch {
    // l7FailClosedPolicy reads defensively; should it still fail, the policy covers every waypoint rather than nothing.
    return { key: '<unreadable>', namespace: '<unreadable>', name: '<unreadable>', action: 'DENY', targets: [{ kind: 'mesh' }], rules: [{ clauses: [] }], warnings: [], failClosed: `rejected: ${reason}` };
  }
}

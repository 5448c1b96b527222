// Service host names as the routing resources write them and as the
// waypoint knows them: `<name>.<namespace>.svc.<domain>`. Istio resolves a
// short name (no dot) against the namespace of the object that wrote it, not
// the service's; a name with a dot is taken as written.
import type { Fail } from '../policy/fields.ts';
import { quote, text } from './fields.ts';

export const DEFAULT_DOMAIN = 'cluster.local';

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function serviceHost(name: string, namespace: string, domain = DEFAULT_DOMAIN): string {
  return `${name}.${namespace}.svc.${domain}`;
}

/** The Service a host names, when it is a cluster Service's FQDN. */
export function serviceOfHost(host: string, domain = DEFAULT_DOMAIN): { name: string; namespace: string } | undefined {
  const suffix = `.svc.${domain}`;
  if (!host.endsWith(suffix)) return undefined;
  const parts = host.slice(0, -suffix.length).split('.');
  return parts.length === 2 && parts.every((p) => LABEL.test(p)) ? { name: parts[0]!, namespace: parts[1]! } : undefined;
}

/**
 * A host from a VirtualService or DestinationRule, lower-cased and resolved:
 * `reviews` → `reviews.<namespace>.svc.<domain>`. `wildcard` allows `*` and
 * `*.suffix`. IP addresses are refused: Istio takes them only for ingress gateways.
 */
export function resolveHost(v: unknown, field: string, namespace: string, domain: string, fail: Fail, { wildcard = false } = {}): string {
  const raw = text(v, field, fail, { max: 253 }).toLowerCase();
  if (raw === '*' || raw.startsWith('*.')) {
    if (!wildcard) return fail(`${field} ${quote(raw)} is a wildcard; name one service`);
    if (raw !== '*' && !isDnsName(raw.slice(2))) return fail(`${field} ${quote(raw)} is not a host name`);
    return raw;
  }
  if (/^[\d.]+$/.test(raw) || raw.includes(':')) return fail(`${field} ${quote(raw)} is an IP address; a mesh service is named by its host name`);
  if (!isDnsName(raw)) return fail(`${field} ${quote(raw)} is not a host name: lower-case letters, digits, "-" and "." only`);
  return raw.includes('.') ? raw : serviceHost(raw, namespace, domain);
}

function isDnsName(v: string): boolean {
  return v.length <= 253 && v.split('.').every((l) => l.length <= 63 && LABEL.test(l));
}

/** Whether `pattern` (a host or `*`/`*.suffix` wildcard) covers `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1));
  return pattern === host;
}

/** How specific a matching pattern is: exact beats the longest wildcard suffix. */
export function hostSpecificity(pattern: string): number {
  return pattern.startsWith('*') ? pattern.length - 1 : Number.MAX_SAFE_INTEGER;
}

// The L4 parts of an AuthorizationPolicy rule — a `from` source's peer
// fields and a `when` condition on an L4 key — read into an L4Match. Shared
// by the ztunnel's conversion (authz-convert.ts) and the waypoint's
// (lib/l7/authz-convert.ts), which both enforce these fields the same way;
// warnings stay with each caller, as what they mean differs per hop.
import { parsePort, type Fail } from './fields.ts';
import { checkPattern, parseCidr, stripSpiffe } from './match.ts';
import type { L4Match } from './types.ts';

/** The L4 keys a `when` condition may name (Istio's reference/config/security/conditions). */
export const L4_CONDITION_KEYS = ['source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port'];

/** The source fields that name the peer; `list(k)` reads field k of the source (undefined when absent). */
export function sourceL4Match(list: (k: string) => string[] | undefined, at: string, policyNs: string, fail: Fail): L4Match {
  if ((list('serviceAccounts')?.length || list('notServiceAccounts')?.length) && ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].some((k) => list(k)?.length)) {
    fail(`${at} sets serviceAccounts together with principals or namespaces; use one or the other`);
  }
  const patterns = (k: string, strip: boolean) => list(k)?.map((p, i) => checkPattern(strip ? stripSpiffe(p) : p, `${at}.${k}[${i}]`, fail));
  const accounts = (k: string) => list(k)?.map((a, i) => serviceAccount(a, `${at}.${k}[${i}]`, policyNs, fail));
  const blocks = (...keys: string[]) => keys.flatMap((k) => cidrs(list(k) ?? [], `${at}.${k}`, fail));
  const m: L4Match = {};
  setL4(m, 'principals', patterns('principals', true));
  setL4(m, 'notPrincipals', patterns('notPrincipals', true));
  setL4(m, 'namespaces', patterns('namespaces', false));
  setL4(m, 'notNamespaces', patterns('notNamespaces', false));
  setL4(m, 'serviceAccounts', accounts('serviceAccounts'));
  setL4(m, 'notServiceAccounts', accounts('notServiceAccounts'));
  setL4(m, 'sourceIps', blocks('ipBlocks', 'remoteIpBlocks'));
  setL4(m, 'notSourceIps', blocks('notIpBlocks', 'notRemoteIpBlocks'));
  return m;
}

/** A `when` condition on one of L4_CONDITION_KEYS (the caller checks the key); remote.ip reads as source.ip. */
export function l4ConditionMatch(key: string, values: string[] | undefined, notValues: string[] | undefined, at: string, fail: Fail): L4Match {
  const m: L4Match = {};
  const both = <K extends keyof L4Match>(pos: K, neg: K, convert: (v: string[] | undefined, field: string) => L4Match[K]) => {
    setL4(m, pos, convert(values, `${at}.values`));
    setL4(m, neg, convert(notValues, `${at}.notValues`));
  };
  switch (key) {
    case 'source.ip':
    case 'remote.ip':
      both('sourceIps', 'notSourceIps', (v, f) => cidrs(v ?? [], f, fail));
      break;
    case 'destination.ip':
      both('destinationIps', 'notDestinationIps', (v, f) => cidrs(v ?? [], f, fail));
      break;
    case 'destination.port':
      both('ports', 'notPorts', (v, f) => l4Ports(v, f, fail));
      break;
    case 'source.namespace':
      both('namespaces', 'notNamespaces', (v, f) => v?.map((p, i) => checkPattern(p, `${f}[${i}]`, fail)));
      break;
    case 'source.principal':
      both('principals', 'notPrincipals', (v, f) => v?.map((p, i) => checkPattern(stripSpiffe(p), `${f}[${i}]`, fail)));
      break;
  }
  return m;
}

/** Leaves empty lists out, so an absent field and an empty one read the same. */
export function setL4<K extends keyof L4Match>(m: L4Match, key: K, value: L4Match[K]): void {
  if (value !== undefined && value.length > 0) m[key] = value;
}

export function l4Ports(values: string[] | undefined, field: string, fail: Fail): number[] | undefined {
  return values?.map((v) => parsePort(v) ?? fail(`${field} has "${v}", which is not a port; use numbers from 1 to 65535, e.g. "8080"`));
}

function cidrs(values: string[], field: string, fail: Fail): string[] {
  return values.map((v) => parseCidr(v) ?? fail(`${field} has "${v}", which is not an IP address or CIDR; write e.g. "10.0.0.0/16", "10.1.2.3" or "fd00::/8"`));
}

function serviceAccount(value: string, field: string, policyNs: string, fail: Fail): string {
  const parts = value.split('/');
  if (parts.length > 2 || parts.some((p) => p === '')) fail(`${field} "${value}" must be "<namespace>/<serviceaccount>" or "<serviceaccount>"`);
  return parts.length === 2 ? value : `${policyNs}/${value}`;
}

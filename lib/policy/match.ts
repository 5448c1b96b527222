// The values policies match on: identities, string patterns, CIDRs, ports.
// Parsing happens at conversion; the matchers are built once per state
// change and run per connection.
import { BlockList, isIP } from 'node:net';
import type { Fail } from './fields.ts';
import type { L4Match } from './types.ts';

const SPIFFE = 'spiffe://';
const IDENTITY = /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** Istio writes principals without the scheme; accept both forms. */
export function stripSpiffe(id: string): string {
  return id.startsWith(SPIFFE) ? id.slice(SPIFFE.length) : id;
}

/** Istio's string match: exact, `prefix*`, `*suffix`, or `*` for "any non-empty value". */
/** A SPIFFE ID is at most 2048 bytes; no principal or namespace pattern can usefully be longer. */
const MAX_PATTERN = 2048;
/** SPIFFE IDs, namespaces and names are printable ASCII: a pattern with anything else can never match. */
const PATTERN_CHARS = /^[\x21-\x7e]*$/;

export function checkPattern(value: string, field: string, fail: Fail): string {
  if (value.length > MAX_PATTERN) fail(`${field} is ${value.length} characters long; identities and names are at most ${MAX_PATTERN}`);
  if (!PATTERN_CHARS.test(value)) fail(`${field} ${JSON.stringify(value.slice(0, 64))} has characters no identity or name can hold (only printable ASCII without spaces matches)`);
  const inner = value.length > 1 ? value.slice(1, -1) : '';
  if (inner.includes('*') || (value.length > 1 && value.startsWith('*') && value.endsWith('*'))) {
    fail(`${field} "${value}" puts * in the middle or at both ends; Istio patterns allow one * at the start or the end only`);
  }
  return value;
}

export type IpFamily = 'ipv4' | 'ipv6';

export function ipFamily(ip: string): IpFamily | null {
  const v = isIP(ip);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : null;
}

/** A single IP or a CIDR, v4 or v6, returned as canonical `address/prefix`; null when malformed. */
export function parseCidr(text: string): string | null {
  const slash = text.indexOf('/');
  const address = (slash < 0 ? text : text.slice(0, slash)).toLowerCase();
  const family = ipFamily(address);
  if (family === null || address.includes('%')) return null;
  const max = family === 'ipv4' ? 32 : 128;
  if (slash < 0) return `${address}/${max}`;
  const bits = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return null;
  return `${address}/${Number(bits)}`;
}

/** What the policy knows about one connection, normalised once per check. */
export interface Connection {
  srcIp: string;
  srcFamily: IpFamily;
  dstIp: string;
  dstFamily: IpFamily;
  port: number;
  /** Without `spiffe://`; undefined for plaintext. */
  principal: string | undefined;
  namespace: string | undefined;
  /** `<ns>/<sa>`. */
  serviceAccount: string | undefined;
}

export function parseIdentity(principal: string): { namespace: string; serviceAccount: string } | null {
  const m = IDENTITY.exec(principal);
  return m ? { namespace: m[1]!, serviceAccount: m[2]! } : null;
}

type Check = (c: Connection) => boolean;

export type StringMatcher = (value: string | undefined) => boolean;

/** No value (a plaintext peer has no identity) matches no pattern, not even `*`. */
export function stringMatcher(patterns: readonly string[]): StringMatcher {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let presence = false;
  for (const p of patterns) {
    if (p === '*') presence = true;
    else if (p.startsWith('*')) suffixes.push(p.slice(1));
    else if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  return (value) => {
    if (value === undefined || value === '') return false;
    if (presence || exact.has(value)) return true;
    for (const p of prefixes) if (value.startsWith(p)) return true;
    for (const s of suffixes) if (value.endsWith(s)) return true;
    return false;
  };
}

/** node:net BlockList fits: it takes v4 and v6 subnets, masks host bits, and matches v4-mapped v6 peers against v4 rules. */
export function ipMatcher(cidrs: readonly string[]): (ip: string, family: IpFamily) => boolean {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const slash = cidr.lastIndexOf('/');
    const address = cidr.slice(0, slash);
    list.addSubnet(address, Number(cidr.slice(slash + 1)), ipFamily(address)!);
  }
  return (ip, family) => list.check(ip, family);
}

/** Compiles one match; checks run only for the fields it sets. */
export function compileMatch(m: L4Match): Check {
  const checks: Check[] = [];
  const both = <T>(pos: T[] | undefined, neg: T[] | undefined, build: (values: T[]) => Check) => {
    if (pos?.length) checks.push(build(pos));
    if (neg?.length) {
      const hit = build(neg);
      checks.push((c) => !hit(c));
    }
  };
  both(m.principals, m.notPrincipals, (v) => { const f = stringMatcher(v); return (c) => f(c.principal); });
  both(m.namespaces, m.notNamespaces, (v) => { const f = stringMatcher(v); return (c) => f(c.namespace); });
  both(m.serviceAccounts, m.notServiceAccounts, (v) => { const s = new Set(v); return (c) => c.serviceAccount !== undefined && s.has(c.serviceAccount); });
  both(m.sourceIps, m.notSourceIps, (v) => { const f = ipMatcher(v); return (c) => f(c.srcIp, c.srcFamily); });
  both(m.destinationIps, m.notDestinationIps, (v) => { const f = ipMatcher(v); return (c) => f(c.dstIp, c.dstFamily); });
  both(m.ports, m.notPorts, (v) => { const s = new Set(v); return (c) => s.has(c.port); });
  if (checks.length === 0) return () => true;
  if (checks.length === 1) return checks[0]!;
  return (c) => {
    for (const check of checks) if (!check(c)) return false;
    return true;
  };
}

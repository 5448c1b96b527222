// L7 authorization of one request at the waypoint, in Istio's order (CUSTOM
// is refused at conversion): a matching DENY denies; with no ALLOW policy
// for the request's targets it is allowed; a matching ALLOW allows; anything
// else is denied. A denial is served as 403 `RBAC: access denied`
// (local-replies.ts). The source and port fields are lib/policy's matchers,
// run on the client's HBONE identity.
import { compileMatch, ipFamily, parseIdentity, stripSpiffe, stringMatcher, type Connection } from '../policy/match.ts';
import type { AuthzDecision } from '../policy/types.ts';
import type { L7AuthzOptions, L7AuthzPolicy, L7Match, L7Target } from './authz-types.ts';
import { DEFAULT_DOMAIN, serviceOfHost } from './hosts.ts';
import { pathMatcher } from './path-pattern.ts';
import { authorityOf, headerOf, type L7Request } from './request.ts';

/** What one request presents to the matchers, worked out once. */
interface Subject {
  request: L7Request;
  /** null when the source address is no IP: L4 fields cannot be checked. */
  connection: Connection | null;
  authority: string;
}

type Check = (s: Subject) => boolean;

interface Compiled {
  key: string;
  action: 'ALLOW' | 'DENY';
  failClosed?: string;
  targets: readonly L7Target[];
  matches: Check;
}

/** The waypoint's policies, compiled once per change. */
export class L7AuthzSet {
  readonly policies: readonly L7AuthzPolicy[];
  readonly options: Required<L7AuthzOptions>;
  #deny: Compiled[];
  #allow: Compiled[];

  constructor(policies: readonly L7AuthzPolicy[], options: L7AuthzOptions) {
    this.options = { domain: DEFAULT_DOMAIN, ...options };
    this.policies = [...policies].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const compiled = this.policies.map(compilePolicy);
    this.#deny = compiled.filter((p) => p.action === 'DENY');
    this.#allow = compiled.filter((p) => p.action === 'ALLOW');
  }

  /** Whether any policy applies to requests for this service host: the ztunnel then refuses traffic that bypasses the waypoint. */
  governs(host: string): boolean {
    const service = serviceOfHost(host, this.options.domain);
    return [...this.#deny, ...this.#allow].some((p) => this.#targets(p, service));
  }

  /** The decision for one request; evaluateL7Authz is the same, as a function. */
  decide(request: L7Request): AuthzDecision {
    const subject = subjectOf(request);
    const service = serviceOfHost(request.service.host, this.options.domain);
    for (const p of this.#deny) {
      if (!this.#targets(p, service) || !p.matches(subject)) continue;
      const reason = p.failClosed === undefined ? `denied by DENY policy ${p.key}` : `denied by AuthorizationPolicy ${p.key}, which fails closed: it was ${p.failClosed}`;
      return { allowed: false, verdict: 'deny', policy: p.key, reason };
    }
    let targeted: string | undefined;
    for (const p of this.#allow) {
      if (!this.#targets(p, service)) continue;
      targeted ??= p.key;
      if (p.matches(subject)) return { allowed: true, verdict: 'allow', policy: p.key, reason: `allowed by ALLOW policy ${p.key}` };
    }
    return targeted === undefined
      ? { allowed: true, verdict: 'allow', reason: 'no ALLOW policy targets this waypoint or service' }
      : { allowed: false, verdict: 'deny', reason: `no ALLOW policy for ${request.service.host} matched (one is ${targeted})` };
  }

  #targets(p: Compiled, service: { name: string; namespace: string } | undefined): boolean {
    const w = this.options.waypoint;
    return p.targets.some((t) => {
      switch (t.kind) {
        case 'gateway':
          return t.namespace === w.namespace && t.name === w.name;
        case 'gateway_class':
          return w.className === t.name;
        case 'service':
          return service !== undefined && t.namespace === service.namespace && t.name === service.name;
        case 'namespace':
          return t.namespace === w.namespace || t.namespace === service?.namespace;
        case 'mesh':
          return true;
      }
    });
  }
}

/** allow or deny, with the deciding policy's `namespace/name` when one decided. */
export function evaluateL7Authz(policies: L7AuthzSet, request: L7Request): AuthzDecision {
  return policies.decide(request);
}

function subjectOf(request: L7Request): Subject {
  const { source, service } = request;
  const srcFamily = ipFamily(source.ip);
  const dstIp = service.address ?? '';
  const dstFamily = ipFamily(dstIp);
  const principal = source.principal ? stripSpiffe(source.principal) : undefined;
  // The namespace counts only with an authenticated identity, the identity's own first (as at L4).
  const id = principal === undefined ? null : parseIdentity(principal);
  const connection: Connection | null = srcFamily === null ? null : {
    srcIp: source.ip,
    srcFamily,
    // Without the VIP, a destination.ip condition sees an unspecified address, which no block holds but ::/0.
    dstIp: dstFamily === null ? '::' : dstIp,
    dstFamily: dstFamily ?? 'ipv6',
    port: service.port,
    principal,
    namespace: principal === undefined ? undefined : (id?.namespace ?? source.namespace),
    serviceAccount: id ? `${id.namespace}/${id.serviceAccount}` : undefined,
  };
  return { request, connection, authority: authorityOf(request).toLowerCase() };
}

function compilePolicy(p: L7AuthzPolicy): Compiled {
  const rules = p.rules.map((r) => r.clauses.map((clause) => clause.map((m) => compileL7Match(m, p.action))));
  const matches: Check = (s) => {
    for (const clauses of rules) if (clauses.every((clause) => clause.some((m) => m(s)))) return true;
    return false;
  };
  return { key: p.key, action: p.action, targets: p.targets, matches, ...(p.failClosed === undefined ? {} : { failClosed: p.failClosed }) };
}

/**
 * One match. A source address that is no IP leaves the L4 fields unknown:
 * then a DENY match counts them as matching and an ALLOW match as not, so an
 * unreadable request never gains access.
 */
function compileL7Match(m: L7Match, action: 'ALLOW' | 'DENY'): Check {
  if (m.never !== undefined) return () => false;
  const checks: Check[] = [];
  if (m.l4) {
    const l4 = compileMatch(m.l4);
    checks.push((s) => (s.connection === null ? action === 'DENY' : l4(s.connection)));
  }
  const both = (pos: string[] | undefined, neg: string[] | undefined, build: (v: string[]) => (s: Subject) => boolean) => {
    if (pos?.length) checks.push(build(pos));
    if (neg?.length) {
      const hit = build(neg);
      checks.push((s) => !hit(s));
    }
  };
  both(m.methods, m.notMethods, (v) => { const f = stringMatcher(v); return (s) => f(s.request.method); });
  both(m.hosts, m.notHosts, (v) => { const f = stringMatcher(v); return (s) => f(s.authority); });
  both(m.paths, m.notPaths, (v) => { const f = pathMatcher(v); return (s) => f(s.request.path); });
  if (m.header) {
    const { name, values, notValues } = m.header;
    // `*` is Envoy's present_match, which an empty value passes too; stringMatcher's `*` wants a non-empty one.
    const test = (patterns: string[]) => {
      const f = stringMatcher(patterns.filter((p) => p !== '*'));
      const present = patterns.includes('*');
      return (s: Subject) => {
        const v = headerOf(s.request.headers, name);
        return v !== undefined && (present || f(v));
      };
    };
    both(values, notValues, test);
  }
  return (s) => checks.every((c) => c(s));
}

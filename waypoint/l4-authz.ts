// The waypoint's AuthorizationPolicies as they apply to a connection it
// carries at L4 (a TCP-family port, or one whose first bytes were not HTTP):
// only the client's HBONE identity, its address and the destination port are
// known. HTTP attributes fail closed, as the ztunnel treats them: an ALLOW
// rule that needs one never matches, a DENY rule is applied without it and so
// matches more. Each policy that loses something says so, for the operator.
import type { L7AuthzPolicy, L7Match } from '../lib/l7/index.ts';

export interface L4PolicyView {
  policies: L7AuthzPolicy[];
  /** One per policy an HTTP attribute was set aside in. */
  warnings: { object: string; message: string }[];
}

/** What of a match only an HTTP request has (the JWT ones are `never`). */
function httpAttributes(m: L7Match): string[] {
  const names: string[] = [];
  if (m.methods?.length || m.notMethods?.length) names.push('methods');
  if (m.paths?.length || m.notPaths?.length) names.push('paths');
  if (m.hosts?.length || m.notHosts?.length) names.push('hosts');
  if (m.header) names.push(`request.headers[${m.header.name}]`);
  if (m.never !== undefined) names.push(m.never);
  return names;
}

function l4Match(m: L7Match, action: L7AuthzPolicy['action'], lost: Set<string>): L7Match {
  const http = httpAttributes(m);
  if (http.length === 0) return m;
  for (const name of http) lost.add(name);
  if (action === 'ALLOW') return { never: `it needs ${http.join(', ')}, which a TCP connection does not have` };
  return m.l4 ? { l4: m.l4 } : {};
}

export function l4PolicyView(policies: readonly L7AuthzPolicy[]): L4PolicyView {
  const warnings: L4PolicyView['warnings'] = [];
  const out = policies.map((p): L7AuthzPolicy => {
    const lost = new Set<string>();
    const rules = p.rules.map((r) => ({ clauses: r.clauses.map((clause) => clause.map((m) => l4Match(m, p.action, lost))) }));
    if (lost.size > 0 && p.failClosed === undefined) {
      const effect = p.action === 'ALLOW' ? 'its rules that use them never allow a TCP connection' : 'its rules that use them deny TCP connections without them';
      warnings.push({ object: `AuthorizationPolicy ${p.key}`, message: `HTTP attributes (${[...lost].join(', ')}) cannot be checked on connections the waypoint carries at L4: ${effect}` });
    }
    return { ...p, rules };
  });
  return { policies: out, warnings };
}

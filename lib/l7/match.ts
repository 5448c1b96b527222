// RequestMatch → a predicate over one request, compiled once per route table
// and run per request. Semantics are Envoy's route matching as Istio
// configures it: regexes match the whole value, a header condition on an
// absent header fails, a withoutHeaders condition on one succeeds.
import { compileRegex } from './regex.ts';
import { authorityOf, headerOf, parseQuery, type L7Request } from './request.ts';
import { parseIdentity, stripSpiffe } from '../policy/match.ts';
import type { NameMatch, PathMatch, RequestMatch, StringMatch } from './types.ts';

/** A request with what several conditions need worked out once. */
export class PreparedRequest {
  readonly request: L7Request;
  #query: Map<string, string> | undefined;
  #grpc: { service: string; method: string } | null | undefined;
  #namespace: string | null | undefined;

  constructor(request: L7Request) {
    this.request = request;
  }

  get query(): Map<string, string> {
    return (this.#query ??= parseQuery(this.request.query));
  }

  /** `/<service>/<method>`, or null for a path of another shape. */
  get grpc(): { service: string; method: string } | null {
    if (this.#grpc === undefined) {
      const parts = this.request.path.split('/');
      this.#grpc = parts.length === 3 && parts[1] !== '' && parts[2] !== '' ? { service: parts[1]!, method: parts[2]! } : null;
    }
    return this.#grpc;
  }

  /** The client's namespace, from its identity only (as Istio's source.namespace). */
  get sourceNamespace(): string | null {
    if (this.#namespace === undefined) {
      const principal = this.request.source.principal;
      this.#namespace = principal === undefined ? null : (parseIdentity(stripSpiffe(principal))?.namespace ?? this.request.source.namespace ?? null);
    }
    return this.#namespace;
  }
}

export type RequestPredicate = (r: PreparedRequest) => boolean;

type ValueTest = (value: string | undefined) => boolean;

function compileStringMatch(m: StringMatch, { ignoreCase = false } = {}): ValueTest {
  switch (m.kind) {
    case 'present':
      return (v) => v !== undefined;
    case 'exact': {
      if (!ignoreCase) return (v) => v === m.value;
      const want = m.value.toLowerCase();
      return (v) => v !== undefined && v.toLowerCase() === want;
    }
    case 'prefix': {
      if (!ignoreCase) return (v) => v !== undefined && v.startsWith(m.value);
      const want = m.value.toLowerCase();
      return (v) => v !== undefined && v.toLowerCase().startsWith(want);
    }
    case 'regex': {
      const re = compileRegex(m.value);
      return (v) => v !== undefined && re.test(v);
    }
  }
}

function compilePath(m: PathMatch, ignoreCase: boolean): ValueTest {
  if (m.kind === 'segment_prefix') {
    // Whole path elements: "/abc" covers "/abc" and "/abc/...", never "/abcd"; "" (from "/") covers all.
    if (m.value === '') return () => true;
    const dir = `${m.value}/`;
    return (v) => v !== undefined && (v === m.value || v.startsWith(dir));
  }
  // Istio's ignoreUriCase applies to exact and prefix matches only.
  return compileStringMatch(m, { ignoreCase: ignoreCase && m.kind !== 'regex' });
}

function compileName(m: NameMatch): (v: string) => boolean {
  if (m.kind === 'exact') return (v) => v === m.value;
  const re = compileRegex(m.value);
  return (v) => re.test(v);
}

export function compileRequestMatch(m: RequestMatch): RequestPredicate {
  const checks: RequestPredicate[] = [];
  if (m.port !== undefined) {
    const port = m.port;
    checks.push((r) => r.request.service.port === port);
  }
  if (m.path) {
    const test = compilePath(m.path, m.ignoreCase === true);
    checks.push((r) => test(r.request.path));
  }
  if (m.method) {
    const test = compileStringMatch(m.method);
    checks.push((r) => test(r.request.method));
  }
  if (m.authority) {
    const test = compileStringMatch(m.authority);
    checks.push((r) => test(authorityOf(r.request)));
  }
  if (m.scheme) {
    const test = compileStringMatch(m.scheme);
    checks.push((r) => test(r.request.scheme ?? 'http'));
  }
  for (const h of m.headers) {
    const test = compileStringMatch(h.match);
    checks.push((r) => test(headerOf(r.request.headers, h.name)));
  }
  for (const h of m.withoutHeaders) {
    const test = compileStringMatch(h.match);
    // Presence inverted is absence; any other condition sees an absent header as "".
    checks.push(h.match.kind === 'present' ? (r) => !test(headerOf(r.request.headers, h.name)) : (r) => !test(headerOf(r.request.headers, h.name) ?? ''));
  }
  for (const q of m.queryParams) {
    const test = compileStringMatch(q.match);
    checks.push((r) => test(r.query.get(q.name)));
  }
  if (m.sourceNamespace !== undefined) {
    const ns = m.sourceNamespace;
    checks.push((r) => r.sourceNamespace === ns);
  }
  if (m.grpc) {
    const service = m.grpc.service && compileName(m.grpc.service);
    const method = m.grpc.method && compileName(m.grpc.method);
    checks.push((r) => {
      const g = r.grpc;
      return g !== null && (!service || service(g.service)) && (!method || method(g.method));
    });
  }
  return (r) => {
    for (const check of checks) if (!check(r)) return false;
    return true;
  };
}

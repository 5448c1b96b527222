// Path and authority rewrites, redirect locations and the mirror's Host,
// pure functions of the request and the rule. A rewrite or redirect that
// replaces "the matched prefix" carries the prefix that matched (bound when
// the route was selected), so these need nothing else.
import { compileRegex, re2Substitution } from './regex.ts';
import { authorityOf, type L7Request } from './request.ts';
import type { PathRewrite, Redirect, RedirectPort, RequestMatch, Rewrite } from './types.ts';

/** A path rewrite with what the route's match contributes to it. */
export type BoundPathRewrite =
  /** Envoy's prefix_rewrite: `matched` (the prefix, the exact path, or "/" without a path match) is swapped for `value`. */
  | { kind: 'replace_prefix'; matched: string; ignoreCase: boolean; value: string }
  /** Gateway API's ReplacePrefixMatch over whole path elements; `matched` has no trailing "/" ("" for "/"). */
  | { kind: 'replace_segment_prefix'; matched: string; value: string }
  | { kind: 'full'; value: string }
  /** Every match of `regex` (global) replaced; `substitution` in String.replace's syntax. */
  | { kind: 'regex'; regex: RegExp; substitution: string };

export interface BoundRewrite {
  path?: BoundPathRewrite;
  authority?: string;
}

export interface BoundRedirect {
  status: number;
  scheme?: string;
  authority?: string;
  port?: RedirectPort;
  path?: BoundPathRewrite;
}

/** A path rewrite bound to the match that selected the route: compiled once, with the table. */
function bindPathRewrite(rewrite: PathRewrite, match: RequestMatch | undefined): BoundPathRewrite {
  switch (rewrite.kind) {
    case 'full':
      return rewrite;
    case 'regex':
      return { kind: 'regex', regex: compileRegex(rewrite.pattern, { whole: false, global: true }), substitution: re2Substitution(rewrite.substitution) };
    case 'replace_prefix': {
      const path = match?.path;
      // Without a path match Envoy's route matches prefix "/", and that is the prefix replaced.
      const matched = path && path.kind !== 'regex' ? path.value : '/';
      return { kind: 'replace_prefix', matched, ignoreCase: match?.ignoreCase === true, value: rewrite.value };
    }
    case 'replace_segment_prefix':
      return { kind: 'replace_segment_prefix', matched: match?.path?.kind === 'segment_prefix' ? match.path.value : '', value: rewrite.value };
  }
}

export function bindRewrite(rewrite: Rewrite, match: RequestMatch | undefined): BoundRewrite {
  return { ...(rewrite.path ? { path: bindPathRewrite(rewrite.path, match) } : {}), ...(rewrite.authority ? { authority: rewrite.authority } : {}) };
}

export function bindRedirect(redirect: Redirect, match: RequestMatch | undefined): BoundRedirect {
  const { path, ...rest } = redirect;
  return { ...rest, ...(path ? { path: bindPathRewrite(path, match) } : {}) };
}

/** `path` (no query) after the rewrite. */
export function rewritePath(path: string, rewrite: BoundPathRewrite): string {
  switch (rewrite.kind) {
    case 'full':
      return rewrite.value;
    case 'regex':
      return path.replace(rewrite.regex, rewrite.substitution);
    case 'replace_prefix': {
      const head = path.slice(0, rewrite.matched.length);
      const matches = rewrite.ignoreCase ? head.toLowerCase() === rewrite.matched.toLowerCase() : head === rewrite.matched;
      return matches ? rewrite.value + path.slice(rewrite.matched.length) : path;
    }
    case 'replace_segment_prefix': {
      if (path !== rewrite.matched && !path.startsWith(`${rewrite.matched}/`)) return path;
      // The spec's table: "/foo/bar" with prefix "/foo" and "/xyz/" (or "/xyz") → "/xyz/bar"; with "" or "/" → "/bar".
      const rest = path.slice(rewrite.matched.length);
      const joined = rewrite.value.replace(/\/+$/, '') + rest;
      return joined === '' ? '/' : joined.startsWith('/') ? joined : `/${joined}`;
    }
  }
}

/** The :path and :authority sent upstream. The query string stays unless the new path brings its own. */
export function applyRewrite(request: L7Request, rewrite: BoundRewrite | undefined): { path: string; authority: string } {
  const authority = rewrite?.authority ?? authorityOf(request);
  const path = rewrite?.path ? rewritePath(request.path, rewrite.path) : request.path;
  return { path: withQuery(path, request.query), authority };
}

function withQuery(path: string, query: string): string {
  return query === '' || path.includes('?') ? path : `${path}?${query}`;
}

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };

function splitHostPort(authority: string): { host: string; port?: number } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority };
  return m[2] === undefined ? { host: m[1]! } : { host: m[1]!, port: Number(m[2]) };
}

/**
 * The Location of a redirect, as Envoy builds it: the request's scheme, host,
 * port and path unless the rule replaces them; a replaced host comes without
 * the request's port. A port that is its scheme's default is left out.
 */
export function redirectLocation(request: L7Request, redirect: BoundRedirect): string {
  const from = request.scheme ?? 'http';
  const scheme = redirect.scheme ?? from;
  const original = splitHostPort(authorityOf(request));
  const host = redirect.authority ? splitHostPort(redirect.authority) : original;
  let port: number | undefined = host.port;
  // Envoy drops the request's port when the scheme changes and it was the old scheme's default.
  if (!redirect.authority && scheme !== from && port === DEFAULT_PORTS[from]) port = undefined;
  switch (redirect.port?.kind) {
    case 'fixed':
      port = redirect.port.port;
      break;
    case 'protocol_default':
      port = undefined;
      break;
    case 'request':
      port = original.port ?? request.service.port;
      break;
  }
  const shownPort = port === undefined || port === DEFAULT_PORTS[scheme] ? '' : `:${port}`;
  const path = redirect.path ? rewritePath(request.path, redirect.path) : request.path;
  return `${scheme}://${host.host}${shownPort}${withQuery(path, request.query)}`;
}

/** Envoy's Host for a mirrored request: `-shadow` after the host name, before any port. */
export function shadowAuthority(authority: string): string {
  const { host, port } = splitHostPort(authority);
  return `${host}-shadow${port === undefined ? '' : `:${port}`}`;
}

// The value a DestinationRule's consistentHash hashes, read from a request
// the way Envoy's hash policies read it: a header, a cookie, the source IP, or
// a query parameter (first value; names case-sensitive). No value means no
// hash (the balancer then picks at random), except a cookie with a TTL: then,
// as Envoy does, a cookie is generated from the client's address, hashed, and
// handed back for the response to set.
import type { HashKey } from '../../lib/l7/cluster-policy.ts';
import type { RequestView } from './endpoint.ts';
import { hash32 } from './hash.ts';

export interface RequestHash {
  /** The request's hash, or undefined when the key is absent. */
  hash: number | undefined;
  /** A `Set-Cookie` value for the response, when the hash cookie was generated. */
  setCookie?: string;
}

const firstOf = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** A cookie's value from Cookie headers (several may arrive joined by `; `, or as an array). */
export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  for (const line of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
      const value = pair.slice(eq + 1).trim();
      return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
  }
  return undefined;
}

/** The first value of query parameter `name` in a request target, decoded. */
export function queryValue(path: string, name: string): string | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  const hash = path.indexOf('#', q);
  const value = new URLSearchParams(path.slice(q + 1, hash < 0 ? undefined : hash)).get(name);
  return value ?? undefined;
}

/** `name="value"; Max-Age=N; HttpOnly`, the shape of Envoy's generated hash cookie (no Max-Age for a TTL of 0: a session cookie). */
function hashCookie(name: string, value: string, ttlMs: number): string {
  const maxAge = Math.floor(ttlMs / 1000);
  return `${name}="${value}"${maxAge > 0 ? `; Max-Age=${maxAge}` : ''}; HttpOnly`;
}

export function requestHash(key: HashKey, request: RequestView): RequestHash {
  switch (key.kind) {
    case 'header': {
      const v = firstOf(request.headers[key.name.toLowerCase()]);
      return { hash: v === undefined ? undefined : hash32(v) };
    }
    case 'source_ip':
      return { hash: hash32(request.sourceIp) };
    case 'query_parameter': {
      const v = queryValue(request.path, key.name);
      return { hash: v === undefined ? undefined : hash32(v) };
    }
    case 'cookie': {
      const v = cookieValue(request.headers.cookie, key.name);
      if (v !== undefined) return { hash: hash32(v) };
      if (key.ttlMs === undefined) return { hash: undefined };
      // One value per client connection, so requests racing on it agree.
      const generated = hash32(`${request.sourceIp}:${request.sourcePort ?? 0}`).toString(16).padStart(8, '0');
      return { hash: hash32(generated), setCookie: hashCookie(key.name, generated, key.ttlMs) };
    }
  }
}

// What routing and L7 authorization see of one request. The waypoint builds
// it once per request: the service from the HBONE :authority (never from the
// Host header), the path normalised as Envoy's normalize_path does before
// any route or policy reads it, headers lower-cased.

export interface L7Request {
  method: string;
  /** `http` unless the client spoke TLS to the waypoint, which clients in the mesh do not. */
  scheme?: string;
  /** The destination Service, from the HBONE :authority (VIP:port). */
  service: {
    /** FQDN, e.g. `reviews.default.svc.cluster.local`. */
    host: string;
    port: number;
    /** The VIP the client dialled: `destination.ip` for authorization. */
    address?: string;
  };
  /** Normalised (normalizePath), without the query. */
  path: string;
  /** The raw query string, without `?`. */
  query: string;
  /** Lower-case names; repeated headers joined with `,` (set-cookie aside). `host` holds Host or :authority. */
  headers: Readonly<Record<string, string>>;
  /** The client, from its HBONE identity: never from a header. */
  source: {
    ip: string;
    /** SPIFFE ID of the client workload; absent for a plaintext peer. */
    principal?: string;
    /** Its namespace; counts only with a principal. */
    namespace?: string;
  };
}

/** A header's value; own properties only, so a header named like an Object.prototype member (`constructor`) is not taken for one. */
export function headerOf(headers: Readonly<Record<string, string>>, name: string): string | undefined {
  return Object.hasOwn(headers, name) ? headers[name] : undefined;
}

/** The request's Host header (or :authority), or the service host when the client sent none. */
export function authorityOf(request: L7Request): string {
  return headerOf(request.headers, 'host') ?? headerOf(request.headers, ':authority') ?? request.service.host;
}

/** Whether the request is gRPC, by its content type. */
export function isGrpc(request: L7Request): boolean {
  return (headerOf(request.headers, 'content-type') ?? '').startsWith('application/grpc');
}

/** Whether a path (without its query) has anything normalisation changes: a backslash, a percent-encoding, a segment starting with a dot, or no leading slash. */
const NEEDS_NORMALISING = /[\\%]|\/\.|^(?!\/)/;

/**
 * The path Envoy's normalize_path (RFC 3986 section 6) gives routes and
 * policies: dot segments removed (`%2e` counts as a dot), backslashes as
 * slashes, percent-encoded unreserved characters decoded, the rest of the
 * percent-encodings upper-cased. `%2F` stays encoded, as Istio keeps it.
 * Returns the normalised path and the query apart. Most paths have nothing
 * to normalise and are returned as they came, without the work.
 */
export function normalizePath(raw: string): { path: string; query: string } {
  const q = raw.indexOf('?');
  const hash = raw.indexOf('#');
  const end = q >= 0 ? q : hash >= 0 ? hash : raw.length;
  const query = q >= 0 ? raw.slice(q + 1, hash > q ? hash : raw.length) : '';
  const path = raw.slice(0, end);
  return { path: NEEDS_NORMALISING.test(path) ? normalisedPath(path) : path, query };
}

/** normalizePath's work on the path alone, whatever it holds. */
export function normalisedPath(raw: string): string {
  let path = raw.replace(/\\/g, '/');
  path = path.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${hex.toUpperCase()}`;
  });
  if (!path.startsWith('/')) path = `/${path}`;
  const out: string[] = [];
  const segments = path.split('/').slice(1);
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '.') {
      if (last) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(seg);
    }
  });
  return `/${out.join('/')}`;
}

/** The first value of each query parameter, decoded (Envoy matches the first occurrence). */
export function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decode(eq < 0 ? part : part.slice(0, eq));
    if (!params.has(name)) params.set(name, eq < 0 ? '' : decode(part.slice(eq + 1)));
  }
  return params;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

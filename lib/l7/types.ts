// The route side's own forms: what VirtualServices, HTTPRoutes and GRPCRoutes
// become once converted. Plain data (JSON-safe), so a control plane can ship
// them; the route table (route-table.ts) compiles them into matchers once per
// change. Durations are milliseconds, percentages 0-100.

/** Istio's StringMatch (Gateway API's Exact and RegularExpression map onto it). `present`: the value exists, whatever it is. */
export type StringMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'regex'; value: string }
  | { kind: 'present' };

/**
 * A path condition. `prefix` is a string prefix (Istio); `segment_prefix` is
 * Gateway API's PathPrefix, whole path elements only (`/abc` matches `/abc`
 * and `/abc/d`, never `/abcd`), its value without a trailing `/` ("" for `/`).
 */
export type PathMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'segment_prefix'; value: string }
  | { kind: 'regex'; value: string };

/** A gRPC service or method condition (GRPCRoute). */
export type NameMatch = { kind: 'exact'; value: string } | { kind: 'regex'; value: string };

export interface HeaderCondition {
  /** Lower-case. */
  name: string;
  match: StringMatch;
}

export interface QueryCondition {
  /** As written: query parameter names are case-sensitive. */
  name: string;
  match: StringMatch;
}

/** All conditions are ANDed; an empty match matches every request. */
export interface RequestMatch {
  /** For access logs: Istio's match name, or Gateway API's rule name. */
  name?: string;
  path?: PathMatch;
  /** Istio's ignoreUriCase: exact and prefix path matches ignore case. */
  ignoreCase?: boolean;
  method?: StringMatch;
  /** The Host header (HTTP/1) or :authority (HTTP/2), as sent. */
  authority?: StringMatch;
  /** `http` for clients of a waypoint (plain HTTP inside HBONE). */
  scheme?: StringMatch;
  headers: HeaderCondition[];
  /** Each must NOT match; an absent header counts as an empty value (Envoy's treat_missing_header_as_empty). */
  withoutHeaders: HeaderCondition[];
  queryParams: QueryCondition[];
  /** The service port the request was sent to. */
  port?: number;
  /** The client's namespace, from its authenticated identity. */
  sourceNamespace?: string;
  grpc?: { service?: NameMatch; method?: NameMatch };
}

export interface HeaderValue {
  /** Lower-case. */
  name: string;
  value: string;
}

/** Applied in Envoy's order: remove, then set (overwrite or add), then add (append). */
export interface HeaderOps {
  set: HeaderValue[];
  add: HeaderValue[];
  remove: string[];
}

export interface HeaderRules {
  request: HeaderOps;
  response: HeaderOps;
}

/** A service to send a request to: a DestinationRule subset of it, when named. */
export interface Backend {
  /** FQDN, e.g. `reviews.default.svc.cluster.local`. */
  host: string;
  /** Service port; absent: the port the request came in on, or the service's only port. */
  port?: number;
  subset?: string;
}

/** One weighted choice of a forward rule. `invalid`: a backend Gateway API says must answer 500 for its share. */
export type RouteDestination =
  | { weight: number; backend: Backend; headers: HeaderRules }
  | { weight: number; invalid: string };

/** Envoy's retry conditions (x-envoy-retry-on and x-envoy-retry-grpc-on). */
export const RETRY_CONDITIONS = [
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

export interface RetryPolicy {
  /** Retries after the first try (Envoy's num_retries); at most 1 + attempts requests. */
  attempts: number;
  /** Each try's own deadline; absent: only the route timeout bounds them. */
  perTryTimeoutMs?: number;
  retryOn: RetryCondition[];
  /** Statuses `retriable-status-codes` retries. */
  retriableStatusCodes: number[];
  /** Envoy's previous_hosts predicate: a retry prefers an endpoint not yet tried. */
  ignorePreviousHosts: boolean;
  /** Envoy's backoff: exponential from the base, with jitter, capped at max. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export type FaultAbort =
  | { percent: number; httpStatus: number }
  /** gRPC status code, served as HTTP 200 with grpc-status. */
  | { percent: number; grpcStatus: number };

export interface FaultPolicy {
  delay?: { percent: number; fixedDelayMs: number };
  abort?: FaultAbort;
}

export interface MirrorPolicy {
  backend: Backend;
  percent: number;
}

/**
 * How a path is rewritten (or redirected). `replace_prefix`: Envoy's
 * prefix_rewrite, the matched prefix (or exact path) is swapped for the value;
 * `replace_segment_prefix`: Gateway API's ReplacePrefixMatch, whole path
 * elements; `full`: the whole path; `regex`: every match of the pattern.
 */
export type PathRewrite =
  | { kind: 'replace_prefix'; value: string }
  | { kind: 'replace_segment_prefix'; value: string }
  | { kind: 'full'; value: string }
  | { kind: 'regex'; pattern: string; substitution: string };

export interface Rewrite {
  path?: PathRewrite;
  /** The Host/:authority sent upstream. */
  authority?: string;
}

export type RedirectPort =
  | { kind: 'fixed'; port: number }
  /** 80 for http, 443 for https: left out of the Location. */
  | { kind: 'protocol_default' }
  | { kind: 'request' };

export interface Redirect {
  /** 301, 302, 303, 307 or 308. */
  status: number;
  scheme?: string;
  /** Host (without port) for the Location; absent: the request's. */
  authority?: string;
  port?: RedirectPort;
  path?: PathRewrite;
}

export interface DirectResponse {
  status: number;
  body?: string;
  /** Set for gRPC answers (GRPCRoute's UNAVAILABLE): served with grpc-status. */
  grpcStatus?: number;
}

export type RuleAction =
  | {
      kind: 'forward';
      destinations: RouteDestination[];
      /** Route timeout; absent: none. */
      timeoutMs?: number;
      /** null: no retries. */
      retry: RetryPolicy | null;
      mirrors: MirrorPolicy[];
      rewrite?: Rewrite;
    }
  | { kind: 'redirect'; redirect: Redirect }
  | { kind: 'direct'; response: DirectResponse };

export interface RouteRule {
  /** Istio's http[].name, or Gateway API's rule name. */
  name?: string;
  /** ORed. Empty: matches every request. */
  matches: RequestMatch[];
  action: RuleAction;
  /** Rule-level header ops (destination-level ones are on each destination). */
  headers: HeaderRules;
  fault?: FaultPolicy;
}

interface ConvertedObject {
  /** `<namespace>/<name>`. */
  key: string;
  namespace: string;
  name: string;
  /** Epoch ms; 0 when unknown, which counts as oldest. */
  createdAt: number;
  /** What the operator should know: fields accepted but not enforced, and why. */
  warnings: string[];
}

export interface ConvertedVirtualService extends ConvertedObject {
  kind: 'VirtualService';
  /** FQDNs, or `*` / `*.suffix`. */
  hosts: string[];
  /** Namespaces it is visible to; null: all. */
  exportTo: string[] | null;
  /** In order: the first that matches wins. */
  rules: RouteRule[];
}

/** What a Gateway API route attaches to. */
export type ParentRef =
  | { kind: 'service'; namespace: string; name: string; port?: number }
  | { kind: 'gateway'; namespace: string; name: string; sectionName?: string; port?: number };

export interface ConvertedGatewayRoute extends ConvertedObject {
  kind: 'HTTPRoute' | 'GRPCRoute';
  parents: ParentRef[];
  /** Lower-case; matter only for routes attached to the waypoint's Gateway. */
  hostnames: string[];
  rules: RouteRule[];
}

export type ConvertedRoute = ConvertedVirtualService | ConvertedGatewayRoute;

export const noHeaderOps = (): HeaderOps => ({ set: [], add: [], remove: [] });
export const noHeaderRules = (): HeaderRules => ({ request: noHeaderOps(), response: noHeaderOps() });

// The waypoint's authorization forms: Istio AuthorizationPolicies bound by
// `targetRefs`, converted. Plain data, like lib/policy/types.ts, whose L4
// match they reuse for the source and port fields.
import type { AuthzAction, L4Match } from '../policy/types.ts';

/** What a policy applies to. `namespace` and `mesh` only on the stand-ins for rejected policies. */
export type L7Target =
  | { kind: 'gateway'; namespace: string; name: string }
  | { kind: 'service'; namespace: string; name: string }
  /** Every waypoint of the class (policies in the root namespace). */
  | { kind: 'gateway_class'; name: string }
  /** Every waypoint in the namespace and every service in it. */
  | { kind: 'namespace'; namespace: string }
  | { kind: 'mesh' };

/** A `when` condition on `request.headers[name]`: values ORed; notValues must all miss (an absent header misses). */
export interface HeaderRequirement {
  /** Lower-case. */
  name: string;
  values?: string[];
  notValues?: string[];
}

/**
 * One source, operation or condition. Fields are ANDed, the values of a
 * field ORed; a `not` field matches when none of its values does. Patterns
 * are Istio's: exact, `prefix*`, `*suffix`, `*` (present); paths also take
 * the `{*}` (one segment) and `{**}` (the rest) templates; hosts ignore case.
 */
export interface L7Match {
  /** Source identity, source and destination addresses, ports: checked as at L4. */
  l4?: L4Match;
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
  hosts?: string[];
  notHosts?: string[];
  header?: HeaderRequirement;
  /**
   * Set when the match requires an attribute a waypoint never has (a JWT's
   * claims or principal, the SNI of the inner request): it never matches.
   */
  never?: string;
}

/** Clauses (from, to, each when) ANDed, the matches inside one ORed; no clauses: matches every request. */
export interface L7Rule {
  clauses: L7Match[][];
}

export interface L7AuthzPolicy {
  /** `<namespace>/<name>`. */
  key: string;
  namespace: string;
  name: string;
  action: AuthzAction;
  targets: L7Target[];
  /** ORed; empty: matches nothing (an ALLOW without rules denies everything it targets). */
  rules: L7Rule[];
  warnings: string[];
  /** Set on the stand-in for a rejected policy: why. The stand-in DENYs everything the policy covered. */
  failClosed?: string;
}

export interface L7AuthzOptions {
  /** The waypoint doing the checks: its Gateway, and the class it was made from. */
  waypoint: { namespace: string; name: string; className?: string };
  domain?: string;
}

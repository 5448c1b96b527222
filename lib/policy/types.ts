// The policy engine's own forms. Converted policies are plain data (JSON-safe,
// so the agent can ship them to the ztunnel in a snapshot); the store compiles
// them into matchers once per state change.
import type { Verdict } from '../telemetry/reasons.ts';

/** Istio's root namespace is istio-system; meshlet's own namespace plays that role. */
export const DEFAULT_ROOT_NAMESPACE = 'meshlet-system';

export interface PolicyOptions {
  /** Policies here without a selector apply mesh-wide. Default: meshlet-system. */
  rootNamespace?: string;
}

export type AuthzAction = 'ALLOW' | 'DENY';

export interface PolicyScope {
  /** null: every namespace (the policy lives in the root namespace). */
  namespace: string | null;
  /** null: every workload in those namespaces. */
  matchLabels: Readonly<Record<string, string>> | null;
}

/**
 * One L4 match. Fields are ANDed, the values of a field ORed, and a `not`
 * field matches when none of its values does. An absent field does not
 * constrain, so an empty match matches every connection.
 */
export interface L4Match {
  /** Patterns over `<trust-domain>/ns/<ns>/sa/<sa>`: exact, `prefix*`, `*suffix` or `*` (any identity). */
  principals?: string[];
  notPrincipals?: string[];
  /** Patterns over the source namespace, taken from its identity. */
  namespaces?: string[];
  notNamespaces?: string[];
  /** `<ns>/<sa>`. */
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  /** Canonical CIDRs, `address/prefix`. */
  sourceIps?: string[];
  notSourceIps?: string[];
  destinationIps?: string[];
  notDestinationIps?: string[];
  ports?: number[];
  notPorts?: number[];
}

/** Clauses (from, to, each when) are ANDed; the matches inside a clause are ORed. No clauses: matches everything. */
export interface AuthzRule {
  clauses: L4Match[][];
}

export interface AuthzPolicy {
  /** `<namespace>/<name>`, as decisions report it. */
  key: string;
  namespace: string;
  name: string;
  action: AuthzAction;
  scope: PolicyScope;
  /** ORed. Empty: the policy matches nothing (an empty ALLOW policy denies everything it selects). */
  rules: AuthzRule[];
  /** What the operator should know: attributes L4 cannot enforce and how they were handled. */
  warnings: string[];
  /**
   * Set on the stand-in for a policy meshlet rejected: why it was rejected.
   * The stand-in is a DENY of everything the policy would have covered
   * (fail-closed.ts), so neither a rejected ALLOW nor a rejected DENY widens access.
   */
  failClosed?: string;
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE';
/** UNSET inherits from the level above. */
export type MtlsSetting = MtlsMode | 'UNSET';

export interface PeerAuthPolicy {
  key: string;
  namespace: string;
  name: string;
  level: 'mesh' | 'namespace' | 'workload';
  /** Set for the workload level only. */
  matchLabels: Readonly<Record<string, string>> | null;
  mode: MtlsSetting;
  portLevelMtls: { port: number; mode: MtlsSetting }[];
  /** Milliseconds since the epoch; 0 when unknown, which counts as oldest (Go's zero time does in Istio). */
  createdAt: number;
  /** Set on the stand-in for a policy meshlet rejected: why. The stand-in is STRICT for what the policy selects. */
  failClosed?: string;
}

export interface WorkloadRef {
  namespace: string;
  labels: Record<string, string>;
}

export interface AuthzRequest {
  source: {
    ip: string;
    /** SPIFFE ID of the authenticated peer; absent for plaintext. */
    principal?: string;
    /** The peer's namespace, if the caller already knows it; it counts only with a principal. */
    namespace?: string;
  };
  destination: { ip: string; port: number; workload: WorkloadRef };
}

export interface AuthzDecision {
  allowed: boolean;
  verdict: Verdict;
  /** `<namespace>/<name>` of the policy that decided, when one did. */
  policy?: string;
  reason: string;
}

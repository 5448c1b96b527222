// Kubernetes' own name rules (apimachinery's IsDNS1123Label and
// IsDNS1123Subdomain), checked again on everything that becomes a path, a
// SPIFFE ID, a header or a key: the API server enforces them, but meshlet
// never relies on input having been checked elsewhere. Anything they admit is
// a valid SPIFFE path segment and plain ASCII.
import { podUidProblem } from './cgroup-layout.ts';

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_MAX = 63;
const SUBDOMAIN_MAX = 253;
/** How much of a bad value a reason quotes. */
const QUOTE = 80;

const quote = (value: unknown): string => (typeof value === 'string' ? JSON.stringify(value.slice(0, QUOTE)) : JSON.stringify(value) ?? String(value));

/** Why `value` is not a DNS label (namespaces), or undefined. */
export function dnsLabelProblem(value: unknown, what: string): string | undefined {
  if (typeof value !== 'string' || value === '') return `${what} must be a non-empty string, got ${quote(value)}`;
  if (value.length > LABEL_MAX || !LABEL.test(value)) {
    return `${what} ${quote(value)} is not a Kubernetes name: at most ${LABEL_MAX} lower-case letters, digits and inner "-"`;
  }
  return undefined;
}

/** Why `value` is not a DNS subdomain (pods, nodes, service accounts, services), or undefined. */
export function dnsSubdomainProblem(value: unknown, what: string): string | undefined {
  if (typeof value !== 'string' || value === '') return `${what} must be a non-empty string, got ${quote(value)}`;
  if (value.length > SUBDOMAIN_MAX || !SUBDOMAIN.test(value)) {
    return `${what} ${quote(value)} is not a Kubernetes name: at most ${SUBDOMAIN_MAX} lower-case letters, digits, "-" and ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

/**
 * Why `value` cannot name a custom resource (Istio's policies), or undefined:
 * the API server takes any path segment there, so only what would confuse a
 * `namespace/name` key or its text is refused.
 */
export function objectNameProblem(value: unknown, what: string): string | undefined {
  if (typeof value !== 'string' || value === '') return `${what} must be a non-empty string, got ${quote(value)}`;
  if (value.length > SUBDOMAIN_MAX || value.includes('/') || !value.isWellFormed() || /[\u0000-\u001f\u007f]/.test(value)) {
    return `${what} ${quote(value)} is not an object name: at most ${SUBDOMAIN_MAX} characters, no "/" and no control characters`;
  }
  return undefined;
}

/**
 * Why a pod's names cannot stand for a workload identity, or undefined: the
 * rules the agent's conversion, the ztunnel's validation and the CA all apply,
 * so a pod one of them refuses is refused by all.
 */
export function podNamesProblem(pod: { namespace: unknown; name: unknown; serviceAccount: unknown; uid: unknown }): string | undefined {
  return dnsLabelProblem(pod.namespace, 'namespace')
    ?? dnsSubdomainProblem(pod.name, 'name')
    ?? dnsSubdomainProblem(pod.serviceAccount, 'service account')
    ?? podUidProblem(pod.uid);
}

// Retry policies: Istio's default, VirtualService `retries`, HTTPRoute `retry`,
// as Istio's control plane turns them into Envoy's (route/retry/retry.go,
// config/kube/gateway/conversion.go).
import { onlyKeys, record, type Fail } from '../policy/fields.ts';
import { bool, gatewayDuration, integer, isSet, istioDuration, list, quote, text } from './fields.ts';
import { RETRY_CONDITIONS, type RetryCondition, type RetryPolicy } from './types.ts';

/** Envoy's default base interval; the cap is ten times the base. */
const BACKOFF_BASE_MS = 25;
const BACKOFF_CAP_FACTOR = 10;
const MAX_ATTEMPTS = 100;

/**
 * Istio's policy for a route that sets no `retries`: 2 retries on
 * connect-failure, refused-stream, unavailable, cancelled and
 * retriable-status-codes, with 503 retriable. (Istio 1.24 dropped 503 from
 * its default; meshlet keeps it, as the waypoint issue specifies.)
 */
export function defaultRetryPolicy(): RetryPolicy {
  return {
    attempts: 2,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
    retriableStatusCodes: [503],
    ignorePreviousHosts: true,
    backoffBaseMs: BACKOFF_BASE_MS,
    backoffMaxMs: BACKOFF_BASE_MS * BACKOFF_CAP_FACTOR,
  };
}

const RETRY_KEYS = ['attempts', 'perTryTimeout', 'retryOn', 'retryRemoteLocalities', 'retryIgnorePreviousHosts', 'backoff'];

/** VirtualService http[].retries. Absent: Istio's default; attempts 0: no retries (null). */
export function istioRetry(v: unknown, field: string, fail: Fail, warnings: string[]): RetryPolicy | null {
  if (!isSet(v)) return defaultRetryPolicy();
  const o = record(v, field, fail);
  onlyKeys(o, RETRY_KEYS, field, fail);
  const attempts = isSet(o.attempts) ? integer(o.attempts, `${field}.attempts`, 0, MAX_ATTEMPTS, fail) : 0;
  // Istio: a policy that sets no attempts (or 0) disables retries.
  if (attempts === 0) return null;
  const policy = defaultRetryPolicy();
  policy.attempts = attempts;
  if (isSet(o.retryOn)) {
    const parsed = parseRetryOn(text(o.retryOn, `${field}.retryOn`, fail), `${field}.retryOn`, fail);
    policy.retryOn = parsed.retryOn;
    policy.retriableStatusCodes = parsed.codes;
  }
  if (isSet(o.perTryTimeout)) policy.perTryTimeoutMs = istioDuration(o.perTryTimeout, `${field}.perTryTimeout`, fail);
  if (isSet(o.backoff)) setBackoff(policy, istioDuration(o.backoff, `${field}.backoff`, fail));
  if (isSet(o.retryIgnorePreviousHosts)) policy.ignorePreviousHosts = bool(o.retryIgnorePreviousHosts, `${field}.retryIgnorePreviousHosts`, fail);
  if (isSet(o.retryRemoteLocalities)) {
    bool(o.retryRemoteLocalities, `${field}.retryRemoteLocalities`, fail);
    warnings.push(`${field}.retryRemoteLocalities has no effect: meshlet does not balance by locality`);
  }
  return policy;
}

/** Istio's reading of retryOn: numbers are retriable statuses (and imply retriable-status-codes), the rest Envoy's conditions. */
function parseRetryOn(value: string, field: string, fail: Fail): { retryOn: RetryCondition[]; codes: number[] } {
  const retryOn: RetryCondition[] = [];
  const codes: number[] = [];
  for (const raw of value.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    if (/^\d+$/.test(part)) {
      const code = Number(part);
      if (code < 100 || code > 599) fail(`${field} has ${quote(part)}, which is not an HTTP status`);
      if (!codes.includes(code)) codes.push(code);
      continue;
    }
    if (!(RETRY_CONDITIONS as readonly string[]).includes(part)) {
      fail(`${field} has ${quote(part)}, which is not a retry condition; use ${RETRY_CONDITIONS.join(', ')} or HTTP statuses such as 503`);
    }
    if (!retryOn.includes(part as RetryCondition)) retryOn.push(part as RetryCondition);
  }
  if (codes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
  if (retryOn.length === 0) fail(`${field} names no condition; list at least one, e.g. "5xx,connect-failure"`);
  return { retryOn, codes };
}

function setBackoff(policy: RetryPolicy, baseMs: number): void {
  policy.backoffBaseMs = baseMs;
  policy.backoffMaxMs = baseMs * BACKOFF_CAP_FACTOR;
}

/**
 * HTTPRoute rules[].retry, as Istio converts it: attempts default 2 (0: no
 * retries), retried on connection failures (the spec's SHOULD) plus `codes`.
 * Absent: Istio's default policy, as for a VirtualService without retries.
 */
export function gatewayRetry(v: unknown, field: string, fail: Fail): RetryPolicy | null {
  if (!isSet(v)) return defaultRetryPolicy();
  const o = record(v, field, fail);
  onlyKeys(o, ['codes', 'attempts', 'backoff'], field, fail);
  const attempts = isSet(o.attempts) ? integer(o.attempts, `${field}.attempts`, 0, MAX_ATTEMPTS, fail) : 2;
  const codes = list(o.codes, `${field}.codes`, fail, 64).map((c, i) => integer(c, `${field}.codes[${i}]`, 400, 599, fail));
  if (attempts === 0) return null;
  const policy: RetryPolicy = {
    attempts,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled'],
    retriableStatusCodes: [...new Set(codes)],
    ignorePreviousHosts: true,
    backoffBaseMs: BACKOFF_BASE_MS,
    backoffMaxMs: BACKOFF_BASE_MS * BACKOFF_CAP_FACTOR,
  };
  if (policy.retriableStatusCodes.length > 0) policy.retryOn.push('retriable-status-codes');
  if (isSet(o.backoff)) {
    const ms = gatewayDuration(o.backoff, `${field}.backoff`, fail);
    if (ms > 0) setBackoff(policy, ms);
  }
  return policy;
}

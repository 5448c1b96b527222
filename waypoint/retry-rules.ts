// Envoy's retry conditions (x-envoy-retry-on, x-envoy-retry-grpc-on), as its
// RetryStateImpl reads them, over what one try came to, and its backoff.
import type { IncomingHttpHeaders } from 'node:http';
import type { Random, RetryPolicy } from '../lib/l7/index.ts';
import type { ClusterFailure } from './upstream/failures.ts';

/**
 * Whether a try that failed before its response is retried. Every reset
 * (including a per-try timeout) counts as a 5xx and a gateway error, as
 * Envoy counts it; `reset` covers them too. A route timeout, a circuit
 * breaker's overflow, no healthy upstream and a cancelled request never are.
 */
export function retriesFailure(policy: RetryPolicy, failure: ClusterFailure): boolean {
  const on = new Set(policy.retryOn);
  switch (failure.kind) {
    case 'no_healthy_upstream':
    case 'overflow':
    case 'cancelled':
      return false;
    case 'connect_failure':
      return on.has('connect-failure') || on.has('reset') || on.has('reset-before-request') || on.has('5xx') || on.has('gateway-error');
    case 'remote_reset':
      if (failure.refused && on.has('refused-stream')) return true;
      return on.has('reset') || on.has('5xx') || on.has('gateway-error');
    case 'timeout':
    case 'connection_termination':
    case 'protocol_error':
    case 'local_reset':
      return on.has('reset') || on.has('5xx') || on.has('gateway-error');
  }
}

/** gRPC status codes by the retryOn names Envoy gives them. */
const GRPC_CONDITIONS: Readonly<Record<string, string>> = { cancelled: '1', 'deadline-exceeded': '4', 'resource-exhausted': '8', internal: '13', unavailable: '14' };

const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** Whether a response the upstream sent is retried instead of returned. */
export function retriesResponse(policy: RetryPolicy, status: number, headers: IncomingHttpHeaders): boolean {
  for (const condition of policy.retryOn) {
    switch (condition) {
      case '5xx':
        if (status >= 500 && status <= 599) return true;
        break;
      case 'gateway-error':
        if (status === 502 || status === 503 || status === 504) return true;
        break;
      case 'retriable-4xx':
        if (status === 409) return true;
        break;
      case 'retriable-status-codes':
        if (policy.retriableStatusCodes.includes(status)) return true;
        break;
      case 'envoy-ratelimited':
        if (headers['x-envoy-ratelimited'] !== undefined) return true;
        break;
      default: {
        // gRPC conditions read grpc-status of a trailers-only response (its headers), as Envoy does.
        const code = GRPC_CONDITIONS[condition];
        if (code !== undefined && single(headers['grpc-status']) === code) return true;
      }
    }
  }
  return false;
}

/** Envoy's fully jittered exponential backoff: retry n (from 1) waits in [0, (2^n - 1) × base), capped at the maximum. */
export function backoffMs(policy: RetryPolicy, retry: number, random: Random): number {
  const ceiling = Math.min(policy.backoffBaseMs * (2 ** Math.min(retry, 30) - 1), policy.backoffMaxMs);
  return Math.floor(random() * ceiling);
}

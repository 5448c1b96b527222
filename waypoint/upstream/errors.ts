// The upstream side's error classes (after lib/core/errors.ts): stable codes
// for callers and tests, messages that say what to check.
import { MeshletError } from '../../lib/core/errors.ts';
import type { UpstreamFailure } from '../../lib/telemetry/reasons.ts';

/** Why hop 2's tunnel did not come up: the ztunnel's reasons (lib/telemetry/reasons.ts), or no answer in time. */
export type TunnelFailure = UpstreamFailure | 'connect_timeout';

/** Hop 2's HBONE tunnel to the endpoint's ztunnel could not be set up (Envoy's UF). */
export class UpstreamConnectError extends MeshletError {
  readonly reason: TunnelFailure;

  constructor(reason: TunnelFailure, message: string, options?: { cause?: unknown }) {
    super('MESHLET_UPSTREAM_CONNECT', message, options);
    this.reason = reason;
  }
}

/** The reason to abort an upstream request with when the route's timeout (or per-try timeout) fired: the failure is then UT. */
export class UpstreamTimeoutError extends MeshletError {
  constructor(timeoutMs: number) {
    super('MESHLET_UPSTREAM_TIMEOUT', `no complete upstream response within ${timeoutMs} ms (the route's timeout)`);
  }
}

/** undici asked a connection's tunnel to connect again after it closed; the request never left (Envoy's UC). */
export class ConnectionClosedError extends MeshletError {
  constructor(endpoint: string) {
    super('MESHLET_UPSTREAM_CLOSED', `the connection to ${endpoint} closed before the request could be sent`);
  }
}

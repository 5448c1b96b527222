// A source address that did not check out, told the operator the same way at
// both ends: one warning naming who the connection really came from (the pod
// the kernel saw connect, or the peer ztunnel and its certificate identity)
// and the address it claimed, and meshlet_source_mismatches_total.
import { hostPort } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import type { FlowRecord } from '../lib/telemetry/flow.ts';
import type { ZtunnelMetrics } from './metrics.ts';

/** `flow` carries the claimedSource; `reason` says why the claim does not hold. */
export function reportSourceMismatch(log: Logger, metrics: ZtunnelMetrics, flow: FlowRecord, reason: string): void {
  metrics.sourceMismatch(flow.direction);
  const { source, claimedSource } = flow;
  log.warn('source_mismatch', {
    flow: flow.id,
    direction: flow.direction,
    source: hostPort(source.ip, source.port),
    ...(source.workload ? { pod: `${source.workload.namespace}/${source.workload.name}` } : {}),
    ...(source.identity ? { identity: source.identity } : {}),
    claimed: claimedSource ? hostPort(claimedSource.ip, claimedSource.port) : 'unknown',
    reason,
  });
}

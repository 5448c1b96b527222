// One JSON line per request, with the fields and names of Istio's default
// JSON access-log format (meshConfig.accessLogEncoding: JSON), so log queries
// written for Istio's proxies work on the waypoint's. Istio prints the
// numbers as numbers and an unknown value as null; so does this.
import type { Writable } from 'node:stream';
import { hostPort } from '../../lib/core/ip.ts';
import { traceIdOf } from '../../lib/hbone/headers.ts';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import { formatResponseFlags } from './response-flags.ts';
import type { RequestRecord } from './request-record.ts';

export interface AccessLogEntry {
  start_time: string;
  route_name: string | null;
  method: string;
  path: string;
  protocol: string;
  response_code: number;
  response_flags: string;
  response_code_details: string | null;
  upstream_transport_failure_reason: string | null;
  bytes_received: number;
  bytes_sent: number;
  duration: number;
  upstream_service_time: string | null;
  x_forwarded_for: string | null;
  user_agent: string | null;
  request_id: string;
  authority: string;
  upstream_host: string | null;
  upstream_cluster: string | null;
  downstream_local_address: string;
  downstream_remote_address: string | null;
  requested_server_name: string | null;
  // meshlet's additions: who the client proved to be, and the ids that join this line to traces and flows.
  downstream_peer_principal: string | null;
  grpc_status: string | null;
  trace_id: string | null;
}

const address = (e: Endpoint | undefined): string | null => (e ? hostPort(e.ip, e.port) : null);

export function accessLogEntry(r: RequestRecord): AccessLogEntry {
  return {
    start_time: r.startTime,
    route_name: r.routeName ?? null,
    method: r.method,
    path: r.path,
    protocol: r.protocol,
    response_code: r.responseCode,
    response_flags: formatResponseFlags(r.responseFlags),
    response_code_details: r.responseCodeDetails ?? null,
    upstream_transport_failure_reason: r.upstreamTransportFailureReason ?? null,
    bytes_received: r.bytesReceived,
    bytes_sent: r.bytesSent,
    duration: Math.round(r.durationMs),
    upstream_service_time: r.upstreamServiceTimeMs === undefined ? null : String(r.upstreamServiceTimeMs),
    x_forwarded_for: r.xForwardedFor ?? null,
    user_agent: r.userAgent ?? null,
    request_id: r.requestId,
    authority: r.host,
    upstream_host: r.upstreamHost ?? null,
    upstream_cluster: r.upstreamCluster ?? null,
    downstream_local_address: hostPort(r.downstreamLocalAddress.ip, r.downstreamLocalAddress.port),
    downstream_remote_address: address(r.downstreamRemoteAddress),
    requested_server_name: r.requestedServerName ?? null,
    downstream_peer_principal: r.source.principal ?? null,
    grpc_status: r.grpc ? (r.grpcStatus ?? null) : null,
    trace_id: traceIdOf(r.traceparent) ?? null,
  };
}

/**
 * How much may wait in the log output before lines are dropped: a stdout
 * nobody reads (a stopped log collector) must not grow the waypoint's memory
 * with every request. 1 MiB is a few thousand lines.
 */
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

/** A batch this large goes out at once rather than at the end of the turn. */
const MAX_BATCH_BYTES = 64 * 1024;

/**
 * How long a line may wait for its batch to go out (Envoy's
 * access_log_flush_interval is 1 s): under load, one write call per interval
 * instead of one per turn of the event loop.
 */
const DEFAULT_FLUSH_INTERVAL_MS = 100;

/**
 * Lines are written in batches, one write per flush interval (or per
 * MAX_BATCH_BYTES): stdout to a file or pipe is a synchronous write call,
 * which per line cost more than the line's formatting. flush() writes what
 * waits (the waypoint calls it as it stops).
 */
export class AccessLog {
  readonly #out: Writable;
  readonly #maxBuffered: number;
  readonly #dropped: () => void;
  readonly #flushIntervalMs: number;
  #batch = '';
  #flushScheduled = false;

  /**
   * `onDropped` counts each line dropped (the waypoint's
   * meshlet_waypoint_access_log_dropped_total); `flushIntervalMs` 0 writes at
   * the end of the event loop's turn.
   */
  constructor(out: Writable, options: { maxBufferedBytes?: number; onDropped?: () => void; flushIntervalMs?: number } = {}) {
    this.#out = out;
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#dropped = options.onDropped ?? (() => {});
    this.#flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  }

  write(r: RequestRecord): void {
    // The batch waiting counts toward the bound, as if it were already in the output's backlog.
    if (this.#out.writableLength + this.#batch.length > this.#maxBuffered || this.#out.destroyed) return this.#dropped();
    this.#batch += `${JSON.stringify(accessLogEntry(r))}\n`;
    if (this.#batch.length >= MAX_BATCH_BYTES) return this.flush();
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    if (this.#flushIntervalMs === 0) setImmediate(this.#flushScheduledBatch);
    // Unref'd: a batch waiting does not hold the process up; stopping flushes it.
    else setTimeout(this.#flushScheduledBatch, this.#flushIntervalMs).unref();
  }

  /** Writes the lines waiting, now. */
  flush(): void {
    const batch = this.#batch;
    if (batch === '') return;
    this.#batch = '';
    if (this.#out.destroyed) return this.#dropLines(batch);
    this.#out.write(batch);
  }

  readonly #flushScheduledBatch = (): void => {
    this.#flushScheduled = false;
    this.flush();
  };

  #dropLines(batch: string): void {
    for (let i = batch.indexOf('\n'); i !== -1; i = batch.indexOf('\n', i + 1)) this.#dropped();
  }
}

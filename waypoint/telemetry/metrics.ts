// The waypoint's Prometheus metrics: Istio's request metrics with
// reporter="waypoint" and Istio's labels (labels.ts), Istio's TCP metrics for
// passthrough connections, and meshlet's own counters for the HBONE listener
// (named as the ztunnel's, so one dashboard covers both). Updated once per
// request or connection, never per chunk.
import { Counter, Registry } from 'prom-client';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import type { ConnectionSecurity, HandshakeFailure, ListenerRefusal, SessionDrain } from '../../lib/telemetry/reasons.ts';
import { TcpMetrics, type TcpLabels } from '../../lib/telemetry/tcp-metrics.ts';
import { requestLabels, requestSeriesKey } from './labels.ts';
import type { TunnelRefusal } from './reasons.ts';
import { formatResponseFlags, type ResponseFlag } from './response-flags.ts';
import type { PeerWorkload, RequestRecord } from './request-record.ts';
import { RequestSeries } from './request-series.ts';

/** Envoy's default histogram buckets (HistogramStatisticsImpl::supportedBuckets), which Istio's request histograms use. */
export const ENVOY_DEFAULT_BUCKETS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

/** A TCP connection the waypoint passed through (a port of the TCP family, or one not detected as HTTP). */
export interface TcpRecord {
  source: PeerWorkload;
  destination: PeerWorkload;
  service?: { namespace: string; name: string };
  connectionSecurity: ConnectionSecurity;
  responseFlags: readonly ResponseFlag[];
  /** Client to server. */
  bytesReceived: number;
  /** Server to client. */
  bytesSent: number;
  downstreamLocalAddress?: Endpoint;
}

export class WaypointMetrics {
  readonly registry = new Registry();
  readonly #clusterDomain: string;
  /** The four request metrics, outside the registry (request-series.ts says why); text() renders them first, in the registry's default format (Prometheus text 0.0.4, not OpenMetrics). */
  readonly #requests: RequestSeries;
  readonly #tcp: TcpMetrics;
  readonly #handshakeFailures: Counter<string>;
  readonly #refused: Counter<string>;
  readonly #tunnelsRefused: Counter<string>;
  readonly #drained: Counter<string>;
  readonly #logDropped: Counter<string>;

  constructor(options: { clusterDomain?: string } = {}) {
    this.#clusterDomain = options.clusterDomain ?? 'cluster.local';
    const registers = [this.registry];
    this.#requests = new RequestSeries({
      total: { name: 'istio_requests_total', help: 'requests the waypoint handled' },
      duration: { name: 'istio_request_duration_milliseconds', help: 'request duration, from the request head to the last response byte' },
      requestBytes: { name: 'istio_request_bytes', help: 'request body sizes' },
      responseBytes: { name: 'istio_response_bytes', help: 'response body sizes' },
    }, ENVOY_DEFAULT_BUCKETS);
    this.#tcp = new TcpMetrics(this.registry);
    this.#handshakeFailures = new Counter({ name: 'meshlet_hbone_handshake_failures_total', help: 'mutual TLS handshakes with source ztunnels that failed', labelNames: ['direction', 'reason'], registers });
    this.#refused = new Counter({ name: 'meshlet_connections_refused_total', help: 'connections the HBONE listener refused at accept because the per-peer cap was reached', labelNames: ['listener', 'reason'], registers });
    this.#tunnelsRefused = new Counter({ name: 'meshlet_waypoint_tunnels_refused_total', help: 'CONNECT streams the waypoint refused, by reason', labelNames: ['reason'], registers });
    this.#drained = new Counter({ name: 'meshlet_hbone_sessions_drained_total', help: 'HBONE sessions told to take no new streams and closed once their streams ended', labelNames: ['direction', 'reason'], registers });
    this.#logDropped = new Counter({ name: 'meshlet_waypoint_access_log_dropped_total', help: 'access-log lines dropped because the log output was not keeping up', registers });
  }

  /** Counts a finished request in the four request metrics. */
  request(r: RequestRecord): void {
    this.#requests.add(requestSeriesKey(r), () => requestLabels(r, this.#clusterDomain), { durationMs: r.durationMs, requestBytes: r.bytesReceived, responseBytes: r.bytesSent });
  }

  tcpOpened(r: TcpRecord): void {
    this.#tcp.opened(this.#tcpLabels(r));
  }

  tcpClosed(r: TcpRecord): void {
    this.#tcp.closed(this.#tcpLabels(r), r.bytesSent, r.bytesReceived);
  }

  handshakeFailed(reason: HandshakeFailure): void {
    this.#handshakeFailures.inc({ direction: 'inbound', reason });
  }

  connectionRefused(reason: ListenerRefusal): void {
    this.#refused.inc({ listener: 'hbone', reason });
  }

  tunnelRefused(reason: TunnelRefusal): void {
    this.#tunnelsRefused.inc({ reason });
  }

  sessionDrained(reason: SessionDrain): void {
    this.#drained.inc({ direction: 'inbound', reason });
  }

  accessLogDropped(): void {
    this.#logDropped.inc();
  }

  async text(): Promise<string> {
    // As Registry.metrics() joins its metrics: a blank line between two, a newline at the end.
    return `${this.#requests.blocks().join('\n\n')}\n\n${await this.registry.metrics()}`;
  }

  #tcpLabels(r: TcpRecord): TcpLabels {
    const u = (v: string | undefined) => v ?? 'unknown';
    return {
      reporter: 'waypoint',
      source_workload: u(r.source.workload),
      source_workload_namespace: u(r.source.namespace),
      source_principal: u(r.source.principal),
      destination_workload: u(r.destination.workload),
      destination_workload_namespace: u(r.destination.namespace),
      destination_principal: u(r.destination.principal),
      destination_service: r.service ? `${r.service.name}.${r.service.namespace}.svc.${this.#clusterDomain}` : 'unknown',
      destination_service_name: u(r.service?.name),
      destination_service_namespace: u(r.service?.namespace),
      connection_security_policy: r.connectionSecurity === 'mutual_tls' ? 'mutual_tls' : 'none',
      response_flags: formatResponseFlags(r.responseFlags),
    };
  }
}

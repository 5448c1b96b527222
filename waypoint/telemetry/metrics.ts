// The waypoint's Prometheus metrics: Istio's request metrics with
// reporter="waypoint" and Istio's labels (labels.ts), Istio's TCP metrics for
// passthrough connections, and meshlet's own counters for the HBONE listener
// (named as the ztunnel's, so one dashboard covers both). Updated once per
// request or connection, never per chunk.
import { Counter, Histogram, Registry } from 'prom-client';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import type { ConnectionSecurity, HandshakeFailure, ListenerRefusal, SessionDrain } from '../../lib/telemetry/reasons.ts';
import { TcpMetrics, type TcpLabels } from '../../lib/telemetry/tcp-metrics.ts';
import { REQUEST_LABELS, requestLabels, type RequestLabels } from './labels.ts';
import type { TunnelRefusal } from './reasons.ts';
import { formatResponseFlags, type ResponseFlag } from './response-flags.ts';
import type { PeerWorkload, RequestRecord } from './request-record.ts';

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

interface RequestSeries {
  total: { inc(): void };
  duration: { observe(v: number): void };
  requestBytes: { observe(v: number): void };
  responseBytes: { observe(v: number): void };
}

/**
 * Children per label set are kept so a request costs four array lookups, not
 * four label hashes. The label sets are bounded by topology; the cache is
 * bounded all the same, and starts over when full.
 */
const MAX_CACHED_SERIES = 10_000;

export class WaypointMetrics {
  readonly registry = new Registry();
  readonly #clusterDomain: string;
  readonly #requests: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #requestBytes: Histogram<string>;
  readonly #responseBytes: Histogram<string>;
  readonly #series = new Map<string, RequestSeries>();
  readonly #tcp: TcpMetrics;
  readonly #handshakeFailures: Counter<string>;
  readonly #refused: Counter<string>;
  readonly #tunnelsRefused: Counter<string>;
  readonly #drained: Counter<string>;
  readonly #logDropped: Counter<string>;

  constructor(options: { clusterDomain?: string } = {}) {
    this.#clusterDomain = options.clusterDomain ?? 'cluster.local';
    const registers = [this.registry];
    const labelNames = REQUEST_LABELS;
    const buckets = [...ENVOY_DEFAULT_BUCKETS];
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'requests the waypoint handled', labelNames, registers });
    this.#duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'request duration, from the request head to the last response byte', labelNames, buckets, registers });
    this.#requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'request body sizes', labelNames, buckets, registers });
    this.#responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'response body sizes', labelNames, buckets, registers });
    this.#tcp = new TcpMetrics(this.registry);
    this.#handshakeFailures = new Counter({ name: 'meshlet_hbone_handshake_failures_total', help: 'mutual TLS handshakes with source ztunnels that failed', labelNames: ['direction', 'reason'], registers });
    this.#refused = new Counter({ name: 'meshlet_connections_refused_total', help: 'connections the HBONE listener refused at accept because the per-peer cap was reached', labelNames: ['listener', 'reason'], registers });
    this.#tunnelsRefused = new Counter({ name: 'meshlet_waypoint_tunnels_refused_total', help: 'CONNECT streams the waypoint refused, by reason', labelNames: ['reason'], registers });
    this.#drained = new Counter({ name: 'meshlet_hbone_sessions_drained_total', help: 'HBONE sessions told to take no new streams and closed once their streams ended', labelNames: ['direction', 'reason'], registers });
    this.#logDropped = new Counter({ name: 'meshlet_waypoint_access_log_dropped_total', help: 'access-log lines dropped because the log output was not keeping up', registers });
  }

  /** Counts a finished request in the four request metrics. */
  request(r: RequestRecord): void {
    const series = this.#seriesFor(requestLabels(r, this.#clusterDomain));
    series.total.inc();
    series.duration.observe(r.durationMs);
    series.requestBytes.observe(r.bytesReceived);
    series.responseBytes.observe(r.bytesSent);
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

  text(): Promise<string> {
    return this.registry.metrics();
  }

  #seriesFor(labels: RequestLabels): RequestSeries {
    let key = '';
    for (const name of REQUEST_LABELS) key += `${labels[name]}\u0000`;
    let series = this.#series.get(key);
    if (!series) {
      if (this.#series.size >= MAX_CACHED_SERIES) this.#series.clear();
      series = {
        total: this.#requests.labels(labels),
        duration: this.#duration.labels(labels),
        requestBytes: this.#requestBytes.labels(labels),
        responseBytes: this.#responseBytes.labels(labels),
      };
      this.#series.set(key, series);
    }
    return series;
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

// Prometheus metrics with Istio's names and labels, so existing dashboards
// work. TCP counters are updated when a flow closes, never per chunk.
import { Counter, Registry } from 'prom-client';
import type { StoreCounters } from '../lib/identity/store.ts';
import type { FlowRecord } from '../lib/telemetry/flow.ts';
import type { CloseReason, HandshakeFailure, ListenerRefusal, SessionDrain, StreamRefusal } from '../lib/telemetry/reasons.ts';
import { TcpMetrics, type TcpLabels } from '../lib/telemetry/tcp-metrics.ts';

type ResponseFlag = 'UF' | 'UH' | 'NR' | '-';

/** Envoy's response flag for each close reason: UF upstream connection failure, UH no healthy upstream, NR no route. Every reason must say. */
const RESPONSE_FLAGS: Record<CloseReason, ResponseFlag> = {
  client_closed: '-',
  server_closed: '-',
  client_reset: '-',
  upstream_reset: '-',
  idle_timeout: '-',
  upstream_connect_failed: 'UF',
  connect_timeout: 'UF',
  upstream_failed: '-',
  tunnel_failed: 'UF',
  tunnel_rejected: 'UF',
  tls_failed: 'UF',
  handshake_timeout: 'UF',
  peer_identity_mismatch: '-',
  peer_certificate_expired: '-',
  no_certificate: 'UF',
  denied: '-',
  not_ready: '-',
  unknown_source: '-',
  loop: '-',
  no_endpoint: 'NR',
  no_route: 'NR',
  connection_limit: '-',
  source_mismatch: '-',
  waypoint_unavailable: 'UH',
  waypoint_bypass: '-',
  shutdown: '-',
  policy_denied: '-',
  dropped: '-',
};

/** Envoy-style response flags, as Istio reports them for TCP. */
function responseFlags(f: FlowRecord): ResponseFlag | 'DENY' {
  if (f.verdict === 'deny') return 'DENY';
  return f.closeReason ? RESPONSE_FLAGS[f.closeReason] : '-';
}

function labelsOf(f: FlowRecord): TcpLabels {
  const unknown = 'unknown';
  const service = f.service ? `${f.service.name}.${f.service.namespace}.svc.cluster.local` : unknown;
  return {
    reporter: f.direction === 'outbound' ? 'source' : 'destination',
    source_workload: f.source.workload?.name ?? unknown,
    source_workload_namespace: f.source.workload?.namespace ?? unknown,
    source_principal: f.source.identity ?? unknown,
    destination_workload: f.destination?.workload?.name ?? unknown,
    destination_workload_namespace: f.destination?.workload?.namespace ?? unknown,
    destination_principal: f.destination?.identity ?? unknown,
    destination_service: service,
    destination_service_name: f.service?.name ?? unknown,
    destination_service_namespace: f.service?.namespace ?? unknown,
    connection_security_policy: f.security === 'mutual_tls' ? 'mutual_tls' : 'unknown',
    response_flags: responseFlags(f),
  };
}

export class ZtunnelMetrics {
  readonly registry = new Registry();
  readonly #tcp = new TcpMetrics(this.registry);
  readonly #denials: Counter<string>;
  readonly #handshakeFailures: Counter<string>;
  readonly #refused: Counter<string>;
  readonly #streamsRefused: Counter<string>;
  readonly #drained: Counter<string>;
  readonly #idleTimeouts: Counter<string>;
  readonly #sourceMismatches: Counter<string>;

  constructor(certCounters?: () => StoreCounters) {
    this.#denials = new Counter({
      name: 'meshlet_authorization_denials_total',
      help: 'connections an AuthorizationPolicy denied at this destination',
      labelNames: ['destination_workload', 'destination_workload_namespace', 'policy'],
      registers: [this.registry],
    });
    this.#handshakeFailures = new Counter({
      name: 'meshlet_hbone_handshake_failures_total',
      help: 'mutual TLS handshakes with peer ztunnels that failed',
      labelNames: ['direction', 'reason'],
      registers: [this.registry],
    });
    // Envoy counts these per listener (downstream_cx_overflow, tcp idle_timeout); one counter each, labelled, says the same.
    this.#refused = new Counter({
      name: 'meshlet_connections_refused_total',
      help: 'connections a listener refused at accept because a per-peer or per-pod cap was reached',
      labelNames: ['listener', 'reason'],
      registers: [this.registry],
    });
    this.#streamsRefused = new Counter({
      name: 'meshlet_hbone_streams_refused_total',
      help: 'CONNECT streams the inbound HBONE listener refused (RST_STREAM REFUSED_STREAM) before any plan, by reason (stream_limit: their session already carried --hbone-max-streams)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.#drained = new Counter({
      name: 'meshlet_hbone_sessions_drained_total',
      help: 'HBONE sessions told to take no new streams and closed once their streams ended',
      labelNames: ['direction', 'reason'],
      registers: [this.registry],
    });
    this.#idleTimeouts = new Counter({
      name: 'meshlet_tcp_idle_timeouts_total',
      help: 'relayed connections closed because no byte moved for --idle-timeout',
      labelNames: ['direction'],
      registers: [this.registry],
    });
    this.#sourceMismatches = new Counter({
      name: 'meshlet_source_mismatches_total',
      help: 'connections whose source address did not check out: outbound, not the connecting pod\'s own (refused, source_mismatch); inbound, a Forwarded claim the peer ztunnel may not make (ignored)',
      labelNames: ['direction'],
      registers: [this.registry],
    });
    if (certCounters) {
      const registry = this.registry;
      const fromStore = (name: string, help: string, pick: (c: StoreCounters) => number) =>
        new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(pick(certCounters())); } });
      fromStore('meshlet_ca_requests_ok_total', 'certificates the CA issued to this ztunnel', (c) => c.requestsOk);
      fromStore('meshlet_ca_requests_failed_total', 'certificate requests that failed or were refused', (c) => c.requestsFailed);
      fromStore('meshlet_certificate_rotations_total', 'workload certificates rotated', (c) => c.rotations);
    }
  }

  flowOpened(f: FlowRecord): void {
    this.#tcp.opened(labelsOf(f));
  }

  flowClosed(f: FlowRecord): void {
    if (f.closeReason === 'idle_timeout') this.#idleTimeouts.inc({ direction: f.direction });
    // A flow's bytesReceived came back from the server (Istio's "sent").
    this.#tcp.closed(labelsOf(f), f.bytesReceived, f.bytesSent);
  }

  denied(f: FlowRecord): void {
    this.#denials.inc({
      destination_workload: f.destination?.workload?.name ?? 'unknown',
      destination_workload_namespace: f.destination?.workload?.namespace ?? 'unknown',
      policy: f.policy ?? 'default-deny',
    });
  }

  handshakeFailed(direction: 'inbound' | 'outbound', reason: HandshakeFailure): void {
    this.#handshakeFailures.inc({ direction, reason });
  }

  refused(listener: 'hbone' | 'outbound', reason: ListenerRefusal): void {
    this.#refused.inc({ listener, reason });
  }

  streamRefused(reason: StreamRefusal): void {
    this.#streamsRefused.inc({ reason });
  }

  drained(direction: 'inbound' | 'outbound', reason: SessionDrain): void {
    this.#drained.inc({ direction, reason });
  }

  sourceMismatch(direction: 'inbound' | 'outbound'): void {
    this.#sourceMismatches.inc({ direction });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

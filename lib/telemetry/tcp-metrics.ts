// Istio's four TCP metrics with Istio's labels, as both the ztunnel and the
// waypoint report them, so one dashboard covers both. Updated when a
// connection opens and closes, never per chunk.
import { Counter, type Registry } from 'prom-client';

export const TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'connection_security_policy',
  'response_flags',
] as const;

export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

export class TcpMetrics {
  readonly #opened: Counter<string>;
  readonly #closed: Counter<string>;
  readonly #sent: Counter<string>;
  readonly #received: Counter<string>;

  constructor(registry: Registry) {
    const tcp = (name: string, help: string) => new Counter({ name, help, labelNames: TCP_LABELS, registers: [registry] });
    this.#opened = tcp('istio_tcp_connections_opened_total', 'TCP connections opened');
    this.#closed = tcp('istio_tcp_connections_closed_total', 'TCP connections closed');
    // Istio's meaning: "sent" is the response (server → client), "received" the request.
    this.#sent = tcp('istio_tcp_sent_bytes_total', 'bytes sent in response (server to client)');
    this.#received = tcp('istio_tcp_received_bytes_total', 'bytes received in request (client to server)');
  }

  opened(labels: TcpLabels): void {
    this.#opened.inc(labels);
  }

  /** toClient: bytes the server sent (Istio's "sent"); toServer: bytes the client sent ("received"). */
  closed(labels: TcpLabels, toClient: number, toServer: number): void {
    this.#closed.inc(labels);
    if (toClient > 0) this.#sent.inc(labels, toClient);
    if (toServer > 0) this.#received.inc(labels, toServer);
  }
}

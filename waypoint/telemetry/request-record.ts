// One HTTP request as the waypoint carried it, once it is over: what the
// metrics, the access log and the recent-requests ring are made from. The
// downstream side fills it (waypoint/downstream/exchange.ts); nothing here
// reads a socket.
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import type { ConnectionSecurity } from '../../lib/telemetry/reasons.ts';
import type { ResponseFlag } from './response-flags.ts';

/** A workload at either end of a request, as telemetry names it; what is not known is absent (labels say "unknown"). */
export interface PeerWorkload {
  /** The workload's name (as flows name it: the pod's). */
  workload?: string;
  namespace?: string;
  /** SPIFFE ID, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. */
  principal?: string;
  /** Pod labels `app` and `version` (Istio's source_app / source_version). */
  app?: string;
  version?: string;
  /** Istio's canonical service and revision (service.istio.io/canonical-name, -revision, or their app.kubernetes.io fallbacks). */
  canonicalService?: string;
  canonicalRevision?: string;
  /** The cluster it runs in (Istio's default cluster ID is "Kubernetes"). */
  cluster?: string;
}

export type HttpProtocol = 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';

export interface RequestRecord {
  /** When the request's head arrived, ISO 8601. */
  startTime: string;
  /** From the request's head to the response's last byte (or the client's going away), ms. */
  durationMs: number;
  method: string;
  /** Path and query as received. */
  path: string;
  /** The Host header / :authority as the client sent it (not what picked the service: the tunnel's authority did). */
  host: string;
  protocol: HttpProtocol;
  grpc: boolean;
  /** 0 when no response was started (the client went away first). */
  responseCode: number;
  responseFlags: readonly ResponseFlag[];
  /** Envoy's response code details: via_upstream, route_not_found, upstream_reset_before_response_started{…}, … */
  responseCodeDetails?: string;
  /** gRPC requests: the grpc-status the response carried (trailers, or the head of a trailers-only response). */
  grpcStatus?: string;
  /** Request body bytes (Envoy's BYTES_RECEIVED). */
  bytesReceived: number;
  /** Response body bytes (Envoy's BYTES_SENT). */
  bytesSent: number;
  /** From the request's end to the upstream's response head, ms (x-envoy-upstream-service-time). */
  upstreamServiceTimeMs?: number;
  /** `ip:port` of the endpoint that answered. */
  upstreamHost?: string;
  /** Envoy's cluster name for the destination, e.g. `inbound-vip|80|http|reviews.default.svc.cluster.local`. */
  upstreamCluster?: string;
  upstreamTransportFailureReason?: string;
  routeName?: string;
  requestId: string;
  traceparent: string;
  tracestate?: string;
  userAgent?: string;
  xForwardedFor?: string;
  /** Where the source connected: the tunnel's :authority (a Service VIP:port or a pod IP:port). */
  downstreamLocalAddress: Endpoint;
  /** The source workload's address, when known. */
  downstreamRemoteAddress?: Endpoint;
  /** SNI of the tunnel's TLS session. */
  requestedServerName?: string;
  source: PeerWorkload;
  /** The Service the authority named (absent for pod-IP traffic to a workload). */
  service?: { namespace: string; name: string };
  /** The endpoint's workload that answered, when one did. */
  destination: PeerWorkload;
  connectionSecurity: ConnectionSecurity;
  /** The trace id of the tunnel (HBONE CONNECT) that carried it: the L4 flow's, in `meshlet flows`. */
  tunnelTraceId?: string;
}

// What a DestinationRule (or its subset) says about reaching a service's
// endpoints: balancing, connection-pool limits and outlier detection. The
// route side (lib/l7) produces these from the Istio resources; the waypoint's
// upstream side (waypoint/upstream) enforces them. Field names follow
// Istio's trafficPolicy so one name means one thing from YAML to metrics.

/** How a request is hashed for consistentHash balancing. */
export type HashKey =
  | { kind: 'header'; name: string }
  | { kind: 'cookie'; name: string; ttlMs?: number }
  | { kind: 'source_ip' }
  | { kind: 'query_parameter'; name: string };

/** Per request, never per connection. */
export type LoadBalancerPolicy =
  | { kind: 'round_robin' }
  | { kind: 'least_request' }
  | { kind: 'random' }
  | { kind: 'consistent_hash'; hashKey: HashKey };

/** Istio's connectionPool.tcp/http; absent fields are Envoy's defaults (effectively unbounded: 2^32-1). */
export interface ConnectionPoolLimits {
  maxConnections?: number;
  http1MaxPendingRequests?: number;
  http2MaxRequests?: number;
  /** 0 or absent: unlimited. */
  maxRequestsPerConnection?: number;
  maxRetries?: number;
}

/** Istio's outlierDetection, durations in milliseconds. */
export interface OutlierDetectionPolicy {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
  minHealthPercent: number;
}

export interface ClusterPolicy {
  loadBalancer: LoadBalancerPolicy;
  connectionPool: ConnectionPoolLimits;
  outlierDetection?: OutlierDetectionPolicy;
}

/** A DestinationRule that says nothing: Istio's default balancing (LEAST_REQUEST), no limits, no ejection. */
export const DEFAULT_CLUSTER_POLICY: ClusterPolicy = { loadBalancer: { kind: 'least_request' }, connectionPool: {} };

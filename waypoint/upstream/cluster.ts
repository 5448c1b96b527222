// One upstream cluster, as Envoy (and Istio's naming) has one per service
// FQDN, port and subset: its endpoints (the subset's, by labels), the
// DestinationRule's balancer, outlier detection and circuit breakers, and a
// connection pool per endpoint and protocol over hop-2 tunnels. pick()
// chooses an endpoint for a request (or says no_healthy_upstream); request()
// sends it there through undici and returns the response head and a body
// stream, or a typed failure. Everything here is bounded by the endpoints,
// never by request data.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Clock } from '../../lib/core/clock.ts';
import type { ClusterPolicy, OutlierDetectionPolicy } from '../../lib/l7/cluster-policy.ts';
import { CircuitBreakers, type CircuitBreakerCounts, type Overflow } from './circuit-breakers.ts';
import { endpointKey, matchesLabels, type RequestView, type UpstreamEndpoint } from './endpoint.ts';
import { EndpointPool } from './endpoint-pool.ts';
import { failureOf, outcomeOf, type ClusterFailure } from './failures.ts';
import { grpcStatusToHttp, isGrpc } from './grpc-status.ts';
import { requestHash } from './hash-key.ts';
import { createLoadBalancer, type LoadBalancer, type PickContext, type Random } from './load-balancer.ts';
import { OutlierDetector, type OutlierEvent, type UpstreamOutcome } from './outlier-detector.ts';
import type { TunnelConnector } from './tunnel-connector.ts';

export interface ClusterName {
  /** The service's FQDN (`reviews.default.svc.cluster.local`). */
  service: string;
  port: number;
  subset?: string;
}

/** Istio's cluster name: `outbound|<port>|<subset>|<fqdn>`. */
export const clusterName = (n: ClusterName): string => `outbound|${n.port}|${n.subset ?? ''}|${n.service}`;

export interface ClusterOptions {
  name: ClusterName;
  policy: ClusterPolicy;
  /** The subset's labels; absent: every endpoint given. */
  subsetLabels?: Readonly<Record<string, string>>;
  /** The port is declared HTTP/2 or gRPC: every request goes upstream as HTTP/2 (else only those that came in as HTTP/2). */
  http2?: boolean;
  connector: TunnelConnector;
  /** Outlier detection's interval and ejection times. */
  clock?: Clock;
  /** Balancing's randomness. */
  random?: Random;
  onOutlierEvent?(event: OutlierEvent): void;
  onOverflow?(which: Overflow): void;
}

/** Envoy's host_selection_retry_max_attempts as Istio sets it: re-picks when a retry avoids the hosts already tried. */
const HOST_SELECTION_RETRIES = 5;

export type PickResult =
  | { ok: true; endpoint: UpstreamEndpoint; setCookie?: string }
  | { ok: false; failure: Extract<ClusterFailure, { kind: 'no_healthy_upstream' }> };

export interface PickOptions {
  /** Endpoint keys a retry would rather not use again (Envoy's previous_hosts predicate). */
  avoid?: ReadonlySet<string>;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query. */
  path: string;
  /** As they go upstream: hop-by-hop headers removed, `host` carrying the authority. */
  headers: Record<string, string | string[]>;
  body?: Readable | Buffer | string | null;
  /** The downstream spoke HTTP/2: so does the upstream. */
  downstreamHttp2?: boolean;
  /** Abort with UpstreamTimeoutError (or AbortSignal.timeout) for UT; any other reason reads as DC. */
  signal?: AbortSignal;
}

export type UpstreamResult =
  | {
      ok: true;
      endpoint: UpstreamEndpoint;
      status: number;
      headers: IncomingHttpHeaders;
      /** A Readable (with undici's text()/json()); read it to the end or destroy it: its connection is held until then. */
      body: Dispatcher.ResponseData['body'];
      /** Filled in when the body ends (gRPC's status travels here). */
      trailers: Record<string, string>;
    }
  | { ok: false; endpoint: UpstreamEndpoint; failure: ClusterFailure };

export interface ClusterStats {
  name: string;
  endpoints: number;
  ejected: number;
  /** Fewer than minHealthPercent healthy: balancing over all endpoints. */
  panic: boolean;
  connections: number;
  active: Readonly<CircuitBreakerCounts>;
  overflows: Readonly<CircuitBreakerCounts>;
}

interface Pools {
  http1?: EndpointPool;
  http2?: EndpointPool;
}

const sameOutlierPolicy = (a: OutlierDetectionPolicy | undefined, b: OutlierDetectionPolicy | undefined): boolean => JSON.stringify(a) === JSON.stringify(b);

export class Cluster {
  readonly name: string;
  readonly #o: ClusterOptions;
  readonly #random: Random;
  readonly #breakers: CircuitBreakers;
  readonly #pools = new Map<string, Pools>();
  #policy: ClusterPolicy;
  #balancer: LoadBalancer;
  #outlier: OutlierDetector | undefined;
  #members: readonly UpstreamEndpoint[] = [];
  /** The endpoints to balance over, rebuilt only when membership or health changes (the hash ring keys on it). */
  #candidates: readonly UpstreamEndpoint[] | undefined;
  #panic = false;
  readonly #outstanding = (e: UpstreamEndpoint): number => {
    const p = this.#pools.get(endpointKey(e));
    return (p?.http1?.outstanding ?? 0) + (p?.http2?.outstanding ?? 0);
  };

  constructor(options: ClusterOptions) {
    this.#o = options;
    this.name = clusterName(options.name);
    this.#random = options.random ?? Math.random;
    this.#policy = options.policy;
    this.#breakers = new CircuitBreakers(options.policy.connectionPool, options.onOverflow);
    this.#balancer = createLoadBalancer(options.policy.loadBalancer, this.#random);
    this.#outlier = this.#detector(options.policy.outlierDetection);
  }

  /** The service's endpoints now (the subset keeps those with its labels); connections to the ones gone are closed. */
  setEndpoints(endpoints: readonly UpstreamEndpoint[]): void {
    const byKey = new Map<string, UpstreamEndpoint>();
    for (const e of endpoints) if (!this.#o.subsetLabels || matchesLabels(e, this.#o.subsetLabels)) byKey.set(endpointKey(e), e);
    this.#members = [...byKey.values()];
    for (const [key, pools] of this.#pools) {
      if (byKey.has(key)) continue;
      this.#pools.delete(key);
      void pools.http1?.close();
      void pools.http2?.close();
    }
    this.#outlier?.setEndpoints(byKey.keys());
    this.#candidates = undefined;
  }

  /** A changed DestinationRule: new balancer and limits at once; outlier state is kept unless its settings changed. */
  setPolicy(policy: ClusterPolicy): void {
    const previous = this.#policy;
    this.#policy = policy;
    this.#breakers.setLimits(policy.connectionPool);
    this.#balancer = createLoadBalancer(policy.loadBalancer, this.#random);
    if (!sameOutlierPolicy(previous.outlierDetection, policy.outlierDetection)) {
      this.#outlier?.close();
      this.#outlier = this.#detector(policy.outlierDetection);
      this.#outlier?.setEndpoints(this.#members.map(endpointKey));
      this.#candidates = undefined;
    }
  }

  pick(request: RequestView, options: PickOptions = {}): PickResult {
    const hosts = this.#balanceOver();
    if (hosts.length === 0) return { ok: false, failure: { kind: 'no_healthy_upstream' } };
    const hashKey = this.#policy.loadBalancer.kind === 'consistent_hash' ? this.#policy.loadBalancer.hashKey : undefined;
    const { hash, setCookie } = hashKey ? requestHash(hashKey, request) : { hash: undefined, setCookie: undefined };
    const { avoid } = options;
    let endpoint: UpstreamEndpoint;
    let attempt = 0;
    for (;;) {
      const context: PickContext = { hash, attempt, outstanding: this.#outstanding };
      endpoint = this.#balancer.pick(hosts, context);
      if (!avoid?.has(endpointKey(endpoint)) || attempt++ >= HOST_SELECTION_RETRIES) break;
    }
    return { ok: true, endpoint, ...(setCookie ? { setCookie } : {}) };
  }

  async request(endpoint: UpstreamEndpoint, request: UpstreamRequest): Promise<UpstreamResult> {
    const key = endpointKey(endpoint);
    const http2 = this.#o.http2 === true || request.downstreamHttp2 === true;
    const pool = this.#poolFor(key, endpoint, http2);
    if (!pool) return { ok: false, endpoint, failure: { kind: 'no_healthy_upstream' } };
    const acquired = await pool.acquire(request.signal);
    if (!acquired.ok) return this.#failed(key, endpoint, acquired.failure);
    const { lease } = acquired;
    let data;
    try {
      data = await lease.client.request({
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body ?? null,
        signal: request.signal ?? null,
      });
    } catch (err) {
      lease.release();
      return this.#failed(key, endpoint, failureOf(err, request.signal));
    }
    const { statusCode: status, headers, body, trailers } = data;
    body.once('close', lease.release);
    this.#recordResponse(key, status, headers, body, trailers);
    return { ok: true, endpoint, status, headers, body, trailers };
  }

  /** Takes a retry under maxRetries: the function ends it; undefined means the retry is not to be made (upstream_rq_retry_overflow). */
  admitRetry(): (() => void) | undefined {
    if (!this.#breakers.tryStartRetry()) return undefined;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#breakers.retryEnded();
    };
  }

  stats(): ClusterStats {
    this.#balanceOver();
    let connections = 0;
    for (const p of this.#pools.values()) connections += (p.http1?.connections ?? 0) + (p.http2?.connections ?? 0);
    return {
      name: this.name,
      endpoints: this.#members.length,
      ejected: this.#outlier?.ejectedCount ?? 0,
      panic: this.#panic,
      connections,
      active: { ...this.#breakers.active },
      overflows: { ...this.#breakers.overflows },
    };
  }

  /** Waiting requests fail, open ones finish; then every connection is closed. */
  async close(): Promise<void> {
    this.#outlier?.close();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.flatMap((p) => [p.http1?.close(), p.http2?.close()]));
  }

  #detector(policy: OutlierDetectionPolicy | undefined): OutlierDetector | undefined {
    if (!policy) return undefined;
    const { clock, onOutlierEvent } = this.#o;
    return new OutlierDetector(policy, {
      ...(clock ? { clock } : {}),
      ...(onOutlierEvent ? { onEvent: onOutlierEvent } : {}),
      onChange: () => void (this.#candidates = undefined),
    });
  }

  /** The healthy endpoints; all of them when fewer than minHealthPercent are healthy (Envoy's panic); none when there are none. */
  #balanceOver(): readonly UpstreamEndpoint[] {
    if (this.#candidates) return this.#candidates;
    const outlier = this.#outlier;
    const healthy = outlier && outlier.ejectedCount > 0 ? this.#members.filter((e) => !outlier.isEjected(endpointKey(e))) : this.#members;
    const minHealthPercent = this.#policy.outlierDetection?.minHealthPercent ?? 0;
    this.#panic = this.#members.length > 0 && (100 * healthy.length) / this.#members.length < minHealthPercent;
    this.#candidates = this.#panic ? this.#members : healthy;
    return this.#candidates;
  }

  /** The endpoint's pool for the protocol; undefined for an endpoint that is not (or no longer) a member. */
  #poolFor(key: string, endpoint: UpstreamEndpoint, http2: boolean): EndpointPool | undefined {
    let pools = this.#pools.get(key);
    if (!pools) {
      if (!this.#members.some((m) => endpointKey(m) === key)) return undefined;
      this.#pools.set(key, (pools = {}));
    }
    const protocol = http2 ? 'http2' : 'http1';
    return (pools[protocol] ??= new EndpointPool({ endpoint, http2, connector: this.#o.connector, breakers: this.#breakers }));
  }

  #failed(key: string, endpoint: UpstreamEndpoint, failure: ClusterFailure): UpstreamResult {
    const outcome = outcomeOf(failure);
    if (outcome !== undefined) this.#record(key, outcome);
    return { ok: false, endpoint, failure };
  }

  /** A status counts at once; a gRPC response's, from grpc-status, in its headers or (deferred, as Envoy does) its trailers. */
  #recordResponse(key: string, status: number, headers: IncomingHttpHeaders, body: Readable, trailers: Record<string, string>): void {
    if (!this.#outlier) return;
    if (!isGrpc(headers['content-type'])) return this.#record(key, status);
    const inHeaders = grpcStatusToHttp(headers['grpc-status']);
    if (inHeaders !== undefined || status !== 200) return this.#record(key, inHeaders ?? status);
    body.once('end', () => {
      const code = grpcStatusToHttp(trailers['grpc-status']);
      if (code !== undefined) this.#record(key, code);
    });
  }

  #record(key: string, outcome: UpstreamOutcome): void {
    this.#outlier?.record(key, outcome);
  }
}

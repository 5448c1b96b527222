// One request forwarded to a cluster, as Envoy's router does it: an endpoint
// picked per try (a retry avoids the endpoints already tried when the policy
// says so, Envoy's previous_hosts predicate), each try under the route's
// timeout (from the end of the request, as Envoy's) and its own per-try
// timeout, a failed try or a retriable response retried with backoff while
// attempts, the cluster's retry budget (maxRetries) and the buffered body
// allow; then the response relayed with the route's response header
// operations and x-envoy-upstream-service-time, or the local reply Envoy
// would make, with its response flags.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../lib/core/clock.ts';
import { applyHeaderOps, type HeaderMap, type HeaderOps, type Random, type RetryPolicy } from '../lib/l7/index.ts';
import type { ClusterLookup } from './clusters.ts';
import type { WaypointDestination } from './destination.ts';
import type { HttpExchange } from './downstream/exchange.ts';
import { sendLocalReply, type LocalReply } from './downstream/local-reply.ts';
import type { RequestBody } from './request-body.ts';
import { backoffMs, retriesFailure, retriesResponse } from './retry-rules.ts';
import { peerWorkloadOf } from './telemetry/peer-workload.ts';
import { signalWith, sleep, Timeout } from './timers.ts';
import type { UpstreamResult } from './upstream/cluster.ts';
import { endpointKey, type RequestView as BalanceView } from './upstream/endpoint.ts';
import { failureOf, localReplyOf } from './upstream/failures.ts';
import { isGrpc } from './upstream/grpc-status.ts';

export interface ForwardPlan {
  target: Extract<ClusterLookup, { ok: true }>;
  method: string;
  /** Path and query, rewritten. */
  path: string;
  /** As they go upstream, the route's request header operations applied. */
  headers: Record<string, string | string[]>;
  timeoutMs?: number;
  retry: RetryPolicy | null;
  responseHeaders: readonly HeaderOps[];
}

export interface ForwardContext {
  exchange: HttpExchange<WaypointDestination>;
  body: RequestBody | undefined;
  balance: BalanceView;
  clock: Clock;
  /** The retry backoff's jitter. */
  random: Random;
  trustDomain: string;
}

/** A gRPC answer with no body: its status is in the head, which is sent alone. */
const GRPC_TRAILERS_ONLY_DUMP_BYTES = 64 * 1024;

type Ok = Extract<UpstreamResult, { ok: true }>;

function reply(exchange: ForwardContext['exchange'], local: LocalReply | undefined): void {
  if (local) sendLocalReply(exchange, local);
}

function headerMapOf(headers: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}

const trailersOf = (trailers: Record<string, string>): OutgoingHttpHeaders | undefined => (Object.keys(trailers).length > 0 ? { ...trailers } : undefined);

export async function forward(ctx: ForwardContext, plan: ForwardPlan): Promise<void> {
  const { exchange, clock } = ctx;
  const { info, request } = exchange;
  const { cluster, workloadOf } = plan.target;
  const policy = plan.retry;
  info.upstreamCluster = cluster.name;
  const route = new Timeout(clock, plan.timeoutMs);
  let requestEnd = performance.now();
  if (ctx.body) {
    void ctx.body.whenEnded().then((ended) => {
      if (!ended) return;
      requestEnd = performance.now();
      route.start();
    });
  } else {
    route.start();
  }
  const tried = new Set<string>();
  let retries = 0;
  let endRetry: (() => void) | undefined;

  /** Waits out the backoff of one more retry: 'retry', 'no' (the request is answered with what it has), or 'aborted' (the client left or the route timed out). */
  const retry = async (): Promise<'retry' | 'no' | 'aborted'> => {
    if (!policy || retries >= policy.attempts) {
      info.flag('URX');
      return 'no';
    }
    if (ctx.body && !ctx.body.replayable) return 'no';
    const admitted = cluster.admitRetry();
    if (!admitted) {
      // Envoy's retry circuit breaker (upstream_rq_retry_overflow): the flag is UO.
      info.flag('UO');
      return 'no';
    }
    retries++;
    const waited = await sleep(clock, backoffMs(policy, retries, ctx.random), signalWith(exchange.signal, route));
    if (!waited) {
      admitted();
      return 'aborted';
    }
    endRetry = admitted;
    return 'retry';
  };

  try {
    for (;;) {
      const picked = cluster.pick(ctx.balance, policy?.ignorePreviousHosts && tried.size > 0 ? { avoid: tried } : {});
      if (!picked.ok) return reply(exchange, { kind: 'no_healthy_upstream' });
      const { endpoint } = picked;
      const key = endpointKey(endpoint);
      tried.add(key);
      info.upstreamHost = key;
      const workload = workloadOf(key);
      info.destination = workload ? peerWorkloadOf(workload, ctx.trustDomain) : {};
      const body = ctx.body ? ctx.body.open() : null;
      // Only a body that broke off before the first try has nothing to send.
      if (body === undefined) return reply(exchange, { kind: 'upstream_reset', reason: 'local reset', retried: retries > 0 });
      const perTry = new Timeout(clock, policy?.perTryTimeoutMs);
      perTry.start();
      const result = await cluster.request(endpoint, {
        method: plan.method,
        path: plan.path,
        headers: plan.headers,
        body,
        downstreamHttp2: request.protocol === 'HTTP/2',
        signal: signalWith(exchange.signal, route, perTry),
      });
      perTry.clear();
      endRetry?.();
      endRetry = undefined;
      if (exchange.signal.aborted) {
        if (result.ok) result.body.destroy();
        return;
      }
      if (route.fired) {
        if (result.ok) result.body.destroy();
        return reply(exchange, { kind: 'upstream_timeout' });
      }
      if (!result.ok) {
        const { failure } = result;
        if (failure.kind === 'connect_failure') info.upstreamTransportFailureReason = failure.reason;
        if (policy && retriesFailure(policy, failure)) {
          const next = await retry();
          if (next === 'retry') continue;
          if (next === 'aborted') return route.fired ? reply(exchange, { kind: 'upstream_timeout' }) : undefined;
        }
        return reply(exchange, perTry.fired ? { kind: 'upstream_timeout', perTry: true } : localReplyOf(failure, retries > 0));
      }
      if (policy && retriesResponse(policy, result.status, result.headers)) {
        const next = await retry();
        if (next === 'retry') {
          void result.body.dump().catch(() => {});
          continue;
        }
        if (next === 'aborted') {
          result.body.destroy();
          return route.fired ? reply(exchange, { kind: 'upstream_timeout' }) : undefined;
        }
      }
      return await relay(ctx, plan, result, picked.setCookie, route, performance.now() - requestEnd);
    }
  } finally {
    endRetry?.();
    route.clear();
  }
}

/** The upstream's response to the client: head, body with backpressure, trailers; a failure mid-body resets the client's stream, as Envoy does. */
async function relay(ctx: ForwardContext, plan: ForwardPlan, result: Ok, setCookie: string | undefined, route: Timeout, serviceTimeMs: number): Promise<void> {
  const { exchange } = ctx;
  const { response, request, info } = exchange;
  const headers = applyHeaderOps(headerMapOf(result.headers), plan.responseHeaders);
  if (setCookie) {
    const existing = headers['set-cookie'];
    headers['set-cookie'] = existing === undefined ? setCookie : [...(Array.isArray(existing) ? existing : [existing]), setCookie];
  }
  const { body } = result;
  if (isGrpc(result.headers['content-type']) && result.headers['grpc-status'] !== undefined) {
    await body.dump({ limit: GRPC_TRAILERS_ONLY_DUMP_BYTES }).catch(() => {});
    return response.respond(result.status, headers, { endStream: true, upstreamServiceTimeMs: serviceTimeMs });
  }
  response.respond(result.status, headers, { upstreamServiceTimeMs: serviceTimeMs, trailers: request.grpc || result.headers.trailer !== undefined });
  await new Promise<void>((resolve) => {
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      exchange.signal.removeEventListener('abort', gone);
      resolve();
    };
    const gone = () => {
      body.destroy();
      finish();
    };
    exchange.signal.addEventListener('abort', gone, { once: true });
    body.on('data', (chunk: Buffer) => {
      if (response.write(chunk)) return;
      body.pause();
      response.onDrain(() => body.resume());
    });
    body.once('end', () => {
      response.end(trailersOf(result.trailers));
      finish();
    });
    body.once('error', (err: unknown) => {
      if (!response.ended && !exchange.signal.aborted) {
        const failure = failureOf(err, route.fired ? route.signal : undefined);
        info.flag(failure.kind === 'timeout' ? 'UT' : 'UR');
        info.responseCodeDetails = failure.kind === 'timeout' ? 'response_timeout' : 'upstream_reset_after_response_started';
        response.reset();
      }
      finish();
    });
  });
}

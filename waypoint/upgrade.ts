// An HTTP/1.1 Upgrade (WebSocket) forwarded after routing: a hop-2 tunnel of
// its own to the endpoint (an upgraded connection is never pooled), the
// upgrade request through undici, the upstream's 101 answered to the client
// and both raw streams spliced. No retries: an upgrade is not idempotent
// once the upstream has switched. An upstream that answers other than 101
// reads as a reset (undici gives no response to relay), answered 503.
import type { Duplex } from 'node:stream';
import { applyHeaderOps, type HeaderMap, type HeaderOps } from '../lib/l7/index.ts';
import { relay, type Leg } from '../lib/hbone/relay.ts';
import type { ClusterLookup } from './clusters.ts';
import type { WaypointDestination } from './destination.ts';
import type { UpgradeExchange } from './downstream/downstream.ts';
import { sendLocalReply } from './downstream/local-reply.ts';
import { peerWorkloadOf } from './telemetry/peer-workload.ts';
import { endpointKey, type RequestView as BalanceView } from './upstream/endpoint.ts';
import { failureOf, localReplyOf } from './upstream/failures.ts';
import { clientOnTunnel } from './upstream/tunnel-client.ts';
import type { TunnelConnector } from './upstream/tunnel-connector.ts';

export interface UpgradePlan {
  target: Extract<ClusterLookup, { ok: true }>;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  responseHeaders: readonly HeaderOps[];
}

export interface UpgradeContext {
  exchange: UpgradeExchange<WaypointDestination>;
  connector: TunnelConnector;
  balance: BalanceView;
  trustDomain: string;
}

const ignore = () => {};

/** A raw stream as a relay leg: a reset is a destroy. */
function duplexLeg(stream: Duplex): Leg {
  stream.on('error', ignore);
  return { stream, reset: () => void stream.destroy(), onReset: (callback) => void stream.once('error', callback), wasReset: () => false };
}

const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

export async function forwardUpgrade(ctx: UpgradeContext, plan: UpgradePlan): Promise<void> {
  const { exchange } = ctx;
  const { info, request } = exchange;
  const { cluster, workloadOf } = plan.target;
  info.upstreamCluster = cluster.name;
  const picked = cluster.pick(ctx.balance);
  if (!picked.ok) return sendLocalReply(exchange, { kind: 'no_healthy_upstream' });
  const { endpoint } = picked;
  const key = endpointKey(endpoint);
  info.upstreamHost = key;
  const workload = workloadOf(key);
  info.destination = workload ? peerWorkloadOf(workload, ctx.trustDomain) : {};
  const pending = ctx.connector.open(endpoint);
  const cancel = () => pending.cancel();
  exchange.signal.addEventListener('abort', cancel, { once: true });
  let stream: Duplex;
  try {
    stream = await pending.ready;
  } catch (err) {
    const failure = failureOf(err, exchange.signal);
    if (failure.kind === 'connect_failure') info.upstreamTransportFailureReason = failure.reason;
    const reply = localReplyOf(failure);
    return reply && sendLocalReply(exchange, reply);
  } finally {
    exchange.signal.removeEventListener('abort', cancel);
  }
  const client = clientOnTunnel(stream, key, false);
  const protocol = single(request.headers.upgrade) ?? 'websocket';
  let upgraded: { headers: Record<string, string | string[] | undefined>; socket: Duplex };
  try {
    upgraded = await client.upgrade({ method: plan.method, path: plan.path, headers: plan.headers, protocol, signal: exchange.signal });
  } catch (err) {
    void client.destroy().catch(ignore);
    const reply = localReplyOf(failureOf(err, exchange.signal));
    return reply && sendLocalReply(exchange, reply);
  }
  const headers: HeaderMap = {};
  for (const [name, value] of Object.entries(upgraded.headers)) if (value !== undefined) headers[name] = value;
  headers.connection ??= 'Upgrade';
  headers.upgrade ??= protocol;
  exchange.response.respond(101, applyHeaderOps(headers, plan.responseHeaders), { endStream: true });
  const { socket, head } = exchange.upgrade;
  if (head.length > 0) upgraded.socket.write(head);
  relay(duplexLeg(socket), duplexLeg(upgraded.socket), () => void client.destroy().catch(ignore));
}

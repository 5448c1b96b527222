// A tunnel carried at L4 (a TCP-family port, or one whose first bytes were
// not HTTP): the waypoint's policies judged on the client's HBONE identity
// and address alone (l4-authz.ts: HTTP attributes fail closed), an endpoint
// chosen as for a request, and the bytes relayed to it through a hop-2
// tunnel of their own under the waypoint's identity. Istio's TCP metrics
// count the connection and its bytes.
import { h2Leg, relay } from '../lib/hbone/relay.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ClusterSet } from './clusters.ts';
import type { WaypointConfig } from './config.ts';
import type { WaypointDestination } from './destination.ts';
import type { TcpPassthrough } from './downstream/dispatch.ts';
import type { ResponseFlag } from './telemetry/response-flags.ts';
import type { TcpRecord, WaypointMetrics } from './telemetry/metrics.ts';
import { peerWorkloadOf } from './telemetry/peer-workload.ts';
import { serviceOf, sourceOf } from './request-facts.ts';
import { endpointKey } from './upstream/endpoint.ts';
import { failureOf, responseFlag } from './upstream/failures.ts';
import type { TunnelConnector } from './upstream/tunnel-connector.ts';

export interface TcpProxyContext {
  config: WaypointConfig | undefined;
  clusters: ClusterSet;
  connector: TunnelConnector;
  metrics?: WaypointMetrics;
  log: Logger;
}

export function proxyTcp(ctx: TcpProxyContext, connection: TcpPassthrough<WaypointDestination>): void {
  const { stream, head, tunnel } = connection;
  const client = h2Leg(stream);
  const { config, log } = ctx;
  const d = tunnel.destination;
  const fields = { authority: `${tunnel.authority.ip}:${tunnel.authority.port}`, source: tunnel.identity, why: connection.why };
  if (!config) return client.reset();
  const decision = config.l4Authz.decide({ method: '', path: '', query: '', headers: {}, service: serviceOf(d), source: sourceOf(tunnel) });
  if (!decision.allowed) {
    log.warn('tcp_denied', { ...fields, policy: decision.policy, reason: decision.reason });
    return client.reset();
  }
  const target = d.kind === 'service' ? ctx.clusters.forBackend(config, { host: d.host, port: d.port.port }) : ctx.clusters.forWorkload(config, d);
  const picked = target.ok ? target.cluster.pick({ headers: {}, path: '', sourceIp: tunnel.sourceAddress?.ip ?? tunnel.peer?.ip ?? '' }) : undefined;
  const record: TcpRecord = {
    source: tunnel.source,
    destination: {},
    ...(d.kind === 'service' ? { service: { namespace: d.namespace, name: d.name } } : {}),
    connectionSecurity: tunnel.security,
    responseFlags: [],
    bytesReceived: head.length,
    bytesSent: 0,
    downstreamLocalAddress: tunnel.authority,
  };
  const flags: ResponseFlag[] = [];
  const closed = () => ctx.metrics?.tcpClosed({ ...record, responseFlags: flags });
  ctx.metrics?.tcpOpened(record);
  if (!target.ok || !picked?.ok) {
    log.warn('tcp_no_upstream', { ...fields, reason: target.ok ? 'no healthy endpoint' : target.reason });
    flags.push('UH');
    client.reset();
    return closed();
  }
  const { endpoint } = picked;
  const workload = target.workloadOf(endpointKey(endpoint));
  if (workload) record.destination = peerWorkloadOf(workload, config.self.trustDomain);
  const pending = ctx.connector.openLeg(endpoint);
  const gone = () => pending.cancel();
  stream.once('close', gone);
  pending.ready.then(
    (upstream) => {
      stream.off('close', gone);
      if (stream.destroyed) {
        upstream.reset();
        return closed();
      }
      if (head.length > 0) upstream.stream.write(head);
      stream.on('data', (c: Buffer) => (record.bytesReceived += c.length));
      upstream.stream.on('data', (c: Buffer) => (record.bytesSent += c.length));
      relay(client, upstream, closed);
    },
    (err: unknown) => {
      stream.off('close', gone);
      const flag = responseFlag(failureOf(err));
      flags.push(flag === 'DC' ? 'DC' : 'UF');
      log.warn('tcp_upstream_failed', { ...fields, upstream: endpointKey(endpoint), error: err });
      client.reset();
      closed();
    },
  );
}

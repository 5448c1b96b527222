// Outbound capture: a connection the kernel redirected from an enrolled pod.
// The cgroup getsockname hook makes the accepted socket's local address the
// application's original destination and its remote address the pod's.
// outbound-plan.ts decides where it goes; this carries the plan out.
import type { Socket } from 'node:net';
import { ztunnelLimits, type ZtunnelLimits } from '../lib/config/ztunnel.ts';
import { endpointOf, endpointWithoutZone } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import { awaitTunnel, deferredTunnel, type SessionFailureOf } from '../lib/hbone/client.ts';
import { dial, forward, type PendingLeg } from '../lib/hbone/forward.ts';
import { newTraceContext } from '../lib/hbone/headers.ts';
import { socketLeg } from '../lib/hbone/relay.ts';
import type { TunnelPool } from '../lib/hbone/tunnel-pool.ts';
import type { MeshIdentity } from '../lib/identity/mesh-identity.ts';
import { formatSpiffeId } from '../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../lib/identity/tls.ts';
import type { StateStore } from '../lib/mesh/state.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import { refOf, type Flow, type FlowTable } from '../lib/telemetry/flow-table.ts';
import { ConnectionCounts } from '../lib/hbone/connection-counts.ts';
import { deniedReason, type DestinationPolicy } from './destination-policy.ts';
import type { ZtunnelMetrics } from './metrics.ts';
import { isSourceMismatch, planOutbound, type OutboundPlan } from './outbound-plan.ts';
import type { Resolver } from './resolve.ts';
import { reportSourceMismatch } from './source-mismatch.ts';

export interface OutboundOptions {
  store: StateStore;
  resolver: Resolver;
  flows: FlowTable;
  pool: TunnelPool;
  log: Logger;
  /** Source address for connections to pods on this node (the node's), by the target's IP. */
  sourceAddress(targetIp: string): string | undefined;
  /** The capture listeners' own addresses: a connection addressed to one of them was not redirected, and must not loop. */
  ownAddresses: ReadonlySet<string>;
  /** Where the application connected; by default the socket's local address, as the kernel rewrote it. */
  originalDestination?(socket: Socket): Endpoint | undefined;
  /** Authorizes same-node connections, as the destination's ztunnel (which this is). */
  policy: DestinationPolicy;
  /** Absent: cleartext tunnels (no CA configured). */
  identity?: MeshIdentity;
  metrics: ZtunnelMetrics;
  /** Timeouts and caps (lib/config/ztunnel.ts); unset ones take the defaults. */
  limits?: Partial<ZtunnelLimits>;
}

const localEndpoint = (s: Socket): Endpoint | undefined => endpointOf(s.localAddress, s.localPort);

type TunnelPlan = Extract<OutboundPlan, { kind: 'tunnel' }>;

/** The relay's idle timeout (0: none), and how long a connect or a tunnel's answer may take. */
interface Timeouts {
  idleMs: number;
  connectMs: number;
}

/** Opens the plan's CONNECT stream; with mutual TLS, once the source's certificate is at hand. */
function openTunnel(o: OutboundOptions, plan: TunnelPlan, traceparent: string, connectMs: number): PendingLeg {
  const headers = { ...plan.headers, traceparent };
  const failureOf: SessionFailureOf = (s) => o.pool.failureOf(s);
  const { identity } = o;
  const { mtls, via } = plan;
  // A waypoint pod's own HBONE port; a node's ztunnel listens on the pool's.
  const peer = { node: via, ...(plan.port === undefined ? {} : { port: plan.port }) };
  if (!identity || !mtls) return awaitTunnel(o.pool.open(peer, plan.target, headers), via.name, failureOf, connectMs);
  return deferredTunnel(async () => {
    // A pod's first connections may meet its certificate's retry (the CA bundle still on its way): they wait for it, as for a connect.
    const held = await identity.certs.ensure(mtls.source, connectMs);
    const key = { ...peer, source: formatSpiffeId(mtls.source), destination: formatSpiffeId(mtls.destination), tls: hboneClientTlsOptions(held, mtls.destination) };
    return o.pool.open(key, plan.target, headers);
  }, via.name, failureOf, connectMs);
}

/** Carries out a plan for an accepted client socket. */
function act(o: OutboundOptions, client: Socket, plan: OutboundPlan, { idleMs, connectMs }: Timeouts): void {
  const open = (traceId?: string) => o.flows.open({ ...plan.flow, ...(traceId ? { traceId } : {}) }, { socket: client, facing: 'client' });
  switch (plan.kind) {
    case 'refuse': {
      const flow = open();
      if (plan.reason === 'source_mismatch') reportSourceMismatch(o.log, o.metrics, flow.record, 'the pod\'s socket is bound to an address that is not the pod\'s own');
      client.resetAndDestroy();
      return flow.close(plan.reason);
    }
    case 'deny': {
      const flow = open();
      o.policy.denied(flow, plan.authz.decision, plan.status);
      client.resetAndDestroy();
      return flow.close(deniedReason(plan.authz.decision));
    }
    case 'direct': {
      const flow = open();
      if (plan.authz) o.policy.watch(flow, plan.authz.request);
      return carry(o, client, flow, dial(plan.target, plan.path === 'local' ? o.sourceAddress(plan.target.ip) : undefined, connectMs), idleMs);
    }
    case 'tunnel': {
      const trace = newTraceContext();
      const flow = open(trace.traceId);
      return carry(o, client, flow, openTunnel(o, plan, trace.traceparent, connectMs), idleMs);
    }
  }
}

/** Relays the client to the upstream once it is up; a failed upstream resets the client. */
function carry(o: OutboundOptions, client: Socket, flow: Flow, pending: PendingLeg, idleMs: number): void {
  forward(socketLeg(client), pending, flow, {
    failed: (err) => {
      if (err.reason === 'denied') {
        flow.record.verdict = 'deny';
        flow.record.verdictReason = 'the destination ztunnel answered 401';
      }
      // The application's connect already succeeded (to us); a reset is the closest to "refused".
      client.resetAndDestroy();
      o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
    },
  }, idleMs);
}

/** A pod over its connection cap: reset at once, recorded as a flow closed with connection_limit, counted. */
function refuseOverCap(o: OutboundOptions, client: Socket, source: Endpoint, destination: Endpoint): void {
  const workload = refOf(o.store.view?.workloadByIp(source.ip));
  const flow = o.flows.open({ direction: 'outbound', source: { ...source, workload }, originalDestination: destination });
  client.resetAndDestroy();
  o.metrics.refused('outbound', 'connection_limit');
  flow.close('connection_limit');
}

export function createOutboundHandler(o: OutboundOptions): (socket: Socket) => void {
  const originalDestination = o.originalDestination ?? localEndpoint;
  const trustDomain = o.identity?.trustDomain;
  const limits = ztunnelLimits(o.limits ?? {});
  const timeouts: Timeouts = { idleMs: limits.idleTimeout * 1000, connectMs: limits.connectTimeout * 1000 };
  const perPod = new ConnectionCounts();
  return (client) => {
    // Without its zone, a pod's link-local source is refused visibly (source_mismatch: the kernel marked it) rather than silently.
    const source = endpointWithoutZone(client.remoteAddress, client.remotePort);
    const destination = originalDestination(client);
    if (!source || !destination) return void client.destroy();
    // A marked connection is refused at once, and its source address is not that pod's to count.
    // Counted per pod, not per address: a dual-stack pod holds one budget.
    const pod = o.store.view?.workloadByIp(source.ip)?.uid ?? source.ip;
    if (!isSourceMismatch(destination) && !perPod.admit(pod, client, limits.maxConnectionsPerPod)) return refuseOverCap(o, client, source, destination);
    act(o, client, planOutbound(o.store.view, { source, destination, ownAddresses: o.ownAddresses, resolver: o.resolver, ...(trustDomain ? { trustDomain } : {}) }), timeouts);
  };
}

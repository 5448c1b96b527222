// Outbound capture: a connection the kernel redirected from an enrolled pod.
// The cgroup getsockname hook makes the accepted socket's local address the
// application's original destination and its remote address the pod's.
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { ForwardError } from '../errors.ts';
import type { Endpoint } from './flow.ts';
import { refOf, type FlowTable } from './flow-table.ts';
import { dial, forward, type PendingLeg } from './forward.ts';
import { baggage, forwardedFor, newTraceContext } from './hbone-headers.ts';
import { endpointOf, hostPort } from './ip.ts';
import type { Logger } from './log.ts';
import { h2Leg, socketLeg, streamResetter, type Leg } from './relay.ts';
import type { Resolver, Route } from './resolve.ts';
import type { StateStore } from './state.ts';
import type { TunnelPool } from './tunnel-pool.ts';

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
}

/** Connections refused before resolution. */
interface Refusal {
  kind: 'reject';
  reason: 'not_ready' | 'loop';
  service?: undefined;
  workload?: undefined;
}

const localEndpoint = (s: Socket): Endpoint | undefined => endpointOf(s.localAddress, s.localPort);

function tunnelStatusReason(status: number): string {
  if (status === 503) return 'upstream_connect_failed';
  if (status === 401) return 'denied';
  return 'tunnel_rejected';
}

/** Waits for the tunnel's response: 200 gives the stream as a leg, anything else a ForwardError. */
export function awaitTunnel(stream: ClientHttp2Stream, peer: string): PendingLeg {
  const cancel = streamResetter(stream);
  const ready = new Promise<Leg>((resolve, reject) => {
    const closed = () => reject(new ForwardError('tunnel_failed', `tunnel to ${peer} closed before answering (code ${stream.rstCode})`));
    stream.on('error', () => {});
    stream.once('close', closed);
    stream.once('response', (headers: IncomingHttpHeaders) => {
      stream.off('close', closed);
      const status = Number(headers[':status']);
      if (status === 200) return resolve(h2Leg(stream));
      cancel();
      reject(new ForwardError(tunnelStatusReason(status), `tunnel to ${peer} answered ${status}`));
    });
  });
  return { ready, cancel };
}

export function createOutboundHandler(o: OutboundOptions): (socket: Socket) => void {
  const originalDestination = o.originalDestination ?? localEndpoint;
  return (client) => {
    const src = endpointOf(client.remoteAddress, client.remotePort);
    const dst = originalDestination(client);
    if (!src || !dst) return void client.destroy();
    const view = o.store.view;
    const srcWorkload = view?.workloadByIp(src.ip);
    let route: Route | Refusal;
    if (!view) route = { kind: 'reject', reason: 'not_ready' };
    else if (o.ownAddresses.has(hostPort(dst.ip, dst.port))) route = { kind: 'reject', reason: 'loop' };
    else route = o.resolver.resolve(view, dst);
    const trace = route.kind === 'tunnel' ? newTraceContext() : undefined;
    const flow = o.flows.open(
      {
        direction: 'outbound',
        source: { ...src, workload: refOf(srcWorkload) },
        originalDestination: dst,
        service: refOf(route.service),
        destination: route.kind === 'reject' ? undefined : { ...route.target, workload: refOf(route.workload), node: route.workload?.node },
        path: route.kind === 'reject' ? undefined : route.kind === 'tunnel' ? 'tunnel' : route.path,
        traceId: trace?.traceId,
      },
      { socket: client, facing: 'client' },
    );
    if (route.kind === 'reject') {
      client.resetAndDestroy();
      return flow.close(route.reason);
    }
    let pending: PendingLeg;
    if (route.kind === 'direct') {
      pending = dial(route.target, route.path === 'local' ? o.sourceAddress(route.target.ip) : undefined);
    } else {
      const headers: Record<string, string> = { forwarded: forwardedFor(src), traceparent: trace!.traceparent };
      if (srcWorkload) headers.baggage = baggage(srcWorkload);
      pending = awaitTunnel(o.pool.open({ node: route.node }, route.target, headers), route.node.name);
    }
    forward(socketLeg(client), pending, flow, {
      failed: (err) => {
        // The application's connect already succeeded (to us); a reset is the closest to "refused".
        client.resetAndDestroy();
        o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
      },
    });
  };
}

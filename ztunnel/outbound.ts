// Outbound capture: a connection the kernel redirected from an enrolled pod.
// The cgroup getsockname hook makes the accepted socket's local address the
// application's original destination and its remote address the pod's.
import type { ClientHttp2Stream, Http2Session, IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { ForwardError } from '../lib/core/errors.ts';
import { formatSpiffeId } from '../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../lib/identity/tls.ts';
import type { Workload } from '../lib/mesh/model.ts';
import { verdictOf, type DestinationPolicy } from './destination-policy.ts';
import { identityOf, type MeshIdentity } from '../lib/identity/mesh-identity.ts';
import type { Endpoint } from '../lib/telemetry/flow.ts';
import { refOf, type FlowTable } from '../lib/telemetry/flow-table.ts';
import { dial, forward, type PendingLeg } from '../lib/hbone/forward.ts';
import { baggage, forwardedFor, newTraceContext } from '../lib/hbone/headers.ts';
import { endpointOf, hostPort } from '../lib/core/ip.ts';
import type { Logger } from '../lib/core/log.ts';
import { h2Leg, socketLeg, streamResetter, type Leg } from '../lib/hbone/relay.ts';
import type { Resolver, Route } from './resolve.ts';
import type { StateStore } from '../lib/mesh/state.ts';
import type { TunnelPool } from '../lib/hbone/tunnel-pool.ts';

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
export function awaitTunnel(stream: ClientHttp2Stream, peer: string, failureOf: (s: Http2Session | undefined) => string | undefined = () => undefined): PendingLeg {
  const cancel = streamResetter(stream);
  const session = stream.session;
  const ready = new Promise<Leg>((resolve, reject) => {
    const fail = () => reject(new ForwardError(failureOf(session) ?? 'tunnel_failed', `tunnel to ${peer} closed before answering (code ${stream.rstCode})`));
    // A failed handshake closes the streams before the session reports why: wait for the session to finish.
    const closed = () => (session && !session.closed ? session.once('close', fail) : fail());
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

/** A tunnel whose stream can only be opened once the source's certificate is at hand. */
function deferredTunnel(open: () => Promise<ClientHttp2Stream>, peer: string, failureOf: (s: Http2Session | undefined) => string | undefined): PendingLeg {
  let inner: PendingLeg | undefined;
  let cancelled = false;
  const ready = open().then(
    (stream) => {
      inner = awaitTunnel(stream, peer, failureOf);
      if (cancelled) inner.cancel();
      return inner.ready;
    },
    (cause: unknown) => {
      throw new ForwardError('no_certificate', `no certificate for the source identity: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    },
  );
  return {
    ready,
    cancel: () => {
      cancelled = true;
      inner?.cancel();
    },
  };
}

export function createOutboundHandler(o: OutboundOptions): (socket: Socket) => void {
  const uri = (w: Workload | undefined) => (w && o.identity ? formatSpiffeId(identityOf(w, o.identity.trustDomain)) : undefined);
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
    const meshed = route.kind === 'tunnel' || (route.kind === 'direct' && route.path === 'local');
    const sourceIdentity = uri(srcWorkload);
    const destinationIdentity = meshed && route.kind !== 'reject' ? uri(route.workload) : undefined;
    // Same node: this ztunnel is also the destination's, so policy is decided here.
    const request = route.kind === 'direct' && route.path === 'local' && route.workload
      ? { source: { ip: src.ip, ...(sourceIdentity ? { principal: sourceIdentity } : {}) }, destination: { ip: route.target.ip, port: route.target.port, workload: route.workload } }
      : undefined;
    const decision = request && view ? o.policy.decide(view, request) : undefined;
    const flow = o.flows.open(
      {
        direction: 'outbound',
        source: { ...src, workload: refOf(srcWorkload), ...(sourceIdentity ? { identity: sourceIdentity } : {}) },
        originalDestination: dst,
        service: refOf(route.service),
        destination: route.kind === 'reject' ? undefined : { ...route.target, workload: refOf(route.workload), node: route.workload?.node, ...(destinationIdentity ? { identity: destinationIdentity } : {}) },
        path: route.kind === 'reject' ? undefined : route.kind === 'tunnel' ? 'tunnel' : route.path,
        traceId: trace?.traceId,
        ...(meshed ? { security: o.identity ? 'mutual_tls' : 'plaintext' } as const : {}),
        ...(decision ? verdictOf(decision) : {}),
      },
      { socket: client, facing: 'client' },
    );
    if (route.kind === 'reject') {
      client.resetAndDestroy();
      return flow.close(route.reason);
    }
    if (decision && !decision.allowed) {
      o.policy.denied(flow, decision, 401);
      client.resetAndDestroy();
      return flow.close('denied');
    }
    if (request) o.policy.watch(flow, request);
    let pending: PendingLeg;
    if (route.kind === 'direct') {
      pending = dial(route.target, route.path === 'local' ? o.sourceAddress(route.target.ip) : undefined);
    } else {
      const headers: Record<string, string> = { forwarded: forwardedFor(src), traceparent: trace!.traceparent };
      if (srcWorkload) headers.baggage = baggage(srcWorkload);
      const failureOf = (s: Http2Session | undefined) => o.pool.failureOf(s);
      const { identity } = o;
      if (identity && srcWorkload) {
        const source = identityOf(srcWorkload, identity.trustDomain);
        const destination = identityOf(route.workload, identity.trustDomain);
        pending = deferredTunnel(async () => {
          const held = await identity.certs.ensure(source);
          const key = { node: route.node, source: sourceIdentity, destination: destinationIdentity, tls: hboneClientTlsOptions(held, destination) };
          return o.pool.open(key, route.target, headers);
        }, route.node.name, failureOf);
      } else {
        pending = awaitTunnel(o.pool.open({ node: route.node }, route.target, headers), route.node.name, failureOf);
      }
    }
    forward(socketLeg(client), pending, flow, {
      failed: (err) => {
        if (err.reason === 'denied') Object.assign(flow.record, { verdict: 'deny', verdictReason: 'the destination ztunnel answered 401' });
        // The application's connect already succeeded (to us); a reset is the closest to "refused".
        client.resetAndDestroy();
        o.log.warn('upstream_error', { flow: flow.record.id, reason: err.reason, error: err });
      },
    });
  };
}

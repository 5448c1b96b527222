// Hop 2's transport: an HBONE tunnel to the chosen endpoint's node ztunnel,
// opened exactly as the ztunnel's outbound side opens its own (a CONNECT
// stream from the shared TunnelPool, awaited by lib/hbone/client.ts), but
// under the waypoint's OWN identity: its certificate is presented, the
// endpoint's workload identity is named in SNI and required of the peer's
// certificate, and `:authority` is `podIP:targetPort`. The destination
// ztunnel then applies L4 policy to the waypoint.
//
// No Forwarded header: a hop-2 connection carries requests of many clients,
// so it has no one client to name; the destination sees the waypoint (its
// address and certificate) as the source, as Istio's ztunnel does.
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { realClock, type Clock } from '../../lib/core/clock.ts';
import { ForwardError } from '../../lib/core/errors.ts';
import { awaitTunnel, deferredTunnel, type SessionFailureOf } from '../../lib/hbone/client.ts';
import type { PendingLeg } from '../../lib/hbone/forward.ts';
import type { Leg } from '../../lib/hbone/relay.ts';
import { newTraceContext } from '../../lib/hbone/headers.ts';
import type { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import { formatSpiffeId, type SpiffeId } from '../../lib/identity/spiffe.ts';
import type { CertificateStore } from '../../lib/identity/store.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import { endpointKey, type UpstreamEndpoint } from './endpoint.ts';
import { UpstreamConnectError } from './errors.ts';

/** Istio's default connectionPool.tcp.connectTimeout. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface WaypointIdentity {
  /** The waypoint's own SPIFFE ID (its service account). */
  self: SpiffeId;
  certs: Pick<CertificateStore, 'ensure'>;
}

export interface TunnelConnectorOptions {
  /** Sessions to the nodes' ztunnels on their HBONE port (15008), shared by every cluster. */
  pool: TunnelPool;
  /** Absent: cleartext tunnels (no CA configured), as the ztunnel's own. */
  identity?: WaypointIdentity;
  /** A tunnel not up by then fails as connect_timeout (Envoy's UF "connection timeout"). */
  connectTimeoutMs?: number;
  clock?: Clock;
  /** Sent on every CONNECT (the waypoint's baggage); a fresh traceparent is added per tunnel. */
  headers?: Readonly<OutgoingHttpHeaders>;
}

/** A tunnel being set up: `ready` gives its stream, or rejects with UpstreamConnectError. */
export interface PendingTunnel {
  ready: Promise<Duplex>;
  cancel(): void;
}

/** The same, as a relay leg (lib/hbone/relay.ts), for bytes carried at L4. */
export interface PendingTunnelLeg {
  ready: Promise<Leg>;
  cancel(): void;
}

function connectError(err: unknown, endpoint: string): UpstreamConnectError {
  if (err instanceof UpstreamConnectError) return err;
  if (err instanceof ForwardError) return new UpstreamConnectError(err.reason, `hop 2 to ${endpoint}: ${err.message}`, { cause: err });
  return new UpstreamConnectError('upstream_failed', `hop 2 to ${endpoint}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export class TunnelConnector {
  readonly #o: TunnelConnectorOptions;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #failureOf: SessionFailureOf;

  constructor(options: TunnelConnectorOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#failureOf = (s) => options.pool.failureOf(s);
  }

  open(endpoint: UpstreamEndpoint): PendingTunnel {
    const { ready, cancel } = this.openLeg(endpoint);
    return { ready: ready.then((leg) => leg.stream), cancel };
  }

  openLeg(endpoint: UpstreamEndpoint): PendingTunnelLeg {
    const key = endpointKey(endpoint);
    const pending = this.#openLeg(endpoint);
    const { scheduler } = this.#clock;
    let resolve!: (leg: Leg) => void;
    let reject!: (err: UpstreamConnectError) => void;
    const ready = new Promise<Leg>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that cancelled may never await it.
    ready.catch(() => {});
    let settled = false;
    // Raced by hand: a tunnel whose session hangs in its handshake reports only when the pool's handshake timeout fires.
    const fail = (err: UpstreamConnectError) => {
      if (settled) return;
      settled = true;
      scheduler.clear(timer);
      pending.cancel();
      reject(err);
    };
    const timer = scheduler.set(() => fail(new UpstreamConnectError('connect_timeout', `hop 2 to ${key}: the tunnel through node ${endpoint.node.name} was not up within ${this.#timeoutMs} ms; check that the node's ztunnel answers on its HBONE port`)), this.#timeoutMs);
    pending.ready.then(
      (leg) => {
        if (settled) return leg.reset();
        settled = true;
        scheduler.clear(timer);
        resolve(leg);
      },
      (err: unknown) => fail(connectError(err, key)),
    );
    return { ready, cancel: () => fail(new UpstreamConnectError('upstream_failed', `hop 2 to ${key}: cancelled before the tunnel was up`)) };
  }

  /** As ztunnel/outbound.ts opens a tunnel: with mutual TLS once the certificate is at hand, else cleartext. */
  #openLeg(endpoint: UpstreamEndpoint): PendingLeg {
    const { pool, identity } = this.#o;
    const target = { ip: endpoint.ip, port: endpoint.port };
    const headers = { ...this.#o.headers, traceparent: newTraceContext().traceparent };
    const peer = endpoint.node.name;
    if (!identity) return awaitTunnel(pool.open({ node: endpoint.node }, target, headers), peer, this.#failureOf);
    return deferredTunnel(async () => {
      const held = await identity.certs.ensure(identity.self);
      const key = {
        node: endpoint.node,
        source: formatSpiffeId(identity.self),
        destination: formatSpiffeId(endpoint.identity),
        tls: hboneClientTlsOptions(held, endpoint.identity),
      };
      return pool.open(key, target, headers);
    }, peer, this.#failureOf);
  }
}

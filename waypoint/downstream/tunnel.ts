// One CONNECT stream from a source ztunnel (hop 1): what it asks for, whether
// the waypoint serves it, and what every request carried on it knows about
// where it came from. The `:authority` is the original VIP:port (or pod
// IP:port) the source connected to; it alone picks the destination, never an
// HTTP Host header inside the tunnel.
import { parseHostPort } from '../../lib/core/ip.ts';
import { parseForwardedFor, tunnelRequestOf } from '../../lib/hbone/headers.ts';
import type { SpiffeId } from '../../lib/identity/spiffe.ts';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import type { ConnectionSecurity } from '../../lib/telemetry/reasons.ts';
import type { TunnelRefusal } from '../telemetry/reasons.ts';
import type { PeerWorkload } from '../telemetry/request-record.ts';
import type { PortDeclaration } from './protocol.ts';

/** What the authority named: a Service port (VIP traffic) or a workload's port (pod-IP traffic). */
export interface TunnelDestination {
  readonly kind: 'service' | 'workload';
  readonly namespace: string;
  readonly name: string;
  /** The port, as declared: its protocol decides how the stream is served (protocol.ts). */
  readonly port: PortDeclaration & { readonly port: number };
}

/** What the lookup is asked about a stream. */
export interface TunnelInput {
  /** Where the source connected: the `:authority`. */
  authority: Endpoint;
  /** The source address the Forwarded header claims: the source ztunnel's word, to be checked before it is believed. */
  claimedSource: Endpoint | undefined;
  /** The session's remote address (the source ztunnel's). */
  peer: Endpoint | undefined;
  /** The identity the client's certificate proved (the source workload's); undefined on a cleartext listener. */
  identity: SpiffeId | undefined;
  /** The source ztunnel's W3C baggage: the source workload's metadata. */
  baggage: string | undefined;
}

export type TunnelDecision<D extends TunnelDestination> =
  /** Serve it. `source`: the source workload as telemetry names it; `sourceAddress`: its address, once the claim checked out. */
  | { kind: 'accept'; destination: D; source: PeerWorkload; sourceAddress?: Endpoint }
  | { kind: 'refuse'; reason: Extract<TunnelRefusal, 'unknown_authority' | 'not_served'>; detail?: string };

/** Given by the integration: the mesh state knows which Service or workload an address is, and whether this waypoint serves it. */
export type TunnelLookup<D extends TunnelDestination> = (input: TunnelInput) => TunnelDecision<D>;

/** What every request and connection carried on an accepted tunnel knows about it. */
export interface TunnelContext<D extends TunnelDestination> {
  readonly destination: D;
  readonly authority: Endpoint;
  readonly source: PeerWorkload;
  readonly sourceAddress: Endpoint | undefined;
  readonly peer: Endpoint | undefined;
  /** The client certificate's SPIFFE ID, as a URI. */
  readonly identity: string | undefined;
  readonly security: ConnectionSecurity;
  /** The SNI of the session's handshake. */
  readonly sni: string | undefined;
  /** The tunnel's own trace id (from its traceparent): the L4 flow at the source ztunnel. */
  readonly traceId: string | undefined;
}

/** The status a refused stream is answered with, as the ztunnel's inbound answers (lib/hbone/client.ts reads them back). */
export const REFUSAL_STATUS: Readonly<Record<TunnelRefusal, 400 | 401 | 503>> = {
  not_connect: 400,
  bad_authority: 400,
  unknown_authority: 503,
  not_served: 503,
  unauthenticated: 401,
};

const single = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The stream's request, read and checked: what the lookup is asked, or why the stream is refused before asking. */
export function readTunnelRequest(headers: Readonly<Record<string, unknown>>, session: { peer: Endpoint | undefined; identity: SpiffeId | undefined }):
  { kind: 'input'; input: TunnelInput; traceparent: string | undefined } | { kind: 'refuse'; reason: TunnelRefusal; authority: string | undefined } {
  const request = tunnelRequestOf(headers);
  if (request.method !== 'CONNECT') return { kind: 'refuse', reason: 'not_connect', authority: request.authority };
  const authority = request.authority === undefined ? undefined : parseHostPort(request.authority);
  if (!authority) return { kind: 'refuse', reason: 'bad_authority', authority: request.authority };
  return {
    kind: 'input',
    input: { authority, claimedSource: parseForwardedFor(request.forwarded), peer: session.peer, identity: session.identity, baggage: single(headers.baggage) },
    traceparent: request.traceparent,
  };
}

// Client end of one tunnelled connection: a CONNECT stream from the pool
// becomes an upstream leg once the peer answers 200; anything else becomes a
// ForwardError naming why, which the flow closes with. Shared by every proxy
// that opens tunnels (the ztunnel, later the waypoint).
import type { ClientHttp2Stream, Http2Session, IncomingHttpHeaders } from 'node:http2';
import { ForwardError } from '../core/errors.ts';
import type { SessionFailure, UpstreamFailure } from '../telemetry/reasons.ts';
import type { PendingLeg } from './forward.ts';
import { h2Leg, streamResetter, type Leg } from './relay.ts';

/** Why a session failed, if it did (TunnelPool.failureOf). */
export type SessionFailureOf = (session: Http2Session | undefined) => SessionFailure | undefined;

/** The close reason of a tunnel the peer answered with `status` other than 200. */
function tunnelStatusReason(status: number): UpstreamFailure {
  if (status === 503) return 'upstream_connect_failed';
  if (status === 401) return 'denied';
  return 'tunnel_rejected';
}

/**
 * Waits for the tunnel's response: 200 gives the stream as a leg, anything
 * else a ForwardError. With `timeoutMs` (0: none), a peer that has not
 * answered that long after the stream opened, its session up, is given up as
 * connect_timeout and the stream reset (a handshake has a timeout of its own).
 */
export function awaitTunnel(stream: ClientHttp2Stream, peer: string, failureOf: SessionFailureOf = () => undefined, timeoutMs = 0): PendingLeg {
  const cancel = streamResetter(stream);
  const session = stream.session;
  let timer: NodeJS.Timeout | undefined;
  const ready = new Promise<Leg>((resolve, reject) => {
    const fail = () => reject(new ForwardError(failureOf(session) ?? 'tunnel_failed', `tunnel to ${peer} closed before answering (code ${stream.rstCode})`));
    // A failed handshake closes the streams before the session reports why: wait for the session to finish.
    const closed = () => {
      clearTimeout(timer);
      return session && !session.closed ? session.once('close', fail) : fail();
    };
    // While the session is still handshaking, the handshake's own timeout decides: look again later.
    const expire = () => {
      if (session?.connecting) return void (timer = setTimeout(expire, timeoutMs).unref());
      reject(new ForwardError('connect_timeout', `tunnel to ${peer} did not answer its CONNECT within ${timeoutMs / 1000} s (--connect-timeout)`));
      cancel();
    };
    if (timeoutMs > 0) timer = setTimeout(expire, timeoutMs).unref();
    stream.on('error', () => {});
    stream.once('close', closed);
    stream.once('response', (headers: IncomingHttpHeaders) => {
      clearTimeout(timer);
      stream.off('close', closed);
      const status = Number(headers[':status']);
      if (status === 200) return resolve(h2Leg(stream));
      cancel();
      reject(new ForwardError(tunnelStatusReason(status), `tunnel to ${peer} answered ${status}`));
    });
  });
  return { ready, cancel };
}

/** A tunnel whose stream can only be opened once the source's certificate is at hand (`open` rejects without one); `timeoutMs` as awaitTunnel's. */
export function deferredTunnel(open: () => Promise<ClientHttp2Stream>, peer: string, failureOf: SessionFailureOf, timeoutMs = 0): PendingLeg {
  let inner: PendingLeg | undefined;
  let cancelled = false;
  const ready = open().then(
    (stream) => {
      inner = awaitTunnel(stream, peer, failureOf, timeoutMs);
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

// Serving one accepted tunnel: by its port's declared protocol (protocol.ts),
// or by its first bytes when it declares none (sniff.ts), to the HTTP/1.1
// server, the HTTP/2 server, or the L4 passthrough hook.
import type { ServerHttp2Stream } from 'node:http2';
import type { Scheduler } from '../../lib/core/clock.ts';
import { declaredProtocol, servingOf } from './protocol.ts';
import { sniff, type NotHttp } from './sniff.ts';
import type { TunnelContext, TunnelDestination } from './tunnel.ts';

/** A tunnel carried at L4: the hook relays `stream` to the destination (lib/hbone/relay.ts h2Leg), `head` first. */
export interface TcpPassthrough<D extends TunnelDestination> {
  /** The CONNECT stream, answered 200; its bytes are the source's connection. */
  stream: ServerHttp2Stream;
  /** Bytes already read from the stream (while looking for HTTP): send them upstream before relaying. */
  head: Buffer;
  /** The client half-closed before the relay began (its stream has ended). */
  ended: boolean;
  tunnel: TunnelContext<D>;
  /** Declared TCP-family, or an undeclared port whose first bytes were not HTTP (or did not come in time). */
  why: 'declared' | NotHttp;
}

export interface DispatchTargets<D extends TunnelDestination> {
  http1(stream: ServerHttp2Stream, tunnel: TunnelContext<D>): void;
  http2(stream: ServerHttp2Stream, tunnel: TunnelContext<D>): void;
  tcp(connection: TcpPassthrough<D>): void;
}

const EMPTY = Buffer.alloc(0);

export function dispatchTunnel<D extends TunnelDestination>(stream: ServerHttp2Stream, tunnel: TunnelContext<D>, targets: DispatchTargets<D>, sniffTimeoutMs: number, scheduler: Scheduler): void {
  const serving = servingOf(declaredProtocol(tunnel.destination.port));
  if (serving === 'tcp') return targets.tcp({ stream, head: EMPTY, ended: false, tunnel, why: 'declared' });
  void sniff(stream, serving === 'http' ? 'http' : 'detect', sniffTimeoutMs, scheduler).then((result) => {
    switch (result.kind) {
      case 'http1':
        return targets.http1(stream, tunnel);
      case 'h2':
        return targets.http2(stream, tunnel);
      case 'tcp':
        return targets.tcp({ stream, head: result.head, ended: result.ended, tunnel, why: result.why });
      case 'closed':
        if (!stream.destroyed) stream.end();
    }
  });
}

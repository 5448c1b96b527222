// Carrying one accepted connection: wait for the upstream side (a TCP connect
// or a tunnel's 200) without reading the client, then relay. Nothing waits for
// client bytes, so server-first protocols work.
import { connect, type Socket } from 'node:net';
import { ForwardError } from '../core/errors.ts';
import type { Endpoint } from '../telemetry/flow.ts';
import type { Flow } from '../telemetry/flow-table.ts';
import { relay, socketLeg, type Leg } from './relay.ts';

/** An upstream leg being set up. `ready` rejects with a ForwardError whose reason becomes the flow's close reason. */
export interface PendingLeg {
  ready: Promise<Leg>;
  cancel(): void;
}

/**
 * Connects to `target` (from `localAddress`, if given) with half-close
 * allowed. With `timeoutMs` (0: none), a connect not done by then is given up
 * as connect_timeout: a destination that drops SYNs would otherwise hold the
 * flow for the kernel's two minutes of retries.
 */
export function dial(target: Endpoint, localAddress: string | undefined, timeoutMs = 0): PendingLeg & { socket: Socket } {
  const socket: Socket = connect({ host: target.ip, port: target.port, localAddress, allowHalfOpen: true, noDelay: true });
  const ready = new Promise<Leg>((resolve, reject) => {
    const timer = timeoutMs > 0 ? setTimeout(() => {
      reject(new ForwardError('connect_timeout', `connect to ${target.ip}:${target.port} did not complete within ${timeoutMs / 1000} s (--connect-timeout)`));
      socket.destroy();
    }, timeoutMs).unref() : undefined;
    const failed = (cause: Error) => reject(new ForwardError('upstream_connect_failed', `connect to ${target.ip}:${target.port} failed: ${cause.message}`, { cause }));
    socket.once('error', failed);
    socket.once('close', () => clearTimeout(timer));
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', failed);
      resolve(socketLeg(socket));
    });
  });
  return { socket, ready, cancel: () => socket.destroy() };
}

export interface ForwardHooks {
  /** The upstream is up, before any byte flows (the inbound side answers 200 here). */
  up?(): void;
  /** The upstream could not be set up; the client leg is still open. */
  failed(error: ForwardError): void;
}

/** Relays `client` to the pending upstream once it is up; `idleMs` (0: none) is the relay's idle timeout. */
export function forward(client: Leg, pending: PendingLeg, flow: Flow, hooks: ForwardHooks, idleMs = 0): void {
  let upstream: Leg | undefined;
  const clientGone = () => {
    pending.cancel();
    flow.close('client_reset');
  };
  client.stream.once('close', clientGone);
  flow.abort = (reason = 'shutdown') => {
    client.reset();
    if (upstream) upstream.reset();
    else pending.cancel();
    flow.close(reason);
  };
  pending.ready.then(
    (leg) => {
      client.stream.off('close', clientGone);
      upstream = leg;
      if (flow.closed) return leg.reset();
      hooks.up?.();
      relay(client, leg, (end) => flow.close(end), idleMs);
    },
    (err: unknown) => {
      client.stream.off('close', clientGone);
      if (flow.closed) return;
      const error = err instanceof ForwardError ? err : new ForwardError('upstream_failed', String(err), { cause: err });
      hooks.failed(error);
      flow.close(error.reason);
    },
  );
}

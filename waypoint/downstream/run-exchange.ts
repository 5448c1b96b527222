// Runs the integration's handler on one exchange and keeps its failures in
// the exchange: a handler that throws, or that settles without finishing the
// response, gets the request answered (500, or a reset once the head is
// out) and logged, never a hung client or a crashed waypoint.
import type { Logger } from '../../lib/core/log.ts';
import type { Exchange } from './exchange.ts';
import { sendLocalReply } from './local-reply.ts';
import type { TunnelDestination } from './tunnel.ts';

export function runExchange<D extends TunnelDestination, X extends Exchange<D>>(exchange: X, handler: (exchange: X) => Promise<void>, log: Logger): void {
  const fail = (why: string, error?: unknown) => {
    if (exchange.closed || exchange.response.ended) return;
    log.error('request_handler_failed', { why, method: exchange.request.method, path: exchange.request.path, requestId: exchange.request.trace.requestId, ...(error ? { error } : {}) });
    sendLocalReply(exchange, { kind: 'internal_error' });
  };
  let settled: Promise<void>;
  try {
    settled = handler(exchange);
  } catch (error) {
    return fail('the handler threw', error);
  }
  settled.then(
    () => fail('the handler settled without finishing the response'),
    (error: unknown) => fail('the handler failed', error),
  );
}

// How a proxy process ends: on SIGTERM or SIGINT it stops taking new work and
// gives what is open its drain time, as the ztunnel and the waypoint do.
import type { Logger } from './log.ts';

/** Waits for SIGTERM or SIGINT, then shuts down with drainSeconds for open work; exits 1 if that shutdown hangs. */
export async function drainOnSignal(log: Logger, drainSeconds: number, shutdown: (drainMs: number) => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info('signal', { signal });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // Open work is cut after the drain time; this only guards against a peer that never lets a session close.
  setTimeout(() => {
    log.error('shutdown_timeout');
    process.exit(1);
  }, drainSeconds * 1000 + 5000).unref();
  await shutdown(drainSeconds * 1000);
}

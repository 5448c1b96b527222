// Open connections per key (a peer's address for the per-peer cap on the
// ztunnel's and the waypoint's HBONE listeners, a pod's UID for the per-pod
// cap on the outbound capture listener): a socket counts from accept until it
// closes.
import type { Socket } from 'node:net';

export class ConnectionCounts {
  readonly #counts = new Map<string, number>();

  /** Counts `socket` against `key` unless `key` already holds `max`; false: refuse it. */
  admit(key: string, socket: Socket, max: number): boolean {
    const n = this.#counts.get(key) ?? 0;
    if (n >= max) return false;
    this.#counts.set(key, n + 1);
    socket.once('close', () => {
      const left = (this.#counts.get(key) ?? 1) - 1;
      if (left > 0) this.#counts.set(key, left);
      else this.#counts.delete(key);
    });
    return true;
  }
}

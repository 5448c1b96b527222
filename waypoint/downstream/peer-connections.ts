// Open connections per source address, for the HBONE listener's per-peer cap:
// a socket counts from accept until it closes. (The same bookkeeping as the
// ztunnel's connection-counts.ts, which a process folder cannot import.)
import type { Socket } from 'node:net';

export class PeerConnections {
  readonly #counts = new Map<string, number>();

  /** Counts `socket` against `address` unless `address` already holds `max`; false: refuse it. */
  admit(address: string, socket: Socket, max: number): boolean {
    const n = this.#counts.get(address) ?? 0;
    if (n >= max) return false;
    this.#counts.set(address, n + 1);
    socket.once('close', () => {
      const left = (this.#counts.get(address) ?? 1) - 1;
      if (left > 0) this.#counts.set(address, left);
      else this.#counts.delete(address);
    });
    return true;
  }
}

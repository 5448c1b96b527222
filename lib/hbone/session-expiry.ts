// TLS checks certificates once, in the handshake, so an HBONE session would
// outlive the certificates it was set up with. Both tunnel ends drain a
// session (no new streams; open ones finish) when the earlier of its own and
// its peer's certificate expires, and the next stream gets a new session with
// current certificates.
import type { TLSSocket } from 'node:tls';
import { scheduleAt, type Clock } from '../core/clock.ts';

/** The earlier notAfter of the session's own and its peer's certificate, in ms; undefined without TLS or certificates. */
export function certificatesExpireAt(socket: TLSSocket | undefined): number | undefined {
  if (!socket || typeof socket.getPeerX509Certificate !== 'function') return undefined;
  const times = [socket.getX509Certificate(), socket.getPeerX509Certificate()]
    .filter((cert) => cert !== undefined)
    .map((cert) => cert.validToDate.getTime());
  return times.length === 0 ? undefined : Math.min(...times);
}

/**
 * Calls `drain` when the session's certificates expire; the returned function
 * cancels it (call it when the session closes). Nothing to schedule without
 * TLS. `maxLeadMs` drains that much early, but never more than a tenth of the
 * time left: the client drains before the server would, so a new stream never
 * meets the server's GOAWAY, and a session opened just before expiry still
 * carries its streams instead of being drained at once.
 */
export function drainAtCertificateExpiry(socket: TLSSocket | undefined, clock: Clock, drain: () => void, maxLeadMs = 0): () => void {
  const expiresAt = certificatesExpireAt(socket);
  if (expiresAt === undefined) return () => {};
  const lead = Math.min(maxLeadMs, Math.max(0, expiresAt - clock.now()) / 10);
  return scheduleAt(clock, expiresAt - lead, drain);
}

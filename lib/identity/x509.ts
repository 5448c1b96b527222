// Small X.509 facts shared by every issuer meshlet has (the mesh CA, the
// sandbox's cluster PKI).
import { randomBytes } from 'node:crypto';

/** A positive 128-bit serial (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

/** X.509 times have whole seconds: a certificate valid "now" must not start a fraction of a second later. */
export const wholeSecond = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);

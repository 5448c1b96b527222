// X.509 serials, shared by every issuer meshlet has (the mesh CA, the
// sandbox's cluster PKI).
import { randomBytes } from 'node:crypto';

/** A positive 128-bit serial (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

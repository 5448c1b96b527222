// X.509 serials, shared by every issuer meshlet has (the mesh CA, the
// sandbox's cluster PKI).
import { randomBytes } from 'node:crypto';

/**
 * A positive 16-octet serial (RFC 5280 allows up to 20). The first octet is
 * kept in 0x40-0x7f: a high bit would make the INTEGER negative, and leading
 * zero octets are padding DER forbids, of which node-forge drops only one; a
 * serial starting with two made OpenSSL refuse the whole certificate
 * ("illegal padding"), about once in 65,536 issued.
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes.toString('hex');
}

// A fresh key pair and a PKCS#10 request whose only SAN is the identity's URI.
// RSA 2048 because node-forge only does RSA; forge hands key generation to
// Node's native crypto.generateKeyPair when given a callback (tens of ms,
// off the event loop), which is why this is async.
import forge from 'node-forge';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';

export const KEY_BITS = 2048;

export interface CertificateRequest {
  /** PKCS#1 RSA private key, PEM. Never leaves the ztunnel. */
  keyPem: string;
  csrPem: string;
}

export function generateKeyPair(bits: number = KEY_BITS): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits, e: 0x10001 }, (err, keys) => (err ? reject(err) : resolve(keys)));
  });
}

/** Signs a CSR for `uris` (the subject stays empty, as SPIFFE allows). */
export function createCsr(keys: forge.pki.rsa.KeyPair, uris: readonly string[]): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([]);
  csr.setAttributes([{
    name: 'extensionRequest',
    extensions: [{ name: 'subjectAltName', critical: true, altNames: uris.map((value) => ({ type: 6, value })) }],
  }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

export async function newCertificateRequest(id: SpiffeId): Promise<CertificateRequest> {
  const keys = await generateKeyPair();
  return { keyPem: forge.pki.privateKeyToPem(keys.privateKey), csrPem: createCsr(keys, [formatSpiffeId(id)]) };
}

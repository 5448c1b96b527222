// Certificates for the haproxy-mtls baseline, from the same CA as meshlet's:
// leaves signed with node-forge by the sandbox CA's root key, RSA 2048 like
// the ztunnels' workload certificates, so both paths pay the same handshake.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { BenchSetupError } from './errors.ts';

const KEY_BITS = 2048;
const TTL_MS = 24 * 3600 * 1000;

export interface CaRoot {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
}

export async function loadRoot(caStateDir: string): Promise<CaRoot> {
  try {
    const certPem = await readFile(join(caStateDir, 'root-cert.pem'), 'utf8');
    const keyPem = await readFile(join(caStateDir, 'root-key.pem'), 'utf8');
    return { cert: forge.pki.certificateFromPem(certPem), key: forge.pki.privateKeyFromPem(keyPem), certPem };
  } catch (err) {
    throw new BenchSetupError(`cannot read the sandbox CA's root from ${caStateDir}: ${(err as Error).message}`, { cause: err });
  }
}

export interface IssuedPair {
  certPem: string;
  keyPem: string;
}

/** A leaf for `dnsName` (haproxy checks it with verifyhost) and a SPIFFE URI, usable as server and client. */
export async function issueLeaf(root: CaRoot, dnsName: string, spiffeId: string): Promise<IssuedPair> {
  // Native key generation: forge's pure-JS RSA takes seconds.
  const { publicKey, privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: KEY_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString('hex');
  const notBefore = new Date(Date.now() - 60_000);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = new Date(notBefore.getTime() + TTL_MS);
  cert.setSubject([{ name: 'commonName', value: dnsName }]);
  cert.setIssuer(root.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: dnsName }, { type: 6, value: spiffeId }] },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(root.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey };
}

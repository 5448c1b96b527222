// The mesh root: a self-signed RSA CA, created once and kept where every
// replica of the CA finds it (root-secret.ts: a Secret), so a restarted CA
// signs under the root every ztunnel already trusts. Its certificate, and
// only its certificate, is also written to --state-dir as the trust bundle.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import { generateKeyPair } from '../lib/identity/csr.ts';
import { wholeSecond } from '../lib/core/clock.ts';
import { randomSerial } from '../lib/identity/x509.ts';
import { CaStateError } from './errors.ts';
import { writeFileAtomic } from '../lib/core/write-atomic.ts';

export const ROOT_CERT_FILE = 'root-cert.pem';
const ROOT_YEARS = 10;

export interface MeshRoot {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
  /** PKCS#1 PEM of the key: what the root's store keeps. */
  keyPem: string;
  /** SubjectKeyIdentifier bytes (forge binary string), the leaves' authorityKeyIdentifier. */
  keyId: string;
}

export async function createRoot(trustDomain: string): Promise<MeshRoot> {
  const keys = await generateKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  const now = new Date();
  cert.validity.notBefore = wholeSecond(now.getTime());
  cert.validity.notAfter = new Date(cert.validity.notBefore);
  cert.validity.notAfter.setUTCFullYear(cert.validity.notAfter.getUTCFullYear() + ROOT_YEARS);
  const name = [{ name: 'organizationName', value: 'meshlet' }, { name: 'commonName', value: `meshlet root CA (${trustDomain})` }];
  cert.setSubject(name);
  cert.setIssuer(name);
  // X.509-SVID §3.2/§4: a signing certificate is cA with keyCertSign, and its
  // SPIFFE ID, if any, is the bare trust domain.
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://${trustDomain}` }] },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return meshRoot(cert, keys.privateKey);
}

/** The root in these PEMs, or what makes it unusable for `trustDomain` (a phrase: "holds …", "expired …"). */
export function readRoot(certPem: string, keyPem: string, trustDomain: string): MeshRoot | string {
  let cert: forge.pki.Certificate;
  let key: forge.pki.rsa.PrivateKey;
  try {
    cert = forge.pki.certificateFromPem(certPem);
  } catch (err) {
    return `holds no PEM certificate (${(err as Error).message})`;
  }
  try {
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    return `holds no PEM RSA private key (${(err as Error).message})`;
  }
  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n || !key.n || pub.n.compareTo(key.n) !== 0) return 'holds a key that is not the key of its certificate';
  if (cert.validity.notAfter.getTime() <= Date.now()) return `holds a root that expired on ${cert.validity.notAfter.toISOString()}`;
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value: string }[] } | undefined;
  const rootDomain = san?.altNames?.find((a) => a.type === 6)?.value.replace(/^spiffe:\/\//, '');
  if (rootDomain !== trustDomain) {
    return `holds the root of trust domain ${rootDomain ?? '(none)'}, but --trust-domain is ${trustDomain} (start the CA with that trust domain, or give it another --root-secret)`;
  }
  return meshRoot(cert, key);
}

function meshRoot(cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey): MeshRoot {
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key), keyId: cert.generateSubjectKeyIdentifier().getBytes() };
}

/** Writes the root certificate to `stateDir`/root-cert.pem (replaced whole, never seen half written); returns its path. */
export async function writeTrustBundle(stateDir: string, root: MeshRoot): Promise<string> {
  const path = join(stateDir, ROOT_CERT_FILE);
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o755 });
    await writeFileAtomic(path, root.certPem, 0o644);
  } catch (err) {
    throw new CaStateError(`cannot write the trust bundle ${path}: ${(err as Error).message}; check that --state-dir is a writable directory`, { cause: err });
  }
  return path;
}

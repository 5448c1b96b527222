// The mesh root: a self-signed RSA CA generated on first start and kept in
// --state-dir, so a restarted CA keeps signing under the root every ztunnel
// already trusts. Its certificate file is the trust bundle operators hand out.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import type { Logger } from '../lib/core/log.ts';
import { generateKeyPair } from '../lib/identity/csr.ts';
import { wholeSecond } from '../lib/core/clock.ts';
import { randomSerial } from '../lib/identity/x509.ts';
import { CaStateError } from './errors.ts';

export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';
const ROOT_YEARS = 10;

export interface MeshRoot {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
  /** SubjectKeyIdentifier bytes (forge binary string), the leaves' authorityKeyIdentifier. */
  keyId: string;
}

export async function loadOrCreateRoot(stateDir: string, trustDomain: string, log?: Logger): Promise<MeshRoot> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const certPath = join(stateDir, ROOT_CERT_FILE);
  const keyPath = join(stateDir, ROOT_KEY_FILE);
  const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if (certPem !== undefined && keyPem !== undefined) {
    const root = parseRoot(certPem, keyPem, certPath, trustDomain);
    log?.info('mesh root loaded', { file: certPath, serial: root.cert.serialNumber, notAfter: root.cert.validity.notAfter.toISOString() });
    return root;
  }
  if (certPem !== undefined || keyPem !== undefined) {
    throw new CaStateError(`${stateDir} holds only one of ${ROOT_CERT_FILE} and ${ROOT_KEY_FILE}; restore the other, or empty the directory to create a new root (every workload certificate must then be reissued)`);
  }
  const root = await createRoot(trustDomain);
  // Key first: a certificate on disk always has its key next to it.
  await writeAtomic(keyPath, forge.pki.privateKeyToPem(root.key), 0o600);
  await writeAtomic(certPath, root.certPem, 0o644);
  log?.info('mesh root created', { file: certPath, serial: root.cert.serialNumber, trustDomain });
  return root;
}

async function createRoot(trustDomain: string): Promise<MeshRoot> {
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
  return { cert, key: keys.privateKey, certPem: forge.pki.certificateToPem(cert), keyId: cert.generateSubjectKeyIdentifier().getBytes() };
}

function parseRoot(certPem: string, keyPem: string, certPath: string, trustDomain: string): MeshRoot {
  let cert: forge.pki.Certificate;
  let key: forge.pki.rsa.PrivateKey;
  try {
    cert = forge.pki.certificateFromPem(certPem);
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    throw new CaStateError(`cannot read the mesh root in ${certPath}: ${(err as Error).message}`, { cause: err });
  }
  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n || pub.n.compareTo(key.n) !== 0) throw new CaStateError(`${ROOT_KEY_FILE} is not the key of ${certPath}; restore the matching pair`);
  if (cert.validity.notAfter.getTime() <= Date.now()) throw new CaStateError(`the mesh root ${certPath} expired on ${cert.validity.notAfter.toISOString()}; move the state directory away to create a new root`);
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value: string }[] } | undefined;
  const rootDomain = san?.altNames?.find((a) => a.type === 6)?.value.replace(/^spiffe:\/\//, '');
  if (rootDomain !== trustDomain) {
    throw new CaStateError(`the mesh root ${certPath} is for trust domain ${rootDomain ?? '(none)'}, but --trust-domain is ${trustDomain}; use the same trust domain or another --state-dir`);
  }
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyId: cert.generateSubjectKeyIdentifier().getBytes() };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CaStateError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

// Certificates for the haproxy-mtls baseline, from the same CA as meshlet's:
// leaves signed with node-forge by the sandbox CA's root key (read from its
// Secret, as an operator with admin rights could), RSA 2048 like the
// ztunnels' workload certificates, so both paths pay the same handshake.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { DEFAULT_ROOT_SECRET } from '../../lib/config/ca.ts';
import { sandboxKubectl } from '../../sandbox/api.ts';
import { BenchSetupError } from './errors.ts';

const KEY_BITS = 2048;
const TTL_MS = 24 * 3600 * 1000;

export interface CaRoot {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  certPem: string;
}

export async function loadRoot(sandbox: string): Promise<CaRoot> {
  const [namespace, name] = DEFAULT_ROOT_SECRET.split('/') as [string, string];
  const got = await sandboxKubectl(sandbox, ['get', 'secret', '-n', namespace, name, '-o', 'json']);
  if (got.exitCode !== 0) throw new BenchSetupError(`cannot read the sandbox CA's root Secret ${DEFAULT_ROOT_SECRET}: ${got.stderr.trim()}`);
  try {
    const data = (JSON.parse(got.stdout) as { data: Record<string, string> }).data;
    const certPem = Buffer.from(data['tls.crt']!, 'base64').toString();
    const keyPem = Buffer.from(data['tls.key']!, 'base64').toString();
    return { cert: forge.pki.certificateFromPem(certPem), key: forge.pki.privateKeyFromPem(keyPem), certPem };
  } catch (err) {
    throw new BenchSetupError(`the sandbox CA's root Secret ${DEFAULT_ROOT_SECRET} has no usable tls.crt and tls.key: ${(err as Error).message}`, { cause: err });
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

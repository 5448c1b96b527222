// The cluster's own PKI, as kubeadm lays it out in miniature: one CA that
// signs the API server's serving certificate and every client certificate
// (admin, controller manager, scheduler, each node's kubelet, the API
// server's own client toward kubelets) and each kubelet's serving
// certificate, plus the ServiceAccount token signing key. RSA 2048 because node-forge does RSA.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { generateKeyPair } from '../../lib/identity/csr.ts';
import { wholeSecond } from '../../lib/core/clock.ts';
import { randomSerial } from '../../lib/identity/x509.ts';

const YEARS = 10;

export interface PkiFiles {
  dir: string;
  caCert: string;
  caKey: string;
  apiServerCert: string;
  apiServerKey: string;
  /** The API server's client toward kubelets (`kubectl logs`, exec), in system:masters as kubeadm issued it. */
  kubeletClientCert: string;
  kubeletClientKey: string;
  /** ServiceAccount token keys: the API server signs with the private one and verifies with the public one. */
  serviceAccountKey: string;
  serviceAccountPub: string;
}

export const pkiFiles = (dir: string): PkiFiles => ({
  dir,
  caCert: join(dir, 'ca.crt'),
  caKey: join(dir, 'ca.key'),
  apiServerCert: join(dir, 'apiserver.crt'),
  apiServerKey: join(dir, 'apiserver.key'),
  kubeletClientCert: join(dir, 'apiserver-kubelet-client.crt'),
  kubeletClientKey: join(dir, 'apiserver-kubelet-client.key'),
  serviceAccountKey: join(dir, 'sa.key'),
  serviceAccountPub: join(dir, 'sa.pub'),
});

export interface IssuedPair {
  certPem: string;
  keyPem: string;
}

interface Ca {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
}

function newCertificate(publicKey: forge.pki.PublicKey, subject: forge.pki.CertificateField[], issuer: Ca | undefined): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = wholeSecond(Date.now());
  cert.validity.notAfter = new Date(cert.validity.notBefore);
  cert.validity.notAfter.setUTCFullYear(cert.validity.notAfter.getUTCFullYear() + YEARS);
  cert.setSubject(subject);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : subject);
  return cert;
}

async function issue(ca: Ca, subject: forge.pki.CertificateField[], extensions: object[]): Promise<IssuedPair> {
  const keys = await generateKeyPair();
  const cert = newCertificate(keys.publicKey, subject, ca);
  cert.setExtensions([{ name: 'basicConstraints', cA: false }, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }, ...extensions]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

async function loadCa(files: PkiFiles): Promise<Ca> {
  const [certPem, keyPem] = await Promise.all([readFile(files.caCert, 'utf8'), readFile(files.caKey, 'utf8')]);
  return { cert: forge.pki.certificateFromPem(certPem), key: forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey };
}

const clientSubject = (user: string, groups: readonly string[]): forge.pki.CertificateField[] =>
  [{ name: 'commonName', value: user }, ...groups.map((value) => ({ name: 'organizationName', value }))];

const issueClientBy = (ca: Ca, user: string, groups: readonly string[]): Promise<IssuedPair> =>
  issue(ca, clientSubject(user, groups), [{ name: 'extKeyUsage', clientAuth: true }]);

/** A serving certificate for `names` (IPs and DNS names). */
const issueServingBy = (ca: Ca, commonName: string, names: readonly string[]): Promise<IssuedPair> => {
  const altNames = names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n }));
  return issue(ca, [{ name: 'commonName', value: commonName }], [{ name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames }]);
};

/** A client certificate for `user` in `groups`: Kubernetes reads the user from CN and the groups from O. */
export async function issueClient(files: PkiFiles, user: string, groups: readonly string[] = []): Promise<IssuedPair> {
  return issueClientBy(await loadCa(files), user, groups);
}

/** A kubelet's serving certificate (the API server verifies it for `kubectl logs`): CN system:node:<name>, for the node's name and addresses. */
export async function issueKubeletServing(files: PkiFiles, nodeName: string, addresses: readonly string[]): Promise<IssuedPair> {
  return issueServingBy(await loadCa(files), `system:node:${nodeName}`, [nodeName, ...addresses]);
}

/** Creates the CA, the API server's serving certificate (for `serverNames`: IPs and DNS names) and the ServiceAccount keys in `dir`. */
export async function createPki(dir: string, serverNames: readonly string[]): Promise<PkiFiles> {
  const files = pkiFiles(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caKeys = await generateKeyPair();
  const caName = [{ name: 'commonName', value: 'meshlet sandbox cluster CA' }];
  const caCert = newCertificate(caKeys.publicKey, caName, undefined);
  caCert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }, { name: 'subjectKeyIdentifier' }]);
  caCert.sign(caKeys.privateKey, forge.md.sha256.create());
  const ca: Ca = { cert: caCert, key: caKeys.privateKey };
  const server = await issueServingBy(ca, 'kube-apiserver', serverNames);
  const kubeletClient = await issueClientBy(ca, 'kube-apiserver-kubelet-client', ['system:masters']);
  const sa = await generateKeyPair();
  const key = { mode: 0o600 } as const;
  await Promise.all([
    writeFile(files.caCert, forge.pki.certificateToPem(caCert)),
    writeFile(files.caKey, forge.pki.privateKeyToPem(caKeys.privateKey), key),
    writeFile(files.apiServerCert, server.certPem),
    writeFile(files.apiServerKey, server.keyPem, key),
    writeFile(files.kubeletClientCert, kubeletClient.certPem),
    writeFile(files.kubeletClientKey, kubeletClient.keyPem, key),
    writeFile(files.serviceAccountKey, forge.pki.privateKeyToPem(sa.privateKey), key),
    writeFile(files.serviceAccountPub, forge.pki.publicKeyToPem(sa.publicKey)),
  ]);
  return files;
}

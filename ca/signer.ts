// Checking CSRs and signing X.509-SVID leaves under the mesh root.
import { isIP } from 'node:net';
import forge from 'node-forge';
import { KEY_BITS } from '../lib/identity/csr.ts';
import { InvalidSpiffeIdError } from '../lib/identity/errors.ts';
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from '../lib/identity/spiffe.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { SignRefusal } from './errors.ts';
import { wholeSecond } from '../lib/core/clock.ts';
import { randomSerial } from '../lib/identity/x509.ts';
import type { MeshRoot } from './root.ts';

export interface CheckedCsr {
  id: SpiffeId;
  publicKey: forge.pki.rsa.PublicKey;
}

const URI = 6;
const badRequest = (reason: string, message: string) => new SignRefusal(400, reason, message);

/**
 * Accepts a PKCS#10 request only if it is signed by its own RSA key (proof of
 * possession) and its SANs are exactly one SPIFFE workload URI in `trustDomain`.
 */
export function checkCsr(pem: string, trustDomain: string): CheckedCsr {
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(pem, true);
  } catch (err) {
    const detail = (err as Error).message.includes('OID is not RSA') ? 'its key is not RSA (the CA signs RSA keys only)' : (err as Error).message;
    throw badRequest('bad-csr', `the csr is not a usable PEM PKCS#10 request: ${detail}`);
  }
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!publicKey?.n || publicKey.n.bitLength() < KEY_BITS) throw badRequest('weak-key', `the CSR's RSA key is shorter than ${KEY_BITS} bits`);
  let verified = false;
  try {
    verified = csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw badRequest('bad-signature', 'the CSR signature does not verify with its own public key; was it altered, or signed with another key?');
  const sans = requestedSans(csr);
  const wanted = `exactly one URI SAN spiffe://${trustDomain}/ns/<namespace>/sa/<service-account>`;
  if (sans.length !== 1 || sans[0]!.type !== URI) {
    throw badRequest('bad-san', `the CSR asks for ${sans.length === 0 ? 'no subjectAltName' : sans.map(describeSan).join(', ')}; it must carry ${wanted} and nothing else`);
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(sans[0]!.value);
  } catch (err) {
    if (err instanceof InvalidSpiffeIdError) throw badRequest('bad-san', `the CSR's URI SAN is not a workload SPIFFE ID: ${err.message}`);
    throw err;
  }
  if (id.trustDomain !== trustDomain) {
    throw badRequest('bad-san', `the CSR asks for ${formatSpiffeId(id)}, outside this CA's trust domain ${trustDomain}`);
  }
  return { id, publicKey };
}

interface San {
  type: number;
  value: string;
}

function requestedSans(csr: forge.pki.CertificateSigningRequest): San[] {
  const attr: unknown = csr.getAttribute({ name: 'extensionRequest' });
  const extensions = isRecord(attr) && Array.isArray(attr.extensions) ? (attr.extensions as unknown[]) : [];
  const sans: San[] = [];
  for (const ext of extensions) {
    if (!isRecord(ext) || ext.name !== 'subjectAltName' || !Array.isArray(ext.altNames)) continue;
    for (const alt of ext.altNames as unknown[]) {
      if (isRecord(alt) && typeof alt.type === 'number') sans.push({ type: alt.type, value: typeof alt.value === 'string' ? alt.value : '' });
    }
  }
  return sans;
}

function describeSan(san: San): string {
  const kinds: Record<number, string> = { 1: 'email', 2: 'DNS', 6: 'URI', 7: 'IP' };
  return `${kinds[san.type] ?? `type-${san.type}`} SAN`;
}

export interface LeafRequest {
  publicKey: forge.pki.rsa.PublicKey;
  uris?: readonly string[];
  /** DNS names or IP addresses, for the CA's own serving certificate. */
  hosts?: readonly string[];
  ttlSeconds: number;
}

export interface Leaf {
  pem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * An X.509-SVID leaf: not a CA, digitalSignature + keyEncipherment,
 * serverAuth + clientAuth, empty subject with the SAN marked critical (as
 * RFC 5280 §4.1.2.6 requires), never outliving the root.
 */
export function signLeaf(root: MeshRoot, req: LeafRequest, now: Date = new Date()): Leaf {
  const cert = forge.pki.createCertificate();
  cert.publicKey = req.publicKey;
  cert.serialNumber = randomSerial();
  // X.509 times have whole seconds; start on one so the lifetime is exact.
  const notBefore = wholeSecond(now.getTime());
  const notAfter = new Date(Math.min(notBefore.getTime() + req.ttlSeconds * 1000, root.cert.validity.notAfter.getTime()));
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([]);
  cert.setIssuer(root.cert.subject.attributes);
  const altNames = [
    ...(req.uris ?? []).map((value) => ({ type: URI, value })),
    ...(req.hosts ?? []).map((host) => (isIP(host) ? { type: 7, ip: host } : { type: 2, value: host })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: root.keyId },
  ]);
  cert.sign(root.key, forge.md.sha256.create());
  return { pem: forge.pki.certificateToPem(cert), serial: cert.serialNumber, notBefore, notAfter };
}

// Checking CSRs and signing X.509-SVID leaves under the mesh root. A request
// is read in two steps so that the server can check the hosting rule between
// them: readCsr (structure and identity, from the bytes alone) and proveCsr
// (key policy, then the signature).
import { isIP } from 'node:net';
import forge from 'node-forge';
import { InvalidSpiffeIdError } from '../lib/identity/errors.ts';
import { parsePkcs10, verifyPkcs10, type CsrRejection, type Pkcs10, type RequestedName } from '../lib/identity/pkcs10.ts';
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from '../lib/identity/spiffe.ts';
import { SignRefusal } from './errors.ts';
import { wholeSecond } from '../lib/core/clock.ts';
import { randomSerial } from '../lib/identity/x509.ts';
import type { MeshRoot } from './root.ts';

export interface RequestedIdentity {
  id: SpiffeId;
  csr: Pkcs10;
}

const URI = 6;
const badRequest = (reason: string, message: string) => new SignRefusal(400, reason, message);
const refusal = (r: CsrRejection) => badRequest(r.reason, r.message);

/**
 * The identity a PKCS#10 request asks for: its SANs must be exactly one
 * SPIFFE workload URI in `trustDomain`. Reads the encoding only: no key is
 * built and no signature checked, so it costs the same for any input.
 */
export function readCsr(pem: string, trustDomain: string): RequestedIdentity {
  const csr = parsePkcs10(pem);
  if (!csr.ok) throw refusal(csr);
  const sans = csr.names;
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
  return { id, csr };
}

/**
 * Proof of possession, once the caller may hold the identity: an RSA key of
 * 2048 to 4096 bits with exponent 65537 (checked on the encoding, before the
 * key is used), whose signature over the request verifies. The key, for the leaf.
 */
export function proveCsr(csr: Pkcs10): forge.pki.rsa.PublicKey {
  const proved = verifyPkcs10(csr);
  if (!proved.ok) throw refusal(proved);
  return forge.pki.publicKeyFromPem(proved.publicKey.export({ type: 'spki', format: 'pem' }).toString());
}

function describeSan(san: RequestedName): string {
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

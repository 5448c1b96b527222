// Reading a PKCS#10 certificate request (RFC 2986) the way the CA must: the
// structure and the names it asks for first, from the bytes alone, so who
// asks and whether they may hold that name is settled before any work on the
// key; then the key policy, checked on the encoded modulus and exponent (a
// 65,536-bit modulus is refused by its length, never used); the signature
// (proof of possession) last, with Node's native RSA. Nothing here throws:
// every function answers with the request or a rejection naming its reason.
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { bitLength, childrenOf, contextTag, octetsOfBitString, oidOf, readChildren, readWhole, TAG, unsignedOf, type Tlv } from './der.ts';

/** Why a request is refused; the CA answers 400 with it and counts it in meshlet_ca_refusals_total. */
export type CsrRejectionReason =
  /** Not a PEM PKCS#10 request that parses. */
  | 'bad-csr'
  /** The key is not RSA (EC, Ed25519, ...). */
  | 'unsupported-key'
  /** RSA with a modulus under MIN_RSA_BITS. */
  | 'weak-key'
  /** RSA with a modulus over MAX_RSA_BITS. */
  | 'key-too-large'
  /** RSA with a public exponent other than 65537. */
  | 'bad-exponent'
  /** The signature does not verify with the request's own key, or uses an algorithm the CA does not take. */
  | 'bad-signature';

export interface CsrRejection {
  ok: false;
  reason: CsrRejectionReason;
  message: string;
}

/** A subjectAltName entry: its GeneralName tag number (1 email, 2 DNS, 6 URI, 7 IP) and, for the text forms, its value. */
export interface RequestedName {
  type: number;
  value: string;
}

export type RequestKey =
  | { kind: 'rsa'; bits: number; exponent: Buffer }
  | { kind: 'other'; algorithm: string };

export interface Pkcs10 {
  ok: true;
  /** certificationRequestInfo as received: what the signature covers. */
  info: Buffer;
  /** subjectPublicKeyInfo, DER. */
  spki: Buffer;
  key: RequestKey;
  signatureAlgorithm: string;
  signature: Buffer;
  /** Every subjectAltName entry of every extensionRequest, in order. */
  names: RequestedName[];
}

/** RSA moduli the CA accepts; the ztunnel makes 2048-bit keys (lib/identity/csr.ts). */
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 4096;
const F4 = Buffer.from([0x01, 0x00, 0x01]);

/** Larger than any request with a 4096-bit key; the CA's body limit is lower still. */
export const MAX_CSR_PEM_CHARS = 64 * 1024;

const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
  ed25519: '1.3.101.112',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
} as const;

/** The signature algorithms the CA verifies: PKCS#1 v1.5 RSA with SHA-2. */
const SIGNATURE_HASH: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

const KEY_NAMES: Readonly<Record<string, string>> = { [OID.ecPublicKey]: 'EC', [OID.ed25519]: 'Ed25519' };

const reject = (reason: CsrRejectionReason, message: string): CsrRejection => ({ ok: false, reason, message });
const malformed = (what: string): CsrRejection => reject('bad-csr', `the csr is not a usable PEM PKCS#10 request: ${what}`);

const PEM = /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/;

/** The request's DER from its PEM text (exactly one block, nothing but whitespace around it). */
function derOf(pem: string): Buffer | CsrRejection {
  if (pem.length > MAX_CSR_PEM_CHARS) return malformed(`it is longer than ${MAX_CSR_PEM_CHARS} characters`);
  const match = PEM.exec(pem.trim());
  if (!match) return malformed('no -----BEGIN CERTIFICATE REQUEST----- block');
  return Buffer.from(match[2]!.replace(/\s+/g, ''), 'base64');
}

/** The key facts from subjectPublicKeyInfo, read from the encoding; nothing is built from them. */
function keyOf(spki: Tlv): RequestKey | CsrRejection {
  const [algorithm, publicKey, ...extra] = childrenOf(spki, TAG.SEQUENCE) ?? [];
  const algorithmOid = oidOf(childrenOf(algorithm, TAG.SEQUENCE)?.[0]);
  const keyBits = octetsOfBitString(publicKey);
  if (!algorithmOid || !keyBits || extra.length > 0) return malformed('its subjectPublicKeyInfo does not parse');
  if (algorithmOid !== OID.rsaEncryption) return { kind: 'other', algorithm: algorithmOid };
  const rsa = readWhole(keyBits, TAG.SEQUENCE);
  const [modulus, exponent, ...more] = (rsa && readChildren(rsa.value)) ?? [];
  const n = unsignedOf(modulus);
  const e = unsignedOf(exponent);
  if (!n || !e || more.length > 0) return malformed('its RSA public key does not parse');
  return { kind: 'rsa', bits: bitLength(n), exponent: e };
}

/** The subjectAltName entries of one extensionRequest value (SEQUENCE OF Extension). */
function namesOf(extensions: Tlv): RequestedName[] | CsrRejection {
  const names: RequestedName[] = [];
  for (const extension of childrenOf(extensions, TAG.SEQUENCE) ?? []) {
    const parts = childrenOf(extension, TAG.SEQUENCE);
    const id = oidOf(parts?.[0]);
    const value = parts?.[parts.length - 1];
    if (!parts || !id || parts.length < 2 || parts.length > 3 || value?.tag !== TAG.OCTET_STRING) return malformed('an extension does not parse');
    if (id !== OID.subjectAltName) continue;
    const general = readWhole(value.value, TAG.SEQUENCE);
    const entries = general && readChildren(general.value);
    if (!entries) return malformed('its subjectAltName does not parse');
    for (const entry of entries) {
      if ((entry.tag & 0xc0) !== 0x80) return malformed('a subjectAltName entry is not a GeneralName');
      const type = entry.tag & 0x1f;
      // rfc822Name, dNSName and URI are IA5String (7-bit); other kinds are named by type only.
      const text = (entry.tag & 0x20) === 0 && (type === 1 || type === 2 || type === 6);
      names.push({ type, value: text ? entry.value.toString('latin1') : '' });
    }
  }
  return names;
}

/** The subjectAltName entries of every extensionRequest attribute ([0] IMPLICIT SET OF Attribute). */
function requestedNames(attributes: Tlv | undefined): RequestedName[] | CsrRejection {
  if (!attributes) return [];
  const list = childrenOf(attributes, contextTag(0, true));
  if (!list) return malformed('its attributes do not parse');
  const names: RequestedName[] = [];
  for (const attribute of list) {
    const [type, values, ...extra] = childrenOf(attribute, TAG.SEQUENCE) ?? [];
    const oid = oidOf(type);
    const members = childrenOf(values, TAG.SET);
    if (!oid || !members || extra.length > 0) return malformed('an attribute does not parse');
    if (oid !== OID.extensionRequest) continue;
    for (const extensions of members) {
      const found = namesOf(extensions);
      if (!Array.isArray(found)) return found;
      names.push(...found);
    }
  }
  return names;
}

/** The request's structure and the names it asks for; the key is described, not used, and the signature not checked. */
export function parsePkcs10(pem: string): Pkcs10 | CsrRejection {
  if (typeof pem !== 'string') return malformed('it is not text');
  const der = derOf(pem);
  if (!Buffer.isBuffer(der)) return der;
  const request = readWhole(der, TAG.SEQUENCE);
  const [infoTlv, signatureAlgorithm, signatureBits, ...rest] = (request && readChildren(request.value)) ?? [];
  const [version, subject, spki, attributes, ...extra] = childrenOf(infoTlv, TAG.SEQUENCE) ?? [];
  if (!infoTlv || !spki || rest.length > 0 || extra.length > 0) return malformed('it is not a PKCS#10 CertificationRequest');
  if (unsignedOf(version)?.length !== 0) return malformed('its version is not v1 (0)');
  if (subject?.tag !== TAG.SEQUENCE) return malformed('its subject is not a Name');
  const algorithm = oidOf(childrenOf(signatureAlgorithm, TAG.SEQUENCE)?.[0]);
  const signature = octetsOfBitString(signatureBits);
  if (!algorithm || !signature) return malformed('its signature does not parse');
  const key = keyOf(spki);
  if ('ok' in key) return key;
  const names = requestedNames(attributes);
  if (!Array.isArray(names)) return names;
  return { ok: true, info: infoTlv.der, spki: spki.der, key, signatureAlgorithm: algorithm, signature, names };
}

/** The CA's key policy, on the encoded key: RSA, MIN_RSA_BITS to MAX_RSA_BITS, exponent 65537. */
export function checkKeyPolicy(csr: Pkcs10): CsrRejection | undefined {
  const { key } = csr;
  if (key.kind !== 'rsa') {
    return reject('unsupported-key', `its key is ${KEY_NAMES[key.algorithm] ?? `of algorithm ${key.algorithm}`}; the CA signs RSA keys of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits only`);
  }
  if (key.bits < MIN_RSA_BITS) return reject('weak-key', `the CSR's RSA key is shorter than ${MIN_RSA_BITS} bits (${key.bits})`);
  if (key.bits > MAX_RSA_BITS) return reject('key-too-large', `the CSR's RSA key has ${key.bits} bits; the CA takes at most ${MAX_RSA_BITS}`);
  if (!key.exponent.equals(F4)) return reject('bad-exponent', `the CSR's RSA public exponent is 0x${key.exponent.toString('hex') || '0'}; the CA takes 65537 only`);
  return undefined;
}

/**
 * Proof of possession: the key policy, then the signature over the request
 * with the request's own key. The key, as a KeyObject, for the certificate.
 */
export function verifyPkcs10(csr: Pkcs10): { ok: true; publicKey: KeyObject } | CsrRejection {
  const refused = checkKeyPolicy(csr);
  if (refused) return refused;
  const hash = SIGNATURE_HASH[csr.signatureAlgorithm];
  if (!hash) return reject('bad-signature', `the CSR is signed with algorithm ${csr.signatureAlgorithm}; the CA verifies sha256WithRSAEncryption (or sha384, sha512) only`);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
  } catch (err) {
    return malformed(`its public key does not load: ${(err as Error).message}`);
  }
  let verified = false;
  try {
    verified = verify(hash, csr.info, publicKey, csr.signature);
  } catch {
    verified = false;
  }
  if (!verified) return reject('bad-signature', 'the CSR signature does not verify with its own public key; was it altered, or signed with another key?');
  return { ok: true, publicKey };
}

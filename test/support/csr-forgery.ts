// PKCS#10 requests no honest ztunnel sends, for the CA's refusal tests: any
// public key (a modulus of any size, any exponent, an EC key) and any
// signature bytes, assembled with node-forge's ASN.1 encoder.
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import forge from 'node-forge';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;

const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;
const binary = (b: Buffer): string => b.toString('binary');
const seq = (...items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
const set = (...items: Asn1[]): Asn1 => asn1.create(U, T.SET, true, items);
const oid = (dotted: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(dotted).getBytes());
const int = (magnitude: Buffer): Asn1 => asn1.create(U, T.INTEGER, false, binary(magnitude[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), magnitude]) : magnitude));
const bits = (octets: Buffer): Asn1 => asn1.create(U, T.BITSTRING, false, `\0${binary(octets)}`);
const fromDer = (der: Buffer): Asn1 => asn1.fromDer(forge.util.createBuffer(binary(der)));
const toDer = (node: Asn1): Buffer => Buffer.from(asn1.toDer(node).getBytes(), 'binary');

export const SHA256_WITH_RSA = '1.2.840.113549.1.1.11';
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

/** subjectPublicKeyInfo of an RSA key with this modulus and exponent (no private key exists for it). */
export function rsaSpki(modulus: Buffer, exponent: number): Buffer {
  const e = Buffer.alloc(4);
  e.writeUInt32BE(exponent);
  const rsaKey = toDer(seq(int(modulus), int(e.subarray(e.findIndex((b) => b !== 0)))));
  return toDer(seq(seq(oid('1.2.840.113549.1.1.1'), asn1.create(U, T.NULL, false, '')), bits(rsaKey)));
}

/** An odd modulus of exactly `bits` bits, random otherwise: a key of that size, for its length alone. */
export function modulusOf(bitCount: number): Buffer {
  const n = randomBytes(bitCount / 8);
  n[0]! |= 0x80;
  n[n.length - 1]! |= 1;
  return n;
}

export interface ForgedCsr {
  spki: Buffer;
  /** The one URI SAN asked for. */
  uri: string;
  signatureAlgorithm?: string;
  /** Signs the certificationRequestInfo; default: random bytes, a signature that verifies with nothing. */
  sign?: (info: Buffer) => Buffer;
}

/** The request as PEM. */
export function forgeCsr(csr: ForgedCsr): string {
  const san = toDer(seq(asn1.create(asn1.Class.CONTEXT_SPECIFIC, 6, false, csr.uri)));
  const extensionRequest = seq(oid('1.2.840.113549.1.9.14'), set(seq(seq(oid('2.5.29.17'), asn1.create(U, T.OCTETSTRING, false, binary(san))))));
  const info = toDer(seq(int(Buffer.from([0])), seq(), fromDer(csr.spki), asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [extensionRequest])));
  const signature = csr.sign ? csr.sign(info) : randomBytes(256);
  const der = toDer(seq(fromDer(info), seq(oid(csr.signatureAlgorithm ?? SHA256_WITH_RSA), asn1.create(U, T.NULL, false, '')), bits(signature)));
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** A real, correctly signed request for an EC P-256 key. */
export function ecCsr(uri: string): string {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return forgeCsr({ spki, uri, signatureAlgorithm: ECDSA_WITH_SHA256, sign: (info) => sign('sha256', info, privateKey) });
}

// Reading and checking X.509-SVIDs with Node's own X.509 parser: the SPIFFE
// identity a certificate carries, and whether what the CA returned is a leaf
// for our key and identity that chains to the trust bundle.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { InvalidCertificateError, InvalidSpiffeIdError, PeerIdentityError } from './errors.ts';
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from './spiffe.ts';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/** The certificates in a PEM text, each as its own PEM block. */
export function splitPem(text: string): string[] {
  return [...text.matchAll(PEM_CERT)].map((m) => `${m[0]}\n`);
}

/**
 * The URI entries of Node's `subjectAltName` text ("DNS:a, URI:spiffe://…").
 * Node quotes a value as a JSON string when it holds a comma or quote.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  const uris: string[] = [];
  let rest = subjectAltName ?? '';
  while (rest.length > 0) {
    const colon = rest.indexOf(':');
    if (colon === -1) break;
    const type = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    let value: string;
    if (rest.startsWith('"')) {
      let end = 1;
      while (end < rest.length && rest[end] !== '"') end += rest[end] === '\\' ? 2 : 1;
      value = JSON.parse(rest.slice(0, end + 1)) as string;
      rest = rest.slice(end + 1);
    } else {
      const comma = rest.indexOf(', ');
      value = comma === -1 ? rest : rest.slice(0, comma);
      rest = comma === -1 ? '' : rest.slice(comma);
    }
    if (type === 'URI') uris.push(value);
    rest = rest.replace(/^, /, '');
  }
  return uris;
}

/** Why `cert` is not an X.509-SVID leaf, or its identity (SPIFFE X.509-SVID §5.2). */
function leafIdentity(cert: X509Certificate): SpiffeId | string {
  if (cert.ca) return 'it is a CA certificate, not a leaf';
  const uris = uriSans(cert.subjectAltName);
  if (uris.length !== 1) return `it carries ${uris.length} URI SANs, an X.509-SVID carries exactly one`;
  try {
    return parseSpiffeId(uris[0]!);
  } catch (err) {
    if (err instanceof InvalidSpiffeIdError) return err.message;
    throw err;
  }
}

/** The SPIFFE identity of an X.509-SVID leaf; throws PeerIdentityError if it is not one. */
export function svidIdentity(cert: X509Certificate): SpiffeId {
  const id = leafIdentity(cert);
  if (typeof id === 'string') throw new PeerIdentityError(`peer certificate (serial ${cert.serialNumber}) is not an X.509-SVID: ${id}`);
  return id;
}

/** The SPIFFE identity of a TLS peer (`socket.getPeerCertificate()`). */
export function peerIdentity(peer: PeerCertificate): SpiffeId {
  if (!peer.raw) throw new PeerIdentityError('the peer presented no certificate');
  return svidIdentity(new X509Certificate(peer.raw));
}

export interface IssuedSvid {
  leaf: X509Certificate;
  /** Leaf first, then any intermediates, PEM. */
  chain: string[];
  bundle: string[];
}

/**
 * Checks a CA answer before it is used: a valid leaf for exactly `id`, for our
 * key, each certificate signed by the next and the last by a bundle root.
 */
export function checkIssuedSvid(id: SpiffeId, keyPem: string, chainPem: readonly string[], bundlePem: string, now: Date = new Date()): IssuedSvid {
  const uri = formatSpiffeId(id);
  const fail = (reason: string) => new InvalidCertificateError(uri, reason);
  const chain = chainPem.flatMap(splitPem);
  const bundle = splitPem(bundlePem);
  if (chain.length === 0) throw fail('the CA returned no certificate');
  if (bundle.length === 0) throw fail('the CA returned an empty trust bundle');
  let certs: X509Certificate[];
  let roots: X509Certificate[];
  try {
    certs = chain.map((pem) => new X509Certificate(pem));
    roots = bundle.map((pem) => new X509Certificate(pem));
  } catch (err) {
    throw fail(`a certificate does not parse: ${(err as Error).message}`);
  }
  const leaf = certs[0]!;
  const got = leafIdentity(leaf);
  if (typeof got === 'string') throw fail(got);
  if (formatSpiffeId(got) !== uri) throw fail(`it names ${formatSpiffeId(got)}`);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw fail('it is not for the key in our request');
  if (now < leaf.validFromDate || now >= leaf.validToDate) throw fail(`it is not valid now (${leaf.validFrom} – ${leaf.validTo})`);
  for (let i = 0; i < certs.length; i++) {
    const cert = certs[i]!;
    const issuers = i + 1 < certs.length ? [certs[i + 1]!] : roots;
    if (!issuers.some((issuer) => cert.checkIssued(issuer) && cert.verify(issuer.publicKey))) {
      throw fail(`certificate ${i} of the chain is not signed by ${i + 1 < certs.length ? 'the next one' : 'a root in the trust bundle'}`);
    }
  }
  return { leaf, chain, bundle };
}

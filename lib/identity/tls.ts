// TLS settings for HBONE (mutual TLS 1.3 between ztunnels), so the ztunnel's
// server and client sides check identities the same way everywhere.
// ALPN is left to the caller: http2.createSecureServer/http2.connect set "h2".
import type { ConnectionOptions, PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import { PeerIdentityError } from './errors.ts';
import { sniFor } from './sni.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';
import type { CertificateStore, HeldCertificate } from './store.ts';
import { peerIdentity } from './svid.ts';

/**
 * Inbound listener: the certificate is chosen per SNI among local identities;
 * client certificates are required and verified against the context's trust
 * bundle (Node applies the SNI-selected context's CA to that check).
 */
export function hboneServerTlsOptions(store: CertificateStore): TlsOptions {
  return { SNICallback: store.sniCallback, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' };
}

/**
 * Outbound: present `source`'s certificate, name `destination` in SNI, and
 * accept only a server whose X.509-SVID is exactly `destination` (chain
 * verification against the bundle stays on). Do not pass `session`: Node
 * skips checkServerIdentity on resumed sessions.
 */
export function hboneClientTlsOptions(source: HeldCertificate, destination: SpiffeId): ConnectionOptions {
  return {
    secureContext: source.secureContext,
    servername: sniFor(destination),
    minVersion: 'TLSv1.3',
    rejectUnauthorized: true,
    checkServerIdentity: expectPeerIdentity(destination),
  };
}

/** A checkServerIdentity that compares the URI SAN with the expected SPIFFE ID instead of a hostname. */
export function expectPeerIdentity(expected: SpiffeId): (host: string, cert: PeerCertificate) => Error | undefined {
  const want = formatSpiffeId(expected);
  return (_host, cert) => {
    try {
      const got = formatSpiffeId(peerIdentity(cert));
      return got === want ? undefined : new PeerIdentityError(`the server presented ${got}, expected ${want}`);
    } catch (err) {
      return err as Error;
    }
  };
}

/**
 * A session's client certificate never changes: its identity is read once
 * per TLS connection, not per stream (getPeerCertificate and the X.509 parse
 * were a fifth of the destination ztunnel's CPU per new connection).
 */
const clientIds = new WeakMap<TLSSocket, SpiffeId>();

/** Server side, after the handshake: the verified client's identity, in our trust domain. */
export function clientIdentity(socket: TLSSocket, trustDomain: string): SpiffeId {
  if (!socket.authorized) throw new PeerIdentityError(`the client certificate did not verify: ${String(socket.authorizationError)}`);
  let id = clientIds.get(socket);
  if (!id) clientIds.set(socket, (id = peerIdentity(socket.getPeerCertificate())));
  if (id.trustDomain !== trustDomain) throw new PeerIdentityError(`the client ${formatSpiffeId(id)} is not in trust domain ${trustDomain}`);
  return id;
}

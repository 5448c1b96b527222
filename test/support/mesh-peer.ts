// A mesh peer outside any ztunnel, for the attack suite's fixtures: it gets a
// workload certificate from the sandbox CA with a node's ztunnel token (as
// that node's ztunnel would, so the CA's hosting rule applies) and opens
// mutual TLS to a ztunnel's 15008 naming the destination identity in SNI.
// What it then sends over the session is the fixture's own.
import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { newCertificateRequest } from '../../lib/identity/csr.ts';
import { CaRefusedError } from '../../lib/identity/errors.ts';
import { checkIssuedSvid } from '../../lib/identity/svid.ts';
import { sniFor } from '../../lib/identity/sni.ts';
import type { SpiffeId } from '../../lib/identity/spiffe.ts';
import { expectPeerIdentity } from '../../lib/identity/tls.ts';

export interface CaAccess {
  url: string;
  bundleFile: string;
  /** A node's ztunnel token: the CA signs only identities with a pod on that node. */
  tokenFile: string;
}

/** How often a rate-limited request is tried, a second apart: an earlier case may have spent the node's signing budget. */
const RATE_LIMIT_TRIES = 10;

/** A key and a certificate for `id` from the CA, as a TLS context that also trusts the mesh root. */
export async function meshCertificate(ca: CaAccess, id: SpiffeId): Promise<SecureContext> {
  const client = new CaClient(ca);
  try {
    for (let attempt = 1; ; attempt++) {
      const { keyPem, csrPem } = await newCertificateRequest(id);
      try {
        const issued = await client.issue({ csrPem });
        const { chain, bundle } = checkIssuedSvid(id, keyPem, issued.certChain, issued.trustBundle);
        return createSecureContext({ key: keyPem, cert: chain.join(''), ca: bundle, minVersion: 'TLSv1.3' });
      } catch (err) {
        if (!(err instanceof CaRefusedError) || err.reason !== 'rate-limited' || attempt === RATE_LIMIT_TRIES) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  } finally {
    await client.close();
  }
}

/** Mutual TLS 1.3 to a ztunnel's tunnel port as `context`'s identity, asking for `destination`'s certificate; ALPN h2. */
export function meshTls(context: SecureContext, host: string, port: number, destination: SpiffeId): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host, port, secureContext: context, servername: sniFor(destination), ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3', rejectUnauthorized: true, checkServerIdentity: expectPeerIdentity(destination),
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

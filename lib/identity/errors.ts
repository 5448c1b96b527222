// Identity and certificate errors, each with a stable code (see ../errors.ts).
import { MeshletError } from '../core/errors.ts';

/** A string is not a SPIFFE ID meshlet can use (`spiffe://<td>/ns/<ns>/sa/<sa>`). */
export class InvalidSpiffeIdError extends MeshletError {
  readonly input: string;

  constructor(input: string, reason: string) {
    super('MESHLET_INVALID_SPIFFE_ID', `invalid SPIFFE ID ${JSON.stringify(input)}: ${reason}; expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
    this.input = input;
  }
}

/** The CA could not be reached or its certificate did not verify against the pinned bundle. */
export class CaUnreachableError extends MeshletError {
  constructor(url: string, detail: string, options?: { cause?: unknown }) {
    super('MESHLET_CA_UNREACHABLE', `cannot reach the CA at ${url}: ${detail}`, options);
  }
}

/** The CA answered and refused to sign; `reason` is the CA's stable refusal reason. */
export class CaRefusedError extends MeshletError {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string) {
    super('MESHLET_CA_REFUSED', `the CA refused (HTTP ${status}, ${reason}): ${message}`);
    this.status = status;
    this.reason = reason;
  }
}

/** What the CA returned is not a usable X.509-SVID for the identity and key we asked for. */
export class InvalidCertificateError extends MeshletError {
  constructor(identity: string, reason: string) {
    super('MESHLET_INVALID_CERTIFICATE', `certificate issued for ${identity} is unusable: ${reason}; check that the CA and this ztunnel share the trust domain and bundle`);
  }
}

/** The store holds no valid certificate for an identity (yet, or any more). */
export class CertificateUnavailableError extends MeshletError {
  readonly identity: string;

  constructor(identity: string, detail: string, options?: { cause?: unknown }) {
    super('MESHLET_CERT_UNAVAILABLE', `no valid certificate for ${identity}: ${detail}`, options);
    this.identity = identity;
  }
}

/** A tunnel session's TLS handshake did not finish in time. */
export class HandshakeTimeoutError extends MeshletError {
  constructor(peer: string, timeoutMs: number) {
    super('MESHLET_HANDSHAKE_TIMEOUT', `the TLS handshake with ${peer} did not finish within ${timeoutMs} ms; is the peer's ztunnel up and listening on its tunnel port?`);
  }
}

/** A TLS peer's certificate does not carry the SPIFFE identity required of it. */
export class PeerIdentityError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_PEER_IDENTITY', message);
  }
}

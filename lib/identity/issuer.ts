// What the certificate store needs from a CA; ca-client.ts is the real one.

export interface SignRequest {
  csrPem: string;
  /** Asked-for lifetime; the CA applies its default when absent and caps it. */
  ttlSeconds?: number;
}

export interface IssuedCertificate {
  /** Leaf first, then any intermediates, each PEM. */
  certChain: string[];
  /** The mesh roots, PEM (one or more certificates). */
  trustBundle: string;
}

export interface CertificateIssuer {
  /** Rejects with CaUnreachableError or CaRefusedError. */
  issue(request: SignRequest): Promise<IssuedCertificate>;
}

// SNI names for identities. The HBONE listener is node-level, so the client
// names the destination workload's identity in SNI; SNI must be a DNS name and
// a SPIFFE ID is not one, so send a hash of it under a fixed suffix. The
// server maps the name back among the identities it holds certificates for.
import { createHash } from 'node:crypto';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';

export const SNI_SUFFIX = '.hbone.meshlet';

/** `<32 hex chars>.hbone.meshlet`: 128 bits of SHA-256(SPIFFE ID), one DNS label. */
export function sniFor(id: SpiffeId): string {
  return `${createHash('sha256').update(formatSpiffeId(id)).digest('hex').slice(0, 32)}${SNI_SUFFIX}`;
}

/** Reverse lookup of SNI names among a set of local identities. */
export class SniIndex {
  #byName = new Map<string, SpiffeId>();

  add(id: SpiffeId): string {
    const name = sniFor(id);
    this.#byName.set(name, id);
    return name;
  }

  delete(id: SpiffeId): void {
    this.#byName.delete(sniFor(id));
  }

  /** The local identity a client asked for, or undefined for a name not ours. */
  lookup(servername: string): SpiffeId | undefined {
    // DNS names compare case-insensitively.
    return this.#byName.get(servername.toLowerCase());
  }
}

// CA errors with stable codes (see ../errors.ts).
import { MeshletError } from '../lib/core/errors.ts';

/**
 * The CA will not sign (or serve) this request. `status` is the HTTP status
 * it answers with; `reason` is the stable word clients and metrics use.
 */
export class SignRefusal extends MeshletError {
  readonly status: number;
  readonly reason: string;
  /** Response headers the refusal needs (retry-after for 429). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, reason: string, message: string, headers: Readonly<Record<string, string>> = {}) {
    super('MESHLET_CA_REFUSAL', message);
    this.status = status;
    this.reason = reason;
    this.headers = headers;
  }
}

/** The mesh root cannot be read, created or used (its Secret holds no usable root, the CA may not read it, the trust bundle cannot be written). */
export class CaStateError extends MeshletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHLET_CA_STATE', message, options);
  }
}

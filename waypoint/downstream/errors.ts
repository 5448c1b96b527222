// The downstream side's error classes (codes after lib/core/errors.ts).
import { MeshletError } from '../../lib/core/errors.ts';

/** A handler used the response sink out of order (a second head, a body before the head): a bug in the handler, named so. */
export class ResponseStateError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_WAYPOINT_RESPONSE_STATE', `${message}; the request handler wrote the response out of order`);
  }
}

// Sandbox errors callers tell apart by class; all keep SandboxError's code.
import { SandboxError } from '../lib/core/errors.ts';

/** `up` found a live sandbox of that name. */
export class SandboxRunningError extends SandboxError {}

/** No sandbox of that name is up (no sandbox.json). */
export class SandboxNotFoundError extends SandboxError {}

/** `exec` named a pod the cluster state does not hold. */
export class PodNotFoundError extends SandboxError {}

/** `sandboxApply` in strict mode: some objects were refused (the others were applied). */
export class ApplyRefusedError extends SandboxError {
  readonly results: readonly { ref: string; action: string; reason?: string }[];

  constructor(results: readonly { ref: string; action: string; reason?: string }[]) {
    const refused = results.filter((r) => r.action === 'refused');
    super(`the API server refused ${refused.length} object(s); the rest was applied:\n${refused.map((r) => `  ${r.ref}: ${r.reason}`).join('\n')}`);
    this.results = results;
  }
}

/** A port on a pod's loopback could not be reached from inside its network namespace, or answered wrongly. */
export class LoopbackUnreachableError extends SandboxError {}

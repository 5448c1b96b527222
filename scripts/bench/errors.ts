// Errors of the bench harness, with stable codes like the rest of meshlet
// (agent/errors.ts), so the e2e test and operators can tell them apart.
import { MeshletError } from '../../lib/core/errors.ts';

/** A load tool (wrk, hey, curl) failed, or its output could not be read. */
export class WorkloadError extends MeshletError {
  readonly tool: string;

  constructor(tool: string, message: string, options?: { cause?: unknown }) {
    super('MESHLET_BENCH_WORKLOAD', `${tool}: ${message}`, options);
    this.tool = tool;
  }
}

/** A measured path (haproxy, nginx, the mesh) could not be set up or did not become ready. */
export class BenchSetupError extends MeshletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHLET_BENCH_SETUP', message, options);
  }
}

/** The run was interrupted by a signal; the sandbox is torn down before exiting. */
export class BenchInterruptedError extends MeshletError {
  constructor(signal: string) {
    super('MESHLET_BENCH_INTERRUPTED', `interrupted by ${signal}`);
  }
}

// Error classes with stable codes (after undici's lib/core/errors.js): callers
// and tests match on `code`, operators read `message`, which says what to check.
import type { UpstreamFailure } from '../telemetry/reasons.ts';

export class MeshletError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A child process (bpftool, ip, clang…) exited non-zero or could not start. */
export class CommandError extends MeshletError {
  readonly command: string;
  readonly stderr: string;
  readonly exitCode: number | null;

  constructor(command: string, exitCode: number | null, stderr: string, options?: { cause?: unknown }) {
    const detail = stderr.trim().split('\n').slice(-5).join('\n');
    super('MESHLET_COMMAND_FAILED', `command failed (exit ${exitCode}): ${command}${detail ? `\n${detail}` : ''}`, options);
    this.command = command;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** Loading, pinning, attaching or updating BPF objects failed. */
export class BpfError extends MeshletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHLET_BPF', message, options);
  }
}

/** A cluster object cannot be converted into mesh state; it is rejected alone. */
export class InvalidObjectError extends MeshletError {
  readonly object: string;
  readonly reason: string;

  constructor(object: string, reason: string) {
    super('MESHLET_INVALID_OBJECT', `${object}: ${reason}`);
    this.object = object;
    this.reason = reason;
  }
}

/** Bad command-line input or configuration. */
export class ConfigError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_CONFIG', message);
  }
}

/** The sandbox could not be built, found or torn down. */
export class SandboxError extends MeshletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHLET_SANDBOX', message, options);
  }
}

/** The agent↔ztunnel control channel broke its protocol. */
export class ControlProtocolError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_CONTROL_PROTOCOL', message);
  }
}

/** The ztunnel could not carry a connection (resolution, upstream, tunnel). */
export class ForwardError extends MeshletError {
  /** Becomes the flow's close reason. */
  readonly reason: UpstreamFailure;

  constructor(reason: UpstreamFailure, message: string, options?: { cause?: unknown }) {
    super('MESHLET_FORWARD', message, options);
    this.reason = reason;
  }
}

/** The Kubernetes API server refused or failed a request; `statusCode` is its HTTP status (404: the kind is not served). */
export class KubeApiError extends MeshletError {
  readonly statusCode: number;

  constructor(statusCode: number, message: string, options?: { cause?: unknown }) {
    super('MESHLET_KUBE_API', message, options);
    this.statusCode = statusCode;
  }
}

/** A kind has more objects than meshlet holds of one kind; refused rather than held without bound. */
export class ObjectLimitError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_OBJECT_LIMIT', message);
  }
}

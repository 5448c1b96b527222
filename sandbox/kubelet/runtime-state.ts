// What the sandbox runtime must remember across its own restarts, in one
// small JSON file per node: each pod's addresses (the runtime is the node's
// IPAM) and where it lives, and each container instance's id, process and
// exit. Written whole to a temporary file and renamed, so a crash leaves the
// previous version, never half of one.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SandboxError } from '../../lib/core/errors.ts';

export interface StoredExit {
  exitCode: number;
  signal?: number;
  finishedAt: number;
  reason?: string;
}

export interface StoredContainer {
  name: string;
  id: string;
  /** The container's main process. */
  pid: number;
  startedAt: number;
  /** 0 for the first instance of this container in the pod, then 1, 2, …: names its log file. */
  instance: number;
  /** The instance's own cgroup, below the pod's. */
  cgroup: string;
  /** What exec in this container runs with. */
  env: Record<string, string>;
  cwd: string;
  /** Its capabilities (../capabilities.ts); absent in state written before they were recorded: the default set. */
  capabilities?: string[];
  /** It shares the host's PID namespace (the pod's hostPID): an exec joins its mount namespace alone. */
  hostPid?: boolean;
  exit?: StoredExit;
}

export interface StoredPod {
  uid: string;
  namespace: string;
  name: string;
  ips: string[];
  /** The pod's network namespace; the node's own for hostNetwork pods. */
  netns: string;
  /** The runtime created `netns` (false for hostNetwork pods) and removes it. */
  ownNetns: boolean;
  cgroup: string;
  /** Latest instance of each container, by name. */
  containers: Record<string, StoredContainer>;
}

interface StateFile {
  version: 1;
  pods: Record<string, StoredPod>;
}

export class RuntimeStateFile {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** The pods recorded, by UID; none when the file does not exist yet. */
  read(): Map<string, StoredPod> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    let parsed: StateFile;
    try {
      parsed = JSON.parse(text) as StateFile;
    } catch (err) {
      throw new SandboxError(`the pod runtime's state file ${this.path} is not valid JSON (${(err as Error).message}); stop the node's pods and remove it`, { cause: err });
    }
    if (parsed.version !== 1 || typeof parsed.pods !== 'object' || parsed.pods === null) {
      throw new SandboxError(`the pod runtime's state file ${this.path} has an unknown format (version ${String(parsed.version)}); stop the node's pods and remove it`);
    }
    return new Map(Object.entries(parsed.pods));
  }

  /** Synchronous, so that writes land in the order the runtime made its changes. */
  write(pods: ReadonlyMap<string, StoredPod>): void {
    const state: StateFile = { version: 1, pods: Object.fromEntries(pods) };
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(state, null, 1)}\n`);
    renameSync(tmp, this.path);
  }
}

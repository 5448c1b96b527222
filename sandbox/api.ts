// The programmatic sandbox, for e2e tests and scripts: the same operations as
// `meshlet sandbox …`, promise-first. Needs root.
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { applyManifest, deleteManifest, type ObjectResult } from './apply.ts';
import { ApplyRefusedError } from './errors.ts';
import { sandboxInstallArgs } from './install.ts';
import { execInPod, spawnInPod, type ExecOptions, type ExecResult, type PodRef, type SpawnInPodOptions } from './exec.ts';
import { podsByLabel, type SandboxPodPlace } from './labelled-pods.ts';
import type { SandboxInfo } from './info.ts';
import { DEFAULT_NAME, sandboxPaths } from './layout.ts';
import { down, isRunning, rebootNode, up } from './lifecycle.ts';
import { loopbackGet, loopbackStream, type LoopbackGetOptions, type LoopbackReply, type LoopbackStreamOptions, type LoopbackTarget } from './netns-http.ts';
import { sandboxStatus as status } from './status.ts';
import { sandboxKubectl as kubectl } from './cluster-client.ts';
import type { RunResult } from '../lib/core/exec.ts';
import type { ZtunnelLimits } from '../lib/config/ztunnel.ts';

export type { ExecOptions, ExecResult, LoopbackGetOptions, LoopbackReply, LoopbackStreamOptions, LoopbackTarget, ObjectResult, PodRef, SandboxInfo, SandboxPodPlace, SpawnInPodOptions };
export { ApplyRefusedError, DEFAULT_NAME, sandboxInstallArgs, sandboxPaths };
export type { SandboxNodeInfo } from './info.ts';
export { LoopbackUnreachableError, PodNotFoundError, SandboxNotFoundError, SandboxRunningError } from './errors.ts';

export interface SandboxUpOptions {
  name: string;
  /** Default 2. */
  nodes?: number;
  /** Manifest file applied after boot. */
  file?: string;
  /** Manifest text applied after boot (after `file`). */
  manifest?: string;
  /** Wait for every Node to be Ready and meshlet's pods and admin sockets (default true). */
  waitReady?: boolean;
  /** Default 120 s. */
  readyTimeoutMs?: number;
  /** false: a cluster without meshlet, to install it by hand; sandboxInstallArgs() are the `meshlet install` flags it needs. Default true. */
  install?: boolean;
  /** Throw ApplyRefusedError if the manifest has refused objects (default true). */
  strict?: boolean;
  log?: (line: string) => void;
  /** Workload certificate lifetime the ztunnels ask for, e.g. "8s" (rotation at half). */
  certTtl?: string;
  /** Timeouts and caps the ztunnels run with instead of the defaults (lib/config/ztunnel.ts), e.g. small caps a test can reach. */
  ztunnelLimits?: Partial<ZtunnelLimits>;
}

export interface ApplyOptions {
  /** Throw ApplyRefusedError when some object was refused; the others are applied anyway (default true). */
  strict?: boolean;
}

function checked(results: ObjectResult[], strict: boolean | undefined): ObjectResult[] {
  if ((strict ?? true) && results.some((r) => r.action === 'refused')) throw new ApplyRefusedError(results);
  return results;
}

/** Builds the sandbox (cleaning a crashed one of the same name first) and returns its live status. */
export async function sandboxUp(options: SandboxUpOptions): Promise<SandboxInfo> {
  const parts: string[] = [];
  if (options.file !== undefined) parts.push(await readFile(options.file, 'utf8'));
  if (options.manifest !== undefined) parts.push(options.manifest);
  const { applied } = await up({
    name: options.name,
    nodes: options.nodes ?? 2,
    ...(parts.length ? { manifest: parts.join('\n---\n'), manifestSource: options.file ?? 'manifest' } : {}),
    waitReady: options.waitReady ?? true,
    ...(options.readyTimeoutMs !== undefined ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
    log: options.log ?? (() => undefined),
    ...(options.certTtl ? { certTtl: options.certTtl } : {}),
    ...(options.ztunnelLimits ? { ztunnelLimits: options.ztunnelLimits } : {}),
    ...(options.install === false ? { install: false } : {}),
  });
  checked(applied, options.strict);
  return status(options.name);
}

/** Removes everything of sandbox `name`; idempotent. */
export async function sandboxDown(name: string): Promise<void> {
  await down(name);
}


export async function sandboxApply(name: string, yamlText: string, options: ApplyOptions = {}): Promise<ObjectResult[]> {
  return checked(await applyManifest(name, yamlText), options.strict);
}

export async function sandboxDelete(name: string, yamlText: string, options: ApplyOptions = {}): Promise<ObjectResult[]> {
  return checked(await deleteManifest(name, yamlText), options.strict);
}

/** The built kubectl against the sandbox's API server (admin); never throws on kubectl's exit code. */
export async function sandboxKubectl(name: string, args: readonly string[], input?: string): Promise<RunResult> {
  return kubectl(name, args, input);
}

/** sandbox.json with live pids, and the pods and Services of its API server. Throws SandboxNotFoundError if it is not up. */
export async function sandboxStatus(name: string): Promise<SandboxInfo> {
  return status(name);
}

/** Kills every process of the node and starts its supervisor again (lifecycle.ts's rebootNode). */
export async function sandboxRebootNode(name: string, node: string): Promise<void> {
  return rebootNode(name, node);
}

/** Some supervisor of the sandbox runs. */
export async function sandboxIsRunning(name: string): Promise<boolean> {
  return isRunning(name);
}


/** Runs `argv` in the pod's cgroup and network namespace to completion. */
export async function sandboxExec(name: string, pod: PodRef, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return execInPod(name, pod, argv, options);
}

/** Starts `argv` in the pod for long-running clients; stdio are pipes unless options.stdio says otherwise. Kill it when done. */
export async function sandboxSpawn(name: string, pod: PodRef, argv: readonly string[], options: SpawnInPodOptions = {}): Promise<ChildProcess> {
  return spawnInPod(name, pod, argv, options);
}

/** The pods `labelSelector` selects (the API server's syntax, e.g. `app=web,tier`), scheduled and not terminated, with their node and network namespace. */
export async function sandboxPods(name: string, labelSelector: string): Promise<SandboxPodPlace[]> {
  return podsByLabel(name, labelSelector);
}

/** GET `path` from a port on 127.0.0.1 inside a network namespace (a pod's `netns`), from the host; bounded in time and size. */
export async function sandboxLoopbackGet(target: LoopbackTarget, path: string, options: LoopbackGetOptions = {}): Promise<LoopbackReply> {
  return loopbackGet(target, path, options);
}

/** Follows a streaming GET (NDJSON) on a namespace's loopback port: `onLine` per line until the server ends it or `signal` aborts. */
export async function sandboxLoopbackStream(target: LoopbackTarget, path: string, onLine: (line: string) => void, signal: AbortSignal, options: LoopbackStreamOptions = {}): Promise<void> {
  return loopbackStream(target, path, onLine, signal, options);
}

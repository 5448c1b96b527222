// Where the measured processes run. Each sandbox node gets CPUs of its own
// (on two CPUs: node-1 CPU 1, node-2 CPU 0), and everything of a node that a
// path uses is pinned there with taskset, the same on every path: the
// client's load tools (node-1), the server pod's nginx (node-2) and the
// node's proxy (ztunnel or haproxy). Otherwise the scheduler's placement of a
// proxy beside the client or the server differs from path to path and run to
// run. The rest of the sandbox (API server, agents, the bench itself) is not
// pinned.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../lib/core/exec.ts';
import { cgroupProcs } from '../../sandbox/cgroup.ts';
import { BenchSetupError } from './errors.ts';

/** CPU list (taskset -c syntax) of each sandbox node, in the order of SandboxInfo.nodes. */
export interface CpuPlan {
  byNode: readonly string[];
}

/** A kernel CPU list ("0-3,6") as CPU numbers, ascending. */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.trim().split(',').filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new BenchSetupError(`unreadable CPU list "${text.trim()}"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi; c++) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

const cpuListOf = (status: string, where: string): number[] => {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (list === undefined) throw new BenchSetupError(`no Cpus_allowed_list in ${where}`);
  return parseCpuList(list);
};

/** The CPUs the bench may use: its own affinity (a container's cpuset narrows it). */
export async function allowedCpus(): Promise<number[]> {
  return cpuListOf(await readFile('/proc/self/status', 'utf8'), '/proc/self/status');
}

/**
 * Splits `cpus` between `nodes` nodes, the server side (the last node) taking
 * the lower CPUs: on two CPUs node-1 gets CPU 1 and node-2 CPU 0. With fewer
 * CPUs than nodes every node shares all of them.
 */
export function planCpus(cpus: readonly number[], nodes: number): CpuPlan {
  if (cpus.length === 0 || nodes < 1) throw new BenchSetupError(`cannot place ${nodes} nodes on ${cpus.length} CPUs`);
  if (cpus.length < nodes) return { byNode: Array.from({ length: nodes }, () => cpus.join(',')) };
  const share = Math.floor(cpus.length / nodes);
  // Node i (0-based) counted from the last: the last node starts at CPU 0; the first node takes what is left over.
  const byNode = Array.from({ length: nodes }, (_, i) => {
    const slot = nodes - 1 - i;
    const end = slot === nodes - 1 ? cpus.length : (slot + 1) * share;
    return cpus.slice(slot * share, end).join(',');
  });
  return { byNode };
}

/** `argv` started on `cpus`: taskset execs it, so the pid is the command's. */
export const pinnedArgv = (cpus: string, argv: readonly string[]): string[] => ['taskset', '-c', cpus, ...argv];

/** Each thread's affinity, undefined if the process is gone. */
async function threadAffinities(pid: number): Promise<number[][] | undefined> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const lists: number[][] = [];
  for (const tid of tids) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => undefined);
    // A thread that exited meanwhile has no affinity left to check.
    if (status !== undefined) lists.push(cpuListOf(status, `/proc/${pid}/task/${tid}/status`));
  }
  return lists;
}

const sameCpus = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((c, i) => c === b[i]);

/**
 * Pins every thread of `pid` to `cpus` unless they already are (threads a
 * pinned thread creates inherit its affinity, so this is cheap to repeat: a
 * restarted proxy is a new, unpinned process).
 */
export async function ensurePinned(pid: number, cpus: string): Promise<void> {
  const want = parseCpuList(cpus);
  const before = await threadAffinities(pid);
  if (before === undefined) throw new BenchSetupError(`process ${pid} is gone, so it cannot be pinned to CPU ${cpus}; did the proxy or server crash? see its log`);
  if (before.every((l) => sameCpus(l, want))) return;
  await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]).catch((err: unknown) => {
    throw new BenchSetupError(`taskset could not pin process ${pid} to CPU ${cpus} (needs util-linux's taskset and root): ${(err as Error).message}`, { cause: err });
  });
  const after = await threadAffinities(pid);
  if (after === undefined || !after.every((l) => sameCpus(l, want))) throw new BenchSetupError(`process ${pid} is not on CPU ${cpus} after taskset (is a cpuset cgroup narrowing it?)`);
}

/** Every pid in cgroup `dir` and below it. */
export async function cgroupTreePids(dir: string): Promise<number[]> {
  const pids = await cgroupProcs(dir);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) pids.push(...(await cgroupTreePids(join(dir, e.name))));
  return pids;
}

/** Pins every process of cgroup `dir` (a pod: its init, the server and its workers); at least one must be there. */
export async function pinCgroup(dir: string, cpus: string): Promise<void> {
  const pids = await cgroupTreePids(dir);
  if (pids.length === 0) throw new BenchSetupError(`no process in cgroup ${dir} to pin to CPU ${cpus}: has the pod stopped?`);
  for (const pid of pids) {
    try {
      await ensurePinned(pid, cpus);
    } catch (err) {
      // A short-lived process of the pod may end between the listing and the pinning.
      if ((await threadAffinities(pid)) !== undefined) throw err;
    }
  }
}

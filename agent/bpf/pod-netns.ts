// The network namespace of a pod, named by one of its processes: the kernel
// knows a pod's cgroup, not its netns, and every container of a pod shares
// the pod's netns.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Pids in the cgroup and below it (containers sit in child cgroups), shallowest first. */
export async function cgroupPids(dir: string): Promise<number[]> {
  const pids: number[] = [];
  let level = [dir];
  while (level.length > 0) {
    const next: string[] = [];
    for (const d of level) {
      const procs = await readFile(join(d, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const line of procs.split('\n')) if (/^\d+$/.test(line)) pids.push(Number(line));
      const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
      next.push(...entries.filter((e) => e.isDirectory()).map((e) => join(d, e.name)));
    }
    level = next;
  }
  return pids;
}

/**
 * /proc/<pid>/ns/net of a process of the pod that is in a network namespace
 * other than ours, or null when it has none (not started yet, or gone). A
 * process still on its way into the pod (joined the cgroup, not yet the
 * netns) is passed over; pods never share the node's netns (hostNetwork pods
 * are never enrolled).
 */
export async function podNetnsPath(cgroupDir: string): Promise<string | null> {
  const own = await readlink('/proc/self/ns/net');
  for (const pid of await cgroupPids(cgroupDir)) {
    const path = `/proc/${pid}/ns/net`;
    const ns = await readlink(path).catch(() => null);
    if (ns !== null && ns !== own) return path;
  }
  return null;
}

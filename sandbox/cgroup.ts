// cgroup v2 directories: where the hierarchy is mounted, creating, killing
// and removing subtrees. Every sandbox process lives below one directory, so
// `cgroup.kill` there is a complete kill switch.
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SandboxError } from '../lib/core/errors.ts';

let cachedRoot: string | undefined;

/** Mount point of the cgroup-v2 hierarchy (/sys/fs/cgroup/unified on hybrid hosts, else usually /sys/fs/cgroup). */
export function cgroup2Root(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint !== undefined) {
      cachedRoot = mountPoint.replace(/\\040/g, ' ');
      return cachedRoot;
    }
  }
  throw new SandboxError('cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mounts); mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`');
}

export async function ensureCgroup(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENODEV';
};

/** Pids directly in `path` (not its children); empty if it does not exist. */
export async function cgroupProcs(path: string): Promise<number[]> {
  try {
    const text = await readFile(join(path, 'cgroup.procs'), 'utf8');
    return text.split('\n').filter(Boolean).map(Number);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
}

/** A process is alive anywhere below `path`. */
export async function cgroupPopulated(path: string): Promise<boolean> {
  try {
    return /^populated 1$/m.test(await readFile(join(path, 'cgroup.events'), 'utf8'));
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** The cgroup v2 directory process `pid` is in; undefined once it is gone. */
export async function cgroupOfPid(pid: number): Promise<string | undefined> {
  const line = (await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '')).split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? undefined : join(cgroup2Root(), line.slice(3));
}

/** SIGKILLs every process below `path` and waits until they are gone. */
export async function killCgroup(path: string, timeoutMs = 5000): Promise<void> {
  if (!(await cgroupPopulated(path))) return;
  try {
    await writeFile(join(path, 'cgroup.kill'), '1');
  } catch (err) {
    if (isMissing(err)) return;
    throw new SandboxError(`cannot kill the processes of cgroup ${path} (cgroup.kill needs Linux 5.14+)`, { cause: err });
  }
  const deadline = Date.now() + timeoutMs;
  while (await cgroupPopulated(path)) {
    if (Date.now() > deadline) throw new SandboxError(`processes of cgroup ${path} survived cgroup.kill for ${timeoutMs} ms; see ${join(path, 'cgroup.procs')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Kills everything below `path`, then removes the directories bottom-up. */
export async function removeCgroup(path: string): Promise<void> {
  await killCgroup(path);
  await rmdirTree(path);
}

async function rmdirTree(path: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) await rmdirTree(join(path, e.name));
  // A process that just died may still pin the cgroup for a moment.
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(path);
      return;
    } catch (err) {
      if (isMissing(err)) return;
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt > 100) {
        throw new SandboxError(`cannot remove cgroup ${path}: ${(err as Error).message}; check ${join(path, 'cgroup.procs')}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

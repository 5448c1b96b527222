// cgroup v2 paths and ids. A cgroup's id, which BPF programs get from
// bpf_get_current_cgroup_id(), is the inode number of its directory.
import { readdir, readFile, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { BpfError } from '../../lib/core/errors.ts';

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** The cgroup2 mount point in a /proc/self/mounts text, or null. */
export function parseCgroup2Mount(mounts: string): string | null {
  for (const line of mounts.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    // /proc/mounts escapes spaces and the like as \ooo octal.
    if (fsType === 'cgroup2' && mountPoint) return mountPoint.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  }
  return null;
}

/** Where cgroup v2 is mounted here: /sys/fs/cgroup on most nodes, /sys/fs/cgroup/unified on hybrid ones. */
export async function cgroup2Mount(): Promise<string> {
  const mount = parseCgroup2Mount(await readFile('/proc/self/mounts', 'utf8'));
  if (!mount) throw new BpfError('cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mounts)');
  return mount;
}

/** The id of the cgroup v2 directory at path. */
export async function cgroupId(path: string): Promise<bigint> {
  const [st, fs] = await Promise.all([stat(path, { bigint: true }), statfs(path)]);
  if (!st.isDirectory() || fs.type !== CGROUP2_SUPER_MAGIC) throw new BpfError(`not a cgroup v2 directory: ${path}`);
  return st.ino;
}

/** cgroupId, or null when the cgroup is gone. */
export async function cgroupIdIfExists(path: string): Promise<bigint | null> {
  try {
    return await cgroupId(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Ids of every cgroup under root (root included), for finding ids whose cgroup is gone. */
export async function cgroupIdsUnder(root: string): Promise<Set<bigint>> {
  const ids = new Set<bigint>();
  const walk = async (dir: string): Promise<void> => {
    const id = await cgroupIdIfExists(dir);
    if (id === null) return;
    ids.add(id);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => walk(join(dir, e.name))));
  };
  await walk(root);
  return ids;
}

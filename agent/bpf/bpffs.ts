// The BPF filesystem that pins outlive the agent in.
import { mkdir, statfs } from 'node:fs/promises';
import { BpfError } from '../../lib/core/errors.ts';
import { run } from '../../lib/core/exec.ts';

export const BPFFS_ROOT = '/sys/fs/bpf';
const BPF_FS_MAGIC = 0xcafe4a11;

export async function isBpffs(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Mounts bpffs at /sys/fs/bpf unless it already is. */
export async function ensureBpffs(root: string = BPFFS_ROOT): Promise<void> {
  if (await isBpffs(root)) return;
  await mkdir(root, { recursive: true });
  await run('mount', ['-t', 'bpf', 'bpf', root]);
  if (!(await isBpffs(root))) throw new BpfError(`mounted bpffs at ${root} but it does not show up there`);
}

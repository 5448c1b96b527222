// The BPF filesystem that pins outlive the agent in.
import { stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BpfError } from '../../lib/core/errors.ts';

const BPFFS_ROOT = '/sys/fs/bpf';
const BPF_FS_MAGIC = 0xcafe4a11;

async function isBpffs(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Refuses a pin directory whose filesystem is not bpffs: the nearest existing
 * ancestor must be on one. The agent never mounts a bpffs of its own: in a
 * container that mount would live only as long as the container, so a
 * restarted agent would find no pins and attach its programs a second time.
 */
export async function checkOnBpffs(path: string): Promise<void> {
  let dir = path;
  while (!(await exists(dir)) && dirname(dir) !== dir) dir = dirname(dir);
  if (await isBpffs(dir)) return;
  throw new BpfError(`${path} is not on a bpffs mount (${dir} is not bpffs): mount bpffs on the node at ${BPFFS_ROOT} (systemd's sys-fs-bpf.mount does; or \`mount -t bpf bpf ${BPFFS_ROOT}\`) and, in a container, mount it in with a hostPath volume; pins must outlive the agent`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

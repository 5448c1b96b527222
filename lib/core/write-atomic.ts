// Replacing a file that another process reads at any moment (a kubelet's
// volume, a CNI config, the CA's trust bundle): write beside it, then rename.
import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';

/** Replaces `file` with `data` by write and rename: a reader sees the old content or the new, never a part. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode: number): Promise<void> {
  // Ends in .tmp: no reader that picks files by their extension (a CNI config dir) takes it.
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data);
    // Set on its own: writeFile's mode is masked by the umask.
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

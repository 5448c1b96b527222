// Writing a volume's files the way kubelet's AtomicWriter does, so that a
// reader never sees a half-written set: every version is written whole into
// a fresh `..<timestamp>.<random>` directory, the `..data` symlink is swapped
// to it with one rename, and each top-level name the user sees is a symlink
// through `..data` (`token -> ..data/token`). The previous version is removed
// after the swap. An unchanged payload is not written again.
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink, unlink, writeFile, chmod } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** One file of a volume: its bytes and permission bits. */
export interface FileProjection {
  data: Buffer;
  mode: number;
}

/** A volume's whole content: relative path → file. */
export type Payload = ReadonlyMap<string, FileProjection>;

const DATA_DIR = '..data';
const DATA_TMP = '..data_tmp';
const VERSION_DIR_MODE = 0o755;
const MAX_PATH_LENGTH = 4096;

/** Why `path` cannot be a payload path (as kubelet validates them), or undefined. */
export function payloadPathProblem(path: string): string | undefined {
  if (path === '') return 'the path is empty';
  if (path.length > MAX_PATH_LENGTH) return `the path is longer than ${MAX_PATH_LENGTH} characters`;
  if (path.startsWith('/')) return `the path "${path}" is absolute; it must be relative to the volume`;
  const parts = path.split('/');
  if (parts.includes('..')) return `the path "${path}" contains ".."`;
  if (parts[0]!.startsWith('..')) return `the path "${path}" starts with "..", which the volume's own bookkeeping uses`;
  return undefined;
}

/** `..2006_01_02_15_04_05.` as kubelet names its versions (UTC). */
function versionPrefix(now: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

/** The version `..data` points at now, if any. */
async function currentVersion(dir: string): Promise<string | undefined> {
  try {
    return await readlink(join(dir, DATA_DIR));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Every regular file below `root`, as relative paths. */
async function filesBelow(root: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) found.push(...(await filesBelow(root, rel)));
    else found.push(rel);
  }
  return found;
}

/** Whether version directory `versionDir` holds exactly `payload`. */
async function holds(versionDir: string, payload: Payload): Promise<boolean> {
  let files: string[];
  try {
    files = await filesBelow(versionDir);
  } catch {
    return false;
  }
  if (files.length !== payload.size) return false;
  for (const path of files) {
    const want = payload.get(path);
    if (!want) return false;
    const file = join(versionDir, path);
    if (((await stat(file)).mode & 0o7777) !== want.mode) return false;
    if (!(await readFile(file)).equals(want.data)) return false;
  }
  return true;
}

/**
 * Makes directory `dir` (which must exist) hold `payload`, atomically;
 * resolves true when it wrote a new version, false when the content was
 * already there.
 */
export async function writePayload(dir: string, payload: Payload, now = new Date()): Promise<boolean> {
  for (const path of payload.keys()) {
    const problem = payloadPathProblem(path);
    if (problem) throw new Error(problem);
  }
  const previous = await currentVersion(dir);
  if (previous !== undefined && (await holds(join(dir, previous), payload))) return false;

  const version = await mkdtemp(join(dir, versionPrefix(now)));
  await chmod(version, VERSION_DIR_MODE);
  for (const [path, file] of payload) {
    const target = join(version, path);
    await mkdir(dirname(target), { recursive: true, mode: VERSION_DIR_MODE });
    await writeFile(target, file.data);
    // The mode on its own: writeFile's is masked by the umask.
    await chmod(target, file.mode);
  }
  const tmp = join(dir, DATA_TMP);
  await rm(tmp, { force: true });
  await symlink(basename(version), tmp);
  await rename(tmp, join(dir, DATA_DIR));

  const visible = new Set([...payload.keys()].map((p) => p.split('/')[0]!));
  for (const name of visible) {
    try {
      await lstat(join(dir, name));
    } catch {
      await symlink(join(DATA_DIR, name), join(dir, name));
    }
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.name.startsWith('..') && !visible.has(entry.name) && entry.isSymbolicLink()) await unlink(join(dir, entry.name));
  }
  if (previous !== undefined) await rm(join(dir, previous), { recursive: true, force: true });
  return true;
}


// Loading the object and pinning its programs and maps under pinDir, or
// re-adopting what an earlier agent pinned there, so a restarted agent keeps
// the maps live connections depend on and never attaches a second copy.
import { access, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BpfError } from '../../lib/core/errors.ts';
import { bpftool } from './bpftool.ts';
import { checkOnBpffs } from './bpffs.ts';
import { MAP_NAMES, mapPin, PROGRAMS, progPin } from './objects.ts';

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

/** 'partial' lists the pins this build expects but does not find. */
async function pinState(pinDir: string): Promise<'complete' | 'absent' | string[]> {
  const pins = [...PROGRAMS.map((p) => progPin(pinDir, p.name)), ...MAP_NAMES.map((m) => mapPin(pinDir, m))];
  const present = await Promise.all(pins.map(exists));
  if (present.every(Boolean)) return 'complete';
  const entries = await readdir(pinDir).catch(() => []);
  return entries.length === 0 ? 'absent' : pins.filter((_, i) => !present[i]);
}

/** What to tell the operator when pinDir holds pins this build cannot use. */
export function stalePinsError(pinDir: string, problem: string): BpfError {
  return new BpfError(
    `pin directory ${pinDir} ${problem}: pins from another meshlet build (or an interrupted load). ` +
      `Run \`meshlet sandbox down\` (sandbox), or remove the pin directory (rm -r ${pinDir}) and restart the agent ` +
      '(the old programs stay attached to pod cgroups until those pods restart).',
  );
}

/** Staging directories sit next to pinDir so the final rename is atomic. (bpffs refuses '.' in names.) */
const stagingPrefix = (pinDir: string): string => `${basename(pinDir)}_staging_`;

async function removeStaging(pinDir: string): Promise<void> {
  const parent = dirname(pinDir);
  const entries = await readdir(parent).catch(() => []);
  await Promise.all(entries.filter((e) => e.startsWith(stagingPrefix(pinDir))).map((e) => rm(join(parent, e), { recursive: true, force: true })));
}

/** Returns true when existing pins were adopted, false when the object was loaded. */
export async function loadOrAdopt(objectPath: string, pinDir: string): Promise<boolean> {
  if (!isAbsolute(pinDir) || pinDir.includes('.')) {
    throw new BpfError(`pin directory ${pinDir} must be an absolute path without '.', which bpffs refuses in names`);
  }
  const parent = dirname(pinDir);
  await checkOnBpffs(parent);
  await mkdir(parent, { recursive: true });
  await removeStaging(pinDir);

  const state = await pinState(pinDir);
  if (state === 'complete') return true;
  if (state !== 'absent') throw stalePinsError(pinDir, `lacks ${state.map((p) => relative(pinDir, p)).join(', ')}`);
  if (!(await exists(objectPath))) throw new BpfError(`BPF object ${objectPath} not found; build it with scripts/build-bpf.sh`);

  const staging = join(parent, `${stagingPrefix(pinDir)}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(staging);
    await bpftool(['prog', 'loadall', objectPath, join(staging, 'progs'), 'pinmaps', join(staging, 'maps')]);
    await rename(staging, pinDir);
    return false;
  } catch (err) {
    // Another agent finished first: use its pins rather than a second set.
    if (isErrno(err, 'ENOTEMPTY', 'EEXIST') && (await pinState(pinDir)) === 'complete') return true;
    throw err instanceof BpfError ? err : new BpfError(`loading ${objectPath} into ${pinDir} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

export async function removePins(pinDir: string): Promise<void> {
  await rm(pinDir, { recursive: true, force: true });
  await removeStaging(pinDir);
}

function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

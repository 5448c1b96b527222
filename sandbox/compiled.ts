// Node components (agent, ztunnel, CA, supervisors) run from JavaScript that
// tsc emits, not from .ts through Node's type stripping: stripping loads a
// WebAssembly compiler into every process, ~16 MB of resident memory each,
// which the ztunnel's memory budget cannot carry. Each build lands in
// build/js/<key>/, the key hashing every source file's path, size and mtime,
// so a changed checkout gets a fresh build and running processes never see
// their modules rewritten under them.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { run } from '../lib/core/exec.ts';
import { REPO_ROOT } from '../lib/core/repo.ts';
import { CommandError, SandboxError } from '../lib/core/errors.ts';
import { PROCESS_SOURCE_DIRS } from '../lib/core/layout.ts';

const BUILD_ROOT = join(REPO_ROOT, 'build', 'js');
/** Every folder tsconfig.build.json compiles: lib/ and the process folders. */
const SOURCES = PROCESS_SOURCE_DIRS.map((d) => join(REPO_ROOT, d));
const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
const BUILD_CONFIG = join(REPO_ROOT, 'tsconfig.build.json');
/** Builds kept besides the current one, for processes still running from them. */
const KEEP_OLD = 2;

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) files.push(path);
  }
  return files;
}

async function buildKey(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of (await Promise.all(SOURCES.map(sourceFiles))).flat().sort()) {
    const st = await stat(file);
    hash.update(`${relative(REPO_ROOT, file)}\0${st.size}\0${st.mtimeMs}\n`);
  }
  hash.update(String((await stat(BUILD_CONFIG)).mtimeMs));
  return hash.digest('hex').slice(0, 16);
}

/** Removes all but the newest KEEP_OLD builds other than `current`. */
async function pruneBuilds(current: string): Promise<void> {
  const entries = await readdir(BUILD_ROOT, { withFileTypes: true });
  const old = await Promise.all(entries.filter((e) => e.isDirectory() && e.name !== current && !e.name.includes('.tmp-')).map(async (e) => ({ path: join(BUILD_ROOT, e.name), mtime: (await stat(join(BUILD_ROOT, e.name))).mtimeMs })));
  old.sort((a, b) => b.mtime - a.mtime);
  await Promise.all(old.slice(KEEP_OLD).map((b) => rm(b.path, { recursive: true, force: true })));
}

/** The build's `meshlet` (bin/meshlet beside cli/), which sandbox containers find first on their PATH, as the image's /usr/local/bin/meshlet runs its compiled tree. */
export const LAUNCHER_DIR = 'bin';

/** Writes it into `scratch`, running `main` (where the build lands once renamed). */
async function writeLauncher(scratch: string, main: string): Promise<void> {
  await mkdir(join(scratch, LAUNCHER_DIR), { recursive: true });
  await writeFile(join(scratch, LAUNCHER_DIR, 'meshlet'), `#!/bin/sh\nexec '${process.execPath}' '${main}' "$@"\n`, { mode: 0o755 });
}

/** The compiled CLI entry point for the current sources, building it first if needed (a few seconds). */
export async function compiledCliMain(log: (line: string) => void = () => {}): Promise<string> {
  const key = await buildKey();
  const dir = join(BUILD_ROOT, key);
  const main = join(dir, 'cli', 'main.js');
  if (existsSync(main)) return main;
  if (!existsSync(TSC)) throw new SandboxError(`cannot compile the node components: ${TSC} is missing; run \`npm ci\` (or \`npm run setup\`)`);
  log('compiling the node components (tsc)');
  const scratch = `${dir}.tmp-${process.pid}`;
  try {
    await run(TSC, ['-p', BUILD_CONFIG, '--outDir', scratch]);
    await writeLauncher(scratch, main);
  } catch (err) {
    await rm(scratch, { recursive: true, force: true });
    throw new SandboxError(`compiling the node components failed; run \`npm run typecheck\`: ${err instanceof CommandError ? err.message : String(err)}`, { cause: err });
  }
  // Another process may have finished the same build meanwhile: either copy is the same.
  await rename(scratch, dir).catch(() => rm(scratch, { recursive: true, force: true }));
  await pruneBuilds(key);
  return main;
}

/** The launcher directory of the build this process runs from (a supervisor's, whose kubelet starts containers), or undefined when it runs from sources. */
export function runningLauncherDir(): string | undefined {
  const main = process.argv[1];
  if (main === undefined || !main.startsWith(`${BUILD_ROOT}/`)) return undefined;
  const dir = join(dirname(dirname(main)), LAUNCHER_DIR);
  return existsSync(join(dir, 'meshlet')) ? dir : undefined;
}

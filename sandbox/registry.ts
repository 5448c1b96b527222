// sandbox.json (what `up` built) and each node's pids.json (what its
// supervisor runs now).
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../lib/core/write-atomic.ts';
import type { SandboxInfo } from './info.ts';
import { controlPlanePidsFile, pidsFile, sandboxPaths } from './layout.ts';
import { SandboxNotFoundError } from './errors.ts';

export interface NodePids {
  supervisorPid: number;
}

export async function readSandboxFile(name: string): Promise<SandboxInfo> {
  const { infoFile } = sandboxPaths(name);
  try {
    return JSON.parse(await readFile(infoFile, 'utf8')) as SandboxInfo;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SandboxNotFoundError(`no sandbox named "${name}" is up (no ${infoFile}); start one with \`meshlet sandbox up --name ${name}\``);
    }
    throw err;
  }
}

export async function writeSandboxFile(info: SandboxInfo): Promise<void> {
  await writeFileAtomic(sandboxPaths(info.name).infoFile, `${JSON.stringify(info, null, 2)}\n`, 0o644);
}

/** A pids file as its supervisor last wrote it, or undefined (not written yet, or gone). */
async function readPidsFile<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

const writePidsFile = (file: string, pids: object): Promise<void> => writeFileAtomic(file, `${JSON.stringify(pids)}\n`, 0o644);

export const readPids = (name: string, node: string): Promise<NodePids | undefined> => readPidsFile(pidsFile(name, node));
export const writePids = (name: string, node: string, pids: NodePids): Promise<void> => writePidsFile(pidsFile(name, node), pids);

export interface ControlPlanePids {
  supervisorPid: number;
  /** Component → pid of its running process. */
  pids: Record<string, number | undefined>;
  restarts: Record<string, number>;
}

export const readControlPlanePids = (name: string): Promise<ControlPlanePids | undefined> => readPidsFile(controlPlanePidsFile(name));
export const writeControlPlanePids = (name: string, pids: ControlPlanePids): Promise<void> => writePidsFile(controlPlanePidsFile(name), pids);

// sandbox.json (what `up` built) and each node's pids.json (what its
// supervisor runs now).
import { randomUUID } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { SandboxInfo } from './info.ts';
import { caPidsFile, controlPlanePidsFile, pidsFile, sandboxPaths } from './layout.ts';
import { SandboxNotFoundError } from './errors.ts';

/** Readers never see half a file. */
async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

export interface NodePids {
  supervisorPid: number;
  agentPid?: number;
  ztunnelPid?: number;
  agentRestarts: number;
  ztunnelRestarts: number;
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
  await writeFileAtomic(sandboxPaths(info.name).infoFile, `${JSON.stringify(info, null, 2)}\n`);
}

export async function readPids(name: string, node: string): Promise<NodePids | undefined> {
  try {
    return JSON.parse(await readFile(pidsFile(name, node), 'utf8')) as NodePids;
  } catch {
    return undefined;
  }
}

export async function writePids(name: string, node: string, pids: NodePids): Promise<void> {
  await writeFileAtomic(pidsFile(name, node), `${JSON.stringify(pids)}\n`);
}

export interface CaPids {
  supervisorPid: number;
  caPid?: number;
  caRestarts: number;
}

export async function readCaPids(name: string): Promise<CaPids | undefined> {
  try {
    return JSON.parse(await readFile(caPidsFile(name), 'utf8')) as CaPids;
  } catch {
    return undefined;
  }
}

export async function writeCaPids(name: string, pids: CaPids): Promise<void> {
  await writeFileAtomic(caPidsFile(name), `${JSON.stringify(pids)}\n`);
}

export interface ControlPlanePids {
  supervisorPid: number;
  /** Component → pid of its running process. */
  pids: Record<string, number | undefined>;
  restarts: Record<string, number>;
}

export async function readControlPlanePids(name: string): Promise<ControlPlanePids | undefined> {
  try {
    return JSON.parse(await readFile(controlPlanePidsFile(name), 'utf8')) as ControlPlanePids;
  } catch {
    return undefined;
  }
}

export async function writeControlPlanePids(name: string, pids: ControlPlanePids): Promise<void> {
  await writeFileAtomic(controlPlanePidsFile(name), `${JSON.stringify(pids)}\n`);
}

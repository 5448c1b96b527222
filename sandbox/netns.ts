// Network namespaces through iproute2. Interfaces are always created inside
// a sandbox namespace (`ip -n`), never in the root one.
import { readdir } from 'node:fs/promises';
import { run } from '../lib/core/exec.ts';
import { NETNS_DIR } from './layout.ts';

export async function listNetns(): Promise<string[]> {
  try {
    return await readdir(NETNS_DIR);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

export async function addNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
}

export async function deleteNetns(name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  await run('ip', ['netns', 'delete', name]);
}

/** Runs `ip` commands (one per line, without the leading `ip`) in one process, inside `netns`. */
export async function ipBatch(netns: string, commands: readonly string[]): Promise<void> {
  await run('ip', ['-n', netns, '-batch', '-'], { input: `${commands.join('\n')}\n` });
}

/** Sets sysctls of `netns`: /proc/sys/net is per namespace, seen from a process inside it. */
export async function sysctl(netns: string, settings: Record<string, string>): Promise<void> {
  const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  await run('nsenter', [`--net=${NETNS_DIR}/${netns}`, '--', 'sysctl', '-q', '-w', ...args]);
}

// Network namespaces through iproute2 and nftables. Interfaces and rules are
// always created inside a sandbox namespace (`ip -n`, nsenter), never in the
// root one.
import { readdir } from 'node:fs/promises';
import { run } from '../lib/core/exec.ts';
import { SandboxError } from '../lib/core/errors.ts';
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

/** Loads an nftables ruleset (`nft -f` syntax) into `netns`, atomically. */
export async function nftApply(netns: string, ruleset: string): Promise<void> {
  const r = await run('nsenter', [`--net=${NETNS_DIR}/${netns}`, '--', 'nft', '-f', '-'], { input: ruleset, allowFailure: true });
  if (r.exitCode === 0) return;
  if (/failed to execute nft|No such file/.test(r.stderr)) throw new SandboxError('nft is not installed (Debian package nftables): the sandbox filters pod traffic with it; run `npm run setup`');
  throw new SandboxError(`cannot load the nftables rules of namespace ${netns}: ${r.stderr.trim() || `nft exited with ${r.exitCode}`}`);
}

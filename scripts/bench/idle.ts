// Proxy memory with many idle connections: a small client in the pod opens
// and holds them (scripts/bench/hold-connections.ts) while we read the
// proxies' RSS.
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../sandbox/layout.ts';
import { sandboxSpawn } from '../../sandbox/api.ts';
import { pinnedArgv } from './cpus.ts';
import { WorkloadError } from './errors.ts';
import { resident, type Resident } from './proc-stats.ts';
import type { Client } from './workloads.ts';

const HOLDER = fileURLToPath(new URL('./hold-connections.ts', import.meta.url));
/** Let the proxies finish their bookkeeping for the last connections before reading RSS. */
const SETTLE_MS = 1000;

/** Opens `count` connections through the path, returns each proxy's resident memory while they are held. */
export async function rssWithIdleConnections(client: Client, count: number, pids: () => Promise<number[]>): Promise<Resident[]> {
  const url = new URL(client.base);
  const child = await sandboxSpawn(client.sandbox, client.pod, pinnedArgv(client.cpus, ['node', HOLDER, url.hostname, url.port, String(count)]), { cwd: REPO_ROOT });
  try {
    const lines = createInterface({ input: child.stdout! });
    const stderr: Buffer[] = [];
    child.stderr!.on('data', (c: Buffer) => stderr.push(c));
    const timeout = AbortSignal.timeout(120_000);
    let first: string | undefined;
    try {
      [first] = (await once(lines, 'line', { signal: timeout })) as [string];
    } catch (err) {
      throw new WorkloadError('hold-connections', `no answer: ${Buffer.concat(stderr).toString().trim()}`, { cause: err });
    }
    if (first !== `ready ${count}`) throw new WorkloadError('hold-connections', `${first} ${Buffer.concat(stderr).toString().trim()}`);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    return await Promise.all((await pids()).map(resident));
  } finally {
    child.stdin!.end();
    const exited = child.exitCode !== null ? Promise.resolve() : once(child, 'exit');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

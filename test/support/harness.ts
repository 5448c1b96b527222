// Shared pieces of the suites that build real namespaces: a per-run name, the
// real CLI as a subprocess, the admin sockets, polling (eventually.ts), and a check that nothing
// was left behind.
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { run, type RunResult } from '../../lib/core/exec.ts';

export { eventually } from './eventually.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = `${REPO}cli/main.ts`;

/** Short, so derived interface and namespace names stay within kernel limits. */
export const runName = (tag: string): string => `${tag}${randomBytes(3).toString('hex')}`;

/** Runs `meshlet ARGS…` exactly as an operator would. */
export function meshlet(args: readonly string[], input?: string): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { allowFailure: true, ...(input === undefined ? {} : { input }) });
}

export async function meshletJson<T>(args: readonly string[]): Promise<T> {
  const r = await meshlet(args);
  if (r.exitCode !== 0) throw new Error(`meshlet ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Everything on this machine whose name carries `prefix`: what a finished test must not leave. */
export async function leftovers(prefix: string): Promise<string[]> {
  const found: string[] = [];
  const netns = await run('ip', ['netns', 'list'], { allowFailure: true });
  for (const line of netns.stdout.split('\n')) if (line.includes(prefix)) found.push(`netns ${line.split(' ')[0]}`);
  for (const dir of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup', '/sys/fs/bpf/meshlet', '/run/meshlet', tmpdir()]) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) if (n.includes(prefix)) found.push(`${dir}/${n}`);
  }
  const procs = await run('pgrep', ['-af', prefix], { allowFailure: true });
  for (const line of procs.stdout.split('\n')) if (line.trim() !== '' && !line.includes('pgrep')) found.push(`process ${line}`);
  return found;
}

/** GET on an admin socket (agent or ztunnel); a silent one (a stopped agent) fails instead of hanging. */
export function adminGet(socket: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) reject(new Error(`GET ${path} on ${socket}: HTTP ${res.statusCode}: ${body}`));
        else resolve(body);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on ${socket}: no answer`)));
    req.on('error', reject);
    req.end();
  });
}

export const adminJson = async <T>(socket: string, path: string): Promise<T> => JSON.parse(await adminGet(socket, path)) as T;

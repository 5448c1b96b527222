// Resident memory and CPU time of the proxies (ztunnels, haproxies, the
// waypoint, nginx) from /proc, read around a workload: what the data path
// costs, not the client.
import { readFile } from 'node:fs/promises';
import { run } from '../../lib/core/exec.ts';
import { cgroupTreePids } from './cpus.ts';
import { BenchSetupError } from './errors.ts';

let clockTicks: number | undefined;

async function ticksPerSecond(): Promise<number> {
  clockTicks ??= Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  return clockTicks;
}

/** Resident memory of a process in MiB: all of it, and its anonymous and file-backed parts. */
export interface Resident {
  rss: number;
  /** Heap, stacks, buffers: what the process itself allocated. */
  anon: number;
  /** Mapped files, chiefly the executable's own code (for Node, most of the node binary's pages). */
  file: number;
}

export async function resident(pid: number): Promise<Resident> {
  const status = await readProc(pid, 'status');
  const field = (name: string): number => {
    const kb = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
    if (kb === undefined) throw new BenchSetupError(`no ${name} in /proc/${pid}/status`);
    return Number(kb) / 1024;
  };
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
}

/** VmRSS of `pid` in MB (10^6 bytes' worth of KiB, as `ps` users read it: MiB). */
export async function rssMB(pid: number): Promise<number> {
  return (await resident(pid)).rss;
}

/** utime + stime of `pid` (all its threads) in seconds. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readProc(pid, 'stat');
  // Fields after the parenthesised command, which may itself hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / (await ticksPerSecond());
}

async function readProc(pid: number, file: string): Promise<string> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (err) {
    throw new BenchSetupError(`process ${pid} is gone (reading /proc/${pid}/${file}); did the proxy crash? see its log`, { cause: err });
  }
}

/** The processes of cgroup `dir` and below it whose command line (argv) `match` picks: a pod's proxy among its init and launcher. */
export async function processesIn(dir: string, match: (argv: readonly string[]) => boolean): Promise<number[]> {
  const picked: number[] = [];
  for (const pid of await cgroupTreePids(dir)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline !== '' && match(cmdline.split('\0').filter((a) => a !== ''))) picked.push(pid);
  }
  return picked;
}

export interface ProxyUsage {
  /** Highest VmRSS seen of each process, MB. */
  peakRssMB: number[];
  /** Highest RssAnon seen of each process, MB: what it allocated itself, without mapped files. */
  peakAnonMB: number[];
  /** CPU seconds each process spent during the window. */
  cpuSeconds: number[];
}

/**
 * Samples the processes' RSS (all and anonymous) every `intervalMs` while `body` runs and their
 * CPU time before and after it.
 */
export async function measureAround<T>(pids: readonly number[], body: () => Promise<T>, intervalMs = 250): Promise<{ result: T; usage: ProxyUsage }> {
  const cpuBefore = await Promise.all(pids.map(cpuSeconds));
  const start = await Promise.all(pids.map(resident));
  const peak = start.map((r) => r.rss);
  const peakAnon = start.map((r) => r.anon);
  const sample = async () => {
    const now = await Promise.all(pids.map((p) => resident(p).catch(() => undefined)));
    now.forEach((r, i) => {
      if (!r) return;
      peak[i] = Math.max(peak[i]!, r.rss);
      peakAnon[i] = Math.max(peakAnon[i]!, r.anon);
    });
  };
  const timer = setInterval(() => void sample(), intervalMs);
  let result: T;
  try {
    result = await body();
  } finally {
    clearInterval(timer);
  }
  await sample();
  const cpuAfter = await Promise.all(pids.map(cpuSeconds));
  return { result, usage: { peakRssMB: peak, peakAnonMB: peakAnon, cpuSeconds: cpuAfter.map((v, i) => v - cpuBefore[i]!) } };
}

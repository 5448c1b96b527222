// One round of every workload on every path, the paths back to back in the
// same order each round, and the enrollment figures; each value goes to the
// collector under its round, each failure is recorded against its figure,
// path and round so one broken path never hides the others' figures.
import { sandboxApply, type SandboxInfo } from '../../sandbox/api.ts';
import { enrollNamespace, enrollPodCycles, unenrollNamespace } from './enrollment.ts';
import { rssWithIdleConnections } from './idle.ts';
import { scaleManifest, soloNamespaceManifest, soloPodManifest } from './manifest.ts';
import type { Profile } from './options.ts';
import type { BenchPath } from './paths.ts';
import { measureAround, rssMB } from './proc-stats.ts';
import type { Collector } from './report.ts';
import { percentile } from './stats.ts';
import type { WrkResult } from './parse.ts';
import { fixedRate, keepAlive, newConnections, singleStream } from './workloads.ts';

export interface Context {
  profile: Profile;
  collector: Collector;
  /** Samples beyond the issue's figures, by name. */
  extra: Map<string, number[]>;
  /** Lines for the report's notes (what a reader of the figures must know). */
  notes: string[];
  log: (line: string) => void;
}

const max = (values: readonly number[]): number => Math.max(...values);
const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Notes a keep-alive run that had a stray dropped connection, with what the path's components said; its figure stands. */
export async function noteSocketErrors(ctx: Context, path: Pick<BenchPath, 'id' | 'diagnose'>, round: number, result: WrkResult): Promise<void> {
  if (result.socketErrors === undefined) return;
  const logs = await path.diagnose().catch(() => '');
  ctx.notes.push(`${path.id}, round ${round + 1}: wrk saw ${result.socketErrors} in ${result.requests} requests (a dropped connection; the figure stands)`);
  ctx.log(`  ${path.id}: ${result.socketErrors}${logs ? `\n${logs}` : ''}`);
}

export function addExtra(ctx: Context, name: string, value: number): void {
  const list = ctx.extra.get(name) ?? [];
  list.push(value);
  ctx.extra.set(name, list);
}

/** Runs `body` and records its failure, with what the path's proxies logged, against `figures` of `round` instead of throwing. */
export async function attempt(ctx: Context, figures: readonly string[], path: Pick<BenchPath, 'id' | 'diagnose'>, round: number, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const logs = await path.diagnose().catch(() => '');
    const message = `${(err as Error).message}${logs ? `\n${logs}` : ''}`;
    for (const f of figures) ctx.collector.fail(f, path.id, round, new Error(message));
    ctx.log(`  ${path.id}: ${figures.join(', ')} failed: ${message}`);
  }
  // Let connections close and the proxies settle before the next path starts.
  await pause(500);
}

/** Each proxy's RSS before any load (after one probe), to tell what the workloads added. */
export async function recordStartRss(ctx: Context, paths: readonly BenchPath[]): Promise<void> {
  for (const path of paths) {
    const pids = await path.proxyPids();
    if (pids.length > 0) addExtra(ctx, `startRssMB.${path.id}`, max(await Promise.all(pids.map(rssMB))));
  }
}

/** `attempt` on a path whose server and proxies are first pinned to their CPUs (a restarted proxy is a new process). */
export const pinnedAttempt = (ctx: Context, figures: readonly string[], path: BenchPath, round: number, body: () => Promise<void>): Promise<void> =>
  attempt(ctx, figures, path, round, async () => {
    await path.pin();
    await body();
  });

/**
 * Every workload once on every path, the paths in the same order every round
 * (A B C, A B C, …), back to back: whatever else loads the machine then
 * weighs on all paths of a round alike, and the ratios are taken per round.
 */
export async function measureRound(ctx: Context, paths: readonly BenchPath[], round: number): Promise<void> {
  const { profile: p, collector: c } = ctx;
  const say = (what: string) => ctx.log(`round ${round + 1}/${p.rounds}: ${what}`);

  say(`keep-alive, ${p.loadSeconds} s`);
  for (const path of paths) {
    await pinnedAttempt(ctx, ['keepaliveRps', 'proxyRssMB', 'proxyCpuPer1kReq'], path, round, async () => {
      const pids = await path.proxyPids();
      const { result, usage } = await measureAround(pids, () => keepAlive(path.client, p.loadSeconds));
      c.add('keepaliveRps', path.id, round, result.requestsPerSecond);
      await noteSocketErrors(ctx, path, round, result);
      if (pids.length > 0) {
        c.add('proxyRssMB', path.id, round, max(usage.peakRssMB));
        c.add('proxyCpuPer1kReq', path.id, round, sum(usage.cpuSeconds) / (result.requests / 1000));
      }
      ctx.log(`  ${path.id}: ${Math.round(result.requestsPerSecond)} req/s`);
    });
  }

  say(`latency at 1,000 req/s, ${p.latencySeconds} s`);
  for (const path of paths) {
    await pinnedAttempt(ctx, ['latencyP50Ms', 'latencyP99Ms'], path, round, async () => {
      const r = await fixedRate(path.client, p.latencySeconds);
      c.add('latencyP50Ms', path.id, round, r.p50 * 1000);
      c.add('latencyP99Ms', path.id, round, r.p99 * 1000);
      addExtra(ctx, `fixedRateAchievedRps.${path.id}`, r.requestsPerSecond);
      ctx.log(`  ${path.id}: p50 ${(r.p50 * 1000).toFixed(2)} ms, p99 ${(r.p99 * 1000).toFixed(2)} ms at ${Math.round(r.requestsPerSecond)} req/s`);
    });
  }

  say(`new connection per request, ${p.loadSeconds} s`);
  for (const path of paths) {
    await pinnedAttempt(ctx, ['newConnRps'], path, round, async () => {
      const r = await newConnections(path.client, p.loadSeconds);
      c.add('newConnRps', path.id, round, r.requestsPerSecond);
      ctx.log(`  ${path.id}: ${Math.round(r.requestsPerSecond)} req/s`);
    });
  }

  say(`single stream, ${p.transferBytes} bytes`);
  for (const path of paths) {
    await pinnedAttempt(ctx, ['singleStreamMBps'], path, round, async () => {
      const r = await singleStream(path.client, p.transferBytes);
      c.add('singleStreamMBps', path.id, round, r.bytesPerSecond / 1e6);
      ctx.log(`  ${path.id}: ${(r.bytesPerSecond / 1e6).toFixed(1)} MB/s`);
    });
  }

  say(`${p.idleConnections} idle connections`);
  for (const path of paths) {
    // No proxy on the direct path, so no proxy memory to read.
    if (path.id === 'direct') continue;
    await pinnedAttempt(ctx, ['idleConnRssMB'], path, round, async () => {
      const rss = (await rssWithIdleConnections(path.client, p.idleConnections, () => path.proxyPids())).map((r) => r.rss);
      c.add('idleConnRssMB', path.id, round, max(rss));
      ctx.log(`  ${path.id}: ${rss.map((v) => v.toFixed(1)).join(' / ')} MiB`);
    });
  }
}

/** Creates the idle pods (outside the mesh) and the solo pod with its namespace. */
export async function createEnrollmentPods(profile: Profile, sandbox: string, log: (line: string) => void): Promise<void> {
  log(`creating ${profile.pods} idle pods and the solo pod`);
  await sandboxApply(sandbox, scaleManifest(profile.pods));
  await sandboxApply(sandbox, `${soloNamespaceManifest()}---\n${soloPodManifest(false)}`);
}

/** Failures of an enrollment-only run have no traffic path whose proxies could explain them. */
const NO_PATH: Pick<BenchPath, 'id' | 'diagnose'> = { id: 'meshlet', diagnose: async () => '' };

/**
 * Enrollment of many pods at once and of one pod at a time; the ztunnels'
 * memory while many are enrolled, unless there is no meshlet path to load
 * (`--only enrollment`).
 */
export async function measureEnrollmentRound(ctx: Context, sandbox: string, info: SandboxInfo, meshlet: BenchPath | undefined, round: number): Promise<void> {
  const { profile: p, collector: c } = ctx;
  const target = meshlet ?? NO_PATH;
  ctx.log(`round ${round + 1}/${p.rounds}: enrollment of ${p.pods} pods${meshlet ? `, then ${p.idleConnections} idle connections` : ''}`);
  let enrolled = false;
  await attempt(ctx, ['enrollPodsMs'], target, round, async () => {
    const sample = await enrollNamespace(sandbox, info, p.pods);
    enrolled = true;
    c.add('enrollPodsMs', 'meshlet', round, sample.ms);
    addExtra(ctx, 'enrollPodsObservedMs', sample.observedMs);
    ctx.log(`  ${p.pods} pods: ${sample.ms.toFixed(1)} ms (seen after ${sample.observedMs.toFixed(1)} ms)`);
  });
  if (enrolled && meshlet) {
    await pinnedAttempt(ctx, ['loadedRssMB'], meshlet, round, async () => {
      const memory = await rssWithIdleConnections(meshlet.client, p.idleConnections, () => meshlet.proxyPids());
      const highest = memory.reduce((a, b) => (b.rss > a.rss ? b : a));
      c.add('loadedRssMB', 'meshlet', round, highest.rss);
      // How much of it is the node binary's mapped code rather than the ztunnel's own allocations.
      addExtra(ctx, 'loadedRssAnonMB', highest.anon);
      addExtra(ctx, 'loadedRssFileMB', highest.file);
      ctx.log(`  ztunnels with ${p.pods} pods + ${p.idleConnections} connections: ${memory.map((m) => `${m.rss.toFixed(1)} (anon ${m.anon.toFixed(1)}, file ${m.file.toFixed(1)})`).join(' / ')} MiB`);
    });
  } else if (meshlet) {
    c.fail('loadedRssMB', 'meshlet', round, new Error('the pods did not enroll'));
  }
  await attempt(ctx, ['enrollPodsMs'], target, round, () => unenrollNamespace(sandbox, info));

  ctx.log(`round ${round + 1}/${p.rounds}: ${p.podCycles} single-pod enrollments`);
  await attempt(ctx, ['enrollPodP99Ms'], target, round, async () => {
    const samples = await enrollPodCycles(sandbox, info, p.podCycles);
    const ms = samples.map((s) => s.ms);
    c.add('enrollPodP99Ms', 'meshlet', round, percentile(ms, 99)!);
    addExtra(ctx, 'enrollPodP50Ms', percentile(ms, 50)!);
    addExtra(ctx, 'enrollPodObservedP99Ms', percentile(samples.map((s) => s.observedMs), 99)!);
    ctx.log(`  one pod: p50 ${percentile(ms, 50)!.toFixed(1)} ms, p99 ${percentile(ms, 99)!.toFixed(1)} ms`);
  });
}

// One run of every workload on every path, and the enrollment figures; each
// sample goes to the collector, each failure is recorded against its figure
// and path so one broken path never hides the others' figures.
import { sandboxApply, type SandboxInfo } from '../../sandbox/api.ts';
import { enrollNamespace, enrollPodCycles, unenrollNamespace } from './enrollment.ts';
import { rssWithIdleConnections } from './idle.ts';
import { scaleManifest, soloNamespaceManifest, soloPodManifest } from './manifest.ts';
import type { Profile } from './options.ts';
import type { BenchPath } from './paths.ts';
import { measureAround, rssMB } from './proc-stats.ts';
import type { Collector } from './report.ts';
import { percentile } from './stats.ts';
import { fixedRate, keepAlive, newConnections, singleStream } from './workloads.ts';

export interface Context {
  profile: Profile;
  collector: Collector;
  /** Samples beyond the issue's figures, by name. */
  extra: Map<string, number[]>;
  log: (line: string) => void;
}

const max = (values: readonly number[]): number => Math.max(...values);
const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

function addExtra(ctx: Context, name: string, value: number): void {
  const list = ctx.extra.get(name) ?? [];
  list.push(value);
  ctx.extra.set(name, list);
}

/** Runs `body` and records its failure, with what the path's proxies logged, against `figures` instead of throwing. */
async function attempt(ctx: Context, figures: readonly string[], path: Pick<BenchPath, 'id' | 'diagnose'>, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const logs = await path.diagnose().catch(() => '');
    const message = `${(err as Error).message}${logs ? `\n${logs}` : ''}`;
    for (const f of figures) ctx.collector.fail(f, path.id, new Error(message));
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

/** Every workload once per path; the path order rotates with `round` so none always goes first. */
export async function measureRound(ctx: Context, paths: readonly BenchPath[], round: number): Promise<void> {
  const { profile: p, collector: c } = ctx;
  const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
  const say = (what: string) => ctx.log(`run ${round + 1}/${p.runs}: ${what}`);

  say(`keep-alive, ${p.loadSeconds} s`);
  for (const path of order) {
    await attempt(ctx, ['keepaliveRps', 'proxyRssMB', 'proxyCpuPer1kReq'], path, async () => {
      const pids = await path.proxyPids();
      const { result, usage } = await measureAround(pids, () => keepAlive(path.client, p.loadSeconds));
      c.add('keepaliveRps', path.id, result.requestsPerSecond);
      if (pids.length > 0) {
        c.add('proxyRssMB', path.id, max(usage.peakRssMB));
        c.add('proxyCpuPer1kReq', path.id, sum(usage.cpuSeconds) / (result.requests / 1000));
      }
      ctx.log(`  ${path.id}: ${Math.round(result.requestsPerSecond)} req/s`);
    });
  }

  say(`latency at 1,000 req/s, ${p.latencySeconds} s`);
  for (const path of order) {
    await attempt(ctx, ['latencyP50Ms', 'latencyP99Ms'], path, async () => {
      const r = await fixedRate(path.client, p.latencySeconds);
      c.add('latencyP50Ms', path.id, r.p50 * 1000);
      c.add('latencyP99Ms', path.id, r.p99 * 1000);
      addExtra(ctx, `fixedRateAchievedRps.${path.id}`, r.requestsPerSecond);
      ctx.log(`  ${path.id}: p50 ${(r.p50 * 1000).toFixed(2)} ms, p99 ${(r.p99 * 1000).toFixed(2)} ms at ${Math.round(r.requestsPerSecond)} req/s`);
    });
  }

  say(`new connection per request, ${p.loadSeconds} s`);
  for (const path of order) {
    await attempt(ctx, ['newConnRps'], path, async () => {
      const r = await newConnections(path.client, p.loadSeconds);
      c.add('newConnRps', path.id, r.requestsPerSecond);
      ctx.log(`  ${path.id}: ${Math.round(r.requestsPerSecond)} req/s`);
    });
  }

  say(`single stream, ${p.transferBytes} bytes`);
  for (const path of order) {
    await attempt(ctx, ['singleStreamMBps'], path, async () => {
      const r = await singleStream(path.client, p.transferBytes);
      c.add('singleStreamMBps', path.id, r.bytesPerSecond / 1e6);
      ctx.log(`  ${path.id}: ${(r.bytesPerSecond / 1e6).toFixed(1)} MB/s`);
    });
  }

  say(`${p.idleConnections} idle connections`);
  for (const path of order) {
    // No proxy on the direct path, so no proxy memory to read.
    if (path.id === 'direct') continue;
    await attempt(ctx, ['idleConnRssMB'], path, async () => {
      const rss = (await rssWithIdleConnections(path.client, p.idleConnections, () => path.proxyPids())).map((r) => r.rss);
      c.add('idleConnRssMB', path.id, max(rss));
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
  ctx.log(`run ${round + 1}/${p.runs}: enrollment of ${p.pods} pods${meshlet ? `, then ${p.idleConnections} idle connections` : ''}`);
  let enrolled = false;
  await attempt(ctx, ['enrollPodsMs'], target, async () => {
    const sample = await enrollNamespace(sandbox, info, p.pods);
    enrolled = true;
    c.add('enrollPodsMs', 'meshlet', sample.ms);
    addExtra(ctx, 'enrollPodsObservedMs', sample.observedMs);
    ctx.log(`  ${p.pods} pods: ${sample.ms.toFixed(1)} ms (seen after ${sample.observedMs.toFixed(1)} ms)`);
  });
  if (enrolled && meshlet) {
    await attempt(ctx, ['loadedRssMB'], meshlet, async () => {
      const memory = await rssWithIdleConnections(meshlet.client, p.idleConnections, () => meshlet.proxyPids());
      const highest = memory.reduce((a, b) => (b.rss > a.rss ? b : a));
      c.add('loadedRssMB', 'meshlet', highest.rss);
      // How much of it is the node binary's mapped code rather than the ztunnel's own allocations.
      addExtra(ctx, 'loadedRssAnonMB', highest.anon);
      addExtra(ctx, 'loadedRssFileMB', highest.file);
      ctx.log(`  ztunnels with ${p.pods} pods + ${p.idleConnections} connections: ${memory.map((m) => `${m.rss.toFixed(1)} (anon ${m.anon.toFixed(1)}, file ${m.file.toFixed(1)})`).join(' / ')} MiB`);
    });
  } else if (meshlet) {
    c.fail('loadedRssMB', 'meshlet', new Error('the pods did not enroll'));
  }
  await attempt(ctx, ['enrollPodsMs'], target, () => unenrollNamespace(sandbox, info));

  ctx.log(`run ${round + 1}/${p.runs}: ${p.podCycles} single-pod enrollments`);
  await attempt(ctx, ['enrollPodP99Ms'], target, async () => {
    const samples = await enrollPodCycles(sandbox, info, p.podCycles);
    const ms = samples.map((s) => s.ms);
    c.add('enrollPodP99Ms', 'meshlet', percentile(ms, 99)!);
    addExtra(ctx, 'enrollPodP50Ms', percentile(ms, 50)!);
    addExtra(ctx, 'enrollPodObservedP99Ms', percentile(samples.map((s) => s.observedMs), 99)!);
    ctx.log(`  one pod: p50 ${percentile(ms, 50)!.toFixed(1)} ms, p99 ${percentile(ms, 99)!.toFixed(1)} ms`);
  });
}

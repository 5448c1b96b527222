// The L7 section's warm-up, and one round of it: keep-alive throughput,
// then latency at a fixed 1,000 requests/s, each on every L7 path back to
// back in the same order (direct, meshlet-l4, waypoint, nginx); around each,
// the proxy's CPU time and anonymous memory (the waypoint's `meshlet
// waypoint` process, nginx's master and workers). As measure.ts: a failure
// is recorded against its figures, path and round, and the other paths go on.
import { addExtra, noteSocketErrors, pinnedAttempt, type Context } from './measure.ts';
import type { BenchPath } from './paths.ts';
import { measureAround } from './proc-stats.ts';
import { fixedRate, keepAlive } from './workloads.ts';

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/** Records why a path that could not be set up has no figures, once per figure and round, without measuring. */
function recordUnavailable(ctx: Context, figures: readonly string[], path: BenchPath, round: number, error: Error): void {
  for (const f of figures) ctx.collector.fail(f, path.id, round, error);
  ctx.log(`  ${path.id}: not measured (not set up)`);
}

/**
 * One unrecorded keep-alive run on every path before the first round: the
 * waypoint is JIT-compiled JavaScript, whose first seconds under load measure
 * V8's compilers rather than the proxy. The same for every path.
 */
export async function warmL7(ctx: Context, paths: readonly BenchPath[]): Promise<void> {
  ctx.log(`L7: warming every path with ${ctx.profile.loadSeconds} s of keep-alive (not recorded)`);
  for (const path of paths) {
    if (path.unavailable) continue;
    try {
      await path.pin();
      await keepAlive(path.client, ctx.profile.loadSeconds);
    } catch (err) {
      // The rounds record the path's failures; a warm-up that failed only leaves it cold.
      ctx.log(`  ${path.id}: warm-up failed: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}

export async function measureL7Round(ctx: Context, paths: readonly BenchPath[], round: number): Promise<void> {
  const { profile: p, collector: c } = ctx;
  const say = (what: string) => ctx.log(`round ${round + 1}/${p.rounds}, L7: ${what}`);

  say(`keep-alive, ${p.loadSeconds} s`);
  for (const path of paths) {
    const figures = ['l7KeepaliveRps', 'l7ProxyCpuPer1kReq', 'l7ProxyRssAnonLoadMB'];
    if (path.unavailable) {
      recordUnavailable(ctx, figures, path, round, path.unavailable);
      continue;
    }
    await pinnedAttempt(ctx, figures, path, round, async () => {
      const pids = await path.proxyPids();
      const { result, usage } = await measureAround(pids, () => keepAlive(path.client, p.loadSeconds));
      c.add('l7KeepaliveRps', path.id, round, result.requestsPerSecond);
      await noteSocketErrors(ctx, path, round, result);
      let cost = '';
      if (pids.length > 0) {
        const cpuPer1k = sum(usage.cpuSeconds) / (result.requests / 1000);
        c.add('l7ProxyCpuPer1kReq', path.id, round, cpuPer1k);
        c.add('l7ProxyRssAnonLoadMB', path.id, round, sum(usage.peakAnonMB));
        cost = ` (proxy ${cpuPer1k.toFixed(4)} CPU s per 1,000, RssAnon ${sum(usage.peakAnonMB).toFixed(1)} MiB)`;
      }
      ctx.log(`  ${path.id}: ${Math.round(result.requestsPerSecond)} req/s${cost}`);
    });
  }

  say(`latency at 1,000 req/s, ${p.latencySeconds} s`);
  for (const path of paths) {
    const figures = ['l7LatencyP50Ms', 'l7LatencyP99Ms', 'l7ProxyRssAnonMB'];
    if (path.unavailable) {
      recordUnavailable(ctx, figures, path, round, path.unavailable);
      continue;
    }
    await pinnedAttempt(ctx, figures, path, round, async () => {
      const pids = await path.proxyPids();
      const { result: r, usage } = await measureAround(pids, () => fixedRate(path.client, p.latencySeconds));
      c.add('l7LatencyP50Ms', path.id, round, r.p50 * 1000);
      c.add('l7LatencyP99Ms', path.id, round, r.p99 * 1000);
      addExtra(ctx, `l7FixedRateAchievedRps.${path.id}`, r.requestsPerSecond);
      let cost = '';
      if (pids.length > 0) {
        c.add('l7ProxyRssAnonMB', path.id, round, sum(usage.peakAnonMB));
        // What the proxy costs at a steady rate, beside the keep-alive figure's cost at full load.
        addExtra(ctx, `l7ProxyCpuPer1kReqAt1000.${path.id}`, sum(usage.cpuSeconds) / (r.requests / 1000));
        cost = `, proxy RssAnon ${sum(usage.peakAnonMB).toFixed(1)} MiB`;
      }
      ctx.log(`  ${path.id}: p50 ${(r.p50 * 1000).toFixed(2)} ms, p99 ${(r.p99 * 1000).toFixed(2)} ms at ${Math.round(r.requestsPerSecond)} req/s${cost}`);
    });
  }
}

// `npm run bench [-- --quick] [--only enrollment|l7] [--rounds N] [--out DIR]`:
// issue 4's benchmark and issue 11's L7 section. Builds a two-node sandbox
// with a per-run name, measures every workload on the L4 section's paths
// (direct, meshlet, haproxy-mtls) and then the L7 section's (direct,
// meshlet-l4, waypoint, nginx) in interleaved rounds with the clients,
// servers and proxies pinned to their nodes' CPUs, writes <date>.json,
// latest.json and latest.md to the output directory and prints the tables.
// The sandbox is removed on success, failure and SIGINT/SIGTERM/SIGHUP.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeAdminClients } from '../../cli/admin-client.ts';
import { MeshletError } from '../../lib/core/errors.ts';
import { sandboxApply, sandboxDown, sandboxStatus, sandboxUp, type SandboxInfo } from '../../sandbox/api.ts';
import { allowedCpus, planCpus, type CpuPlan } from './cpus.ts';
import { BenchInterruptedError } from './errors.ts';
import { machineInfo } from './machine.ts';
import { measureL7Round, warmL7 } from './l7-measure.ts';
import { prepareL7, setupL7Paths } from './l7-paths.ts';
import { workloadManifest, NS_DIRECT, NS_MESH } from './manifest.ts';
import { createEnrollmentPods, measureEnrollmentRound, measureRound, recordStartRss, type Context } from './measure.ts';
import { parseOptions, USAGE, type BenchOptions } from './options.ts';
import { setupPaths, type MeshletTunnel, type Paths } from './paths.ts';
import { Collector, figureDefs, judgeTargets, renderMarkdown, summarize, type BenchResults, type FigureDef, type TargetResult } from './report.ts';
import { median, round } from './stats.ts';
import { wwwLayout, writeWww } from './www.ts';

/** The bench's own files (nginx configs and content, haproxy's and nginx's certificates), named after its sandbox. */
const benchDirOf = (sandbox: string): string => join(tmpdir(), `meshlet-bench-${sandbox}`);

async function bench(opts: BenchOptions, onPaths: (paths: Paths) => void): Promise<BenchResults> {
  const { profile, name, log } = opts;
  const machine = await machineInfo();
  const started = new Date();
  log(`${profile.mode} run in sandbox ${name}: ${profile.rounds} round(s), ${machine.nproc} CPUs, load ${machine.loadStart.toFixed(2)}`);

  await sandboxUp({ name, nodes: 2, readyTimeoutMs: 60_000, log: (l) => log(`sandbox: ${l}`) });
  let info = await sandboxStatus(name);
  const ctx: Context = { profile, collector: new Collector(), extra: new Map(), notes: [], log };
  const restartsBefore = info.nodes.map((n) => n.ztunnelRestarts ?? 0);
  let traffic: TrafficRun | undefined;
  if (opts.only === 'enrollment') {
    await createEnrollmentPods(profile, name, log);
    info = await sandboxStatus(name);
    for (let r = 0; r < profile.rounds; r++) await measureEnrollmentRound(ctx, name, info, undefined, r);
  } else {
    traffic = await measureTraffic(opts, ctx, info, onPaths);
    info = traffic.info;
  }
  const plan = traffic?.plan;
  const meshletTunnel = traffic?.meshletTunnel ?? 'unknown';
  const waypointProblem = traffic?.waypointProblem;
  const restartsAfter = (await sandboxStatus(name)).nodes.map((n) => n.ztunnelRestarts ?? 0);

  const defs = figureDefs(profile);
  const figures = summarize(defs, ctx.collector, profile.rounds);
  const notes: string[] = [
    `Clients, server and proxies share this machine's ${machine.nproc} CPUs with whatever else runs on it: figures compare paths within one run, not with other machines.`,
    `hey prints latencies with 0.1 ms resolution.${opts.only === undefined ? ' haproxy runs with its defaults (one process, a thread per CPU it may run on, TLS session resumption to its peer).' : ''}`,
  ];
  if (opts.only !== 'enrollment') notes.push("nginx in the L7 section runs one worker per CPU it is pinned to (worker_processes auto on a host of that size) and keeps up to 64 idle TLS connections to its backends; the waypoint's figures are those of the one `meshlet waypoint` process its Deployment runs.");
  if (waypointProblem) notes.push(waypointProblem.split('\n')[0]!);
  if (plan && new Set(plan.byNode).size < plan.byNode.length) notes.push(`only CPU ${plan.byNode[0]} may be used: the nodes share it, so the pinning separates nothing`);
  if (restartsAfter.some((v, i) => v !== restartsBefore[i])) notes.push(`a ztunnel restarted during the run (restarts ${restartsBefore.join(',')} → ${restartsAfter.join(',')}): its figures may mix two processes`);
  if (opts.only) notes.push(`--only ${opts.only}: the other figures were not measured`);
  if (profile.mode === 'quick') notes.push('quick run: targets are judged on shortened workloads and fewer pods, for a smoke check only');
  notes.push(...ctx.notes);
  const extra: Record<string, number | null> = {};
  for (const [k, v] of ctx.extra) extra[k] = round(median(v) ?? Number.NaN, 2);
  return {
    schema: 2,
    date: started.toISOString(),
    mode: profile.mode,
    profile,
    sandbox: name,
    meshletTunnel,
    machine: { ...machine, loadEnd: loadavg()[0]! },
    cpus: plan ? Object.fromEntries(info.nodes.map((n, i) => [n.name, plan!.byNode[i]!])) : null,
    figures,
    targets: shownTargets(opts, judgeTargets(figures, profile)),
    extra,
    notes,
  };
}

interface TrafficRun {
  info: SandboxInfo;
  plan: CpuPlan;
  meshletTunnel: MeshletTunnel;
  /** Why the waypoint path could not be set up, if it could not. */
  waypointProblem?: string;
}

/**
 * The traffic sections: the L4 paths (unless `--only l7`) and the L7 ones
 * set up, then measured round by round (each round the L4 section, then the
 * L7 one), then the enrollment rounds on the L4 meshlet path.
 */
async function measureTraffic(opts: BenchOptions, ctx: Context, info: SandboxInfo, onPaths: (paths: Paths) => void): Promise<TrafficRun> {
  const { profile, name, log } = opts;
  const withL4 = opts.only === undefined;
  // Outside the sandbox's run dir: pods see that hidden (node credentials live there), and nginx reads its files here.
  const benchDir = benchDirOf(name);
  const www = wwwLayout(benchDir);
  await writeWww(www, withL4 ? [NS_DIRECT, NS_MESH] : [], withL4 ? profile.transferBytes : 0);
  const plan = planCpus(await allowedCpus(), info.nodes.length);
  log(`CPUs: ${info.nodes.map((n, i) => `${n.name} ${plan.byNode[i]}`).join(', ')} (client, server and proxies of each node, on every path)`);
  if (withL4) await sandboxApply(name, workloadManifest(www.confFor));
  log('L7: backends, routes, the waypoint Gateway and the nginx proxy');
  const prepared = await prepareL7(name, info, plan, benchDir, www.root);
  // Every pod before any traffic: enrolling them is a figure of its own, not noise in the throughput runs.
  // After the waypoint is placed, so that no node is cordoned while the scheduler spreads them.
  if (withL4) await createEnrollmentPods(profile, name, log);
  const ready = await sandboxStatus(name);
  let paths: Paths | undefined;
  if (withL4) {
    paths = await setupPaths(name, ready, benchDir, plan);
    onPaths(paths);
    log('paths ready: direct, meshlet (tunnelled), haproxy-mtls (client certificate verified)');
  }
  const l7 = await setupL7Paths(name, ready, plan, prepared, log);
  const waypointProblem = l7.all.find((p) => p.id === 'waypoint')?.unavailable?.message;
  log(`L7 paths ready: direct, meshlet-l4 (tunnelled, no waypoint), ${waypointProblem === undefined ? 'waypoint (90/10 seen through it)' : 'waypoint NOT SET UP (its figures are recorded as failed)'}, nginx (90/10 over mutual TLS)`);

  if (paths) await recordStartRss(ctx, paths.all);
  await recordStartRss(ctx, l7.all);
  await warmL7(ctx, l7.all);
  for (let r = 0; r < profile.rounds; r++) {
    if (paths) await measureRound(ctx, paths.all, r);
    await measureL7Round(ctx, l7.all, r);
  }
  if (paths) for (let r = 0; r < profile.rounds; r++) await measureEnrollmentRound(ctx, name, ready, paths.byId('meshlet'), r);
  return { info: ready, plan, meshletTunnel: paths?.meshletTunnel ?? 'unknown', ...(waypointProblem === undefined ? {} : { waypointProblem }) };
}

const ENROLLMENT_FIGURES: ReadonlySet<string> = new Set(['enrollPodsMs', 'enrollPodP99Ms']);
const ENROLLMENT_TARGETS: ReadonlySet<string> = new Set(['enrollPod', 'enrollPods']);

/** The figures the table shows: all of them, or those of the `--only` group. */
function shownFigures(opts: BenchOptions): FigureDef[] {
  const defs = figureDefs(opts.profile);
  if (opts.only === 'enrollment') return defs.filter((d) => ENROLLMENT_FIGURES.has(d.id));
  if (opts.only === 'l7') return defs.filter((d) => d.section === 'l7');
  return defs;
}

/** The targets judged: all, or those of the `--only` group. */
function shownTargets(opts: BenchOptions, targets: TargetResult[]): TargetResult[] {
  if (opts.only === 'enrollment') return targets.filter((t) => ENROLLMENT_TARGETS.has(t.id));
  if (opts.only === 'l7') return targets.filter((t) => t.section === 'l7');
  return targets;
}

/** Writes <date>.json, and latest.json/latest.md unless `partial` (an --only run must not replace a whole run's latest). */
async function writeResults(outDir: string, results: BenchResults, markdown: string, partial: boolean): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const dated = join(outDir, `${results.date.slice(0, 19).replaceAll(':', '-')}.json`);
  await writeFile(dated, json);
  if (partial) return dated;
  await writeFile(join(outDir, 'latest.json'), json);
  await writeFile(join(outDir, 'latest.md'), markdown);
  return dated;
}

async function main(): Promise<number> {
  let opts: BenchOptions | 'help';
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { name, log } = opts;
  let paths: Paths | undefined;
  let teardown: Promise<void> | undefined;
  // One teardown whoever asks first (the run's end or a signal).
  const down = (): Promise<void> => (teardown ??= (async () => {
    paths?.stop();
    log(`removing sandbox ${name}`);
    await sandboxDown(name);
    await rm(benchDirOf(name), { recursive: true, force: true });
    await closeAdminClients();
  })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(new BenchInterruptedError(signal).message);
    // Twice: a `sandbox up` still running may have created something after the first pass listed what to remove.
    void down()
      .then(() => sandboxDown(name))
      .catch((err: unknown) => log(`teardown failed: ${(err as Error).message}; run \`meshlet sandbox down --name ${name}\``))
      .finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15)));
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  try {
    const results = await bench(opts, (p) => (paths = p));
    await down();
    const defs = shownFigures(opts);
    const markdown = renderMarkdown(results, defs);
    const partial = opts.only !== undefined;
    const dated = await writeResults(opts.outDir, results, markdown, partial);
    process.stdout.write(markdown);
    log(`wrote ${dated}${partial ? '' : ', latest.json and latest.md'}`);
    const shown = new Set(defs.map((d) => d.id));
    const missing = Object.entries(results.figures).filter(([id]) => shown.has(id)).flatMap(([id, f]) => Object.entries(f.paths).filter(([, p]) => p.applicable && p.median === null).map(([path]) => `${id}/${path}`));
    if (missing.length > 0) {
      log(`no figure for: ${missing.join(', ')}`);
      return 1;
    }
    return 0;
  } catch (err) {
    // undici's "fetch failed" says why only in its cause.
    const cause = (err as { cause?: unknown }).cause;
    log(`failed: ${err instanceof MeshletError ? `${err.code}: ` : ''}${(err as Error).stack ?? String(err)}${cause === undefined ? '' : `\ncaused by: ${String(cause)}`}`);
    return 1;
  } finally {
    await down().catch((err: unknown) => log(`teardown failed: ${(err as Error).message}; run \`meshlet sandbox down --name ${name}\``));
  }
}

process.exitCode = await main();

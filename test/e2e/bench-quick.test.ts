// The benchmark harness (issue 4, and issue 11's L7 section): `scripts/bench/run.ts
// --quick` as a subprocess into a temporary --out, on a real two-node
// sandbox. Checks that every figure of both sections exists for every path
// in every round (the waypoint's too: a waypoint pod the sandbox runs), that
// each ratio is summarised over the rounds, that the tables render, and that
// the run left nothing behind. No timing assertions: the quick run only
// proves the harness works. Also the readers of wrk/hey/curl output, on real
// output.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { WorkloadError } from '../../scripts/bench/errors.ts';
import { QUICK } from '../../scripts/bench/options.ts';
import { parseCurl, parseHey, parseWrk } from '../../scripts/bench/parse.ts';
import { L7_PATH_IDS, PATH_IDS } from '../../scripts/bench/paths.ts';
import { ALL_PATH_IDS, figureDefs, SECTIONS, type BenchResults } from '../../scripts/bench/report.ts';
import { leftovers, REPO, runName } from '../support/harness.ts';

const NAME = runName('bq');
const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Past this the bench is stopped with SIGTERM, which must still tear the sandbox down (a waypoint that never gets ready costs its 90 s wait). */
const BENCH_LIMIT_MS = 420_000;

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function runBench(args: readonly string[]): Promise<Finished> {
  const child = spawn(process.execPath, [join(REPO, 'scripts/bench/run.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const timer = setTimeout(() => child.kill('SIGTERM'), BENCH_LIMIT_MS);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

describe('npm run bench -- --quick', { timeout: 450_000 }, () => {
  test('measures every figure on every path, renders the table and leaves nothing behind', async (t) => {
    const out = await mkdtemp(join(tmpdir(), 'meshlet-bench-'));
    t.after(() => rm(out, { recursive: true, force: true }));

    const r = await runBench(['--quick', '--out', out, '--name', NAME]);
    assert.deepEqual(await leftovers(NAME), [], 'the bench left something of its sandbox behind');
    assert.equal(r.code, 0, `bench failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);

    const files = (await readdir(out)).sort();
    const dated = files.filter((f) => /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.json$/.test(f));
    assert.equal(dated.length, 1, `files written: ${files.join(', ')}`);
    assert.ok(files.includes('latest.json') && files.includes('latest.md'), `files written: ${files.join(', ')}`);
    const latest = await readFile(join(out, 'latest.json'), 'utf8');
    assert.equal(await readFile(join(out, dated[0]!), 'utf8'), latest);

    const results = JSON.parse(latest) as BenchResults;
    assert.equal(results.schema, 2);
    assert.equal(results.mode, 'quick');
    assert.equal(results.sandbox, NAME);
    assert.equal(results.profile.rounds, QUICK.rounds);
    // The comparison with haproxy-mtls is only fair if meshlet paid for mutual TLS too.
    assert.equal(results.meshletTunnel, 'mutual_tls',
      `the meshlet path was measured with security "${results.meshletTunnel}" (node-1's ztunnel flow record for the probe), not mutual TLS: the figures compare cleartext or an unknown tunnel with haproxy-mtls`);
    assert.ok(results.machine.nproc >= 1 && results.machine.cpuModel !== '' && results.machine.kernel !== '');
    // Every node's client or server and proxy were pinned, each node to CPUs of its own where there are two or more.
    assert.ok(results.cpus !== null, 'no CPU placement recorded');
    assert.deepEqual(Object.keys(results.cpus).sort(), ['node-1', 'node-2']);
    for (const list of Object.values(results.cpus)) assert.match(list, /^\d+(,\d+)*$/);
    if (results.machine.nproc >= 2) assert.notEqual(results.cpus['node-1'], results.cpus['node-2']);
    const defs = figureDefs(QUICK);
    assert.deepEqual(Object.keys(results.figures).sort(), defs.map((d) => d.id).sort());
    for (const def of defs) {
      const figure = results.figures[def.id]!;
      assert.equal(figure.section, def.section, `${def.id}: section`);
      for (const path of ALL_PATH_IDS) {
        const cell = figure.paths[path];
        assert.ok(cell, `${def.id} has no entry for ${path}`);
        assert.equal(cell.applicable, def.paths.includes(path), `${def.id} on ${path}: applicable`);
        if (!cell.applicable) {
          assert.equal(cell.median, null);
          continue;
        }
        assert.deepEqual(cell.errors, [], `${def.id} on ${path} failed`);
        assert.ok(typeof cell.median === 'number' && Number.isFinite(cell.median) && cell.median >= 0, `${def.id} on ${path}: median ${cell.median}`);
        assert.equal(cell.rounds.length, QUICK.rounds, `${def.id} on ${path}: one entry per round`);
        assert.ok(cell.rounds.every((v) => typeof v === 'number'), `${def.id} on ${path}: a round without a value: ${JSON.stringify(cell.rounds)}`);
        assert.deepEqual(cell.samples, cell.rounds);
      }
      for (const ratio of SECTIONS.flatMap((section) => section.ratios)) {
        const s = figure.ratioRounds[ratio.id];
        if (!def.paths.includes(ratio.of) || !def.paths.includes(ratio.to)) {
          assert.equal(s, null, `${def.id}: ${ratio.id} without both paths`);
          continue;
        }
        assert.ok(s, `${def.id}: no ${ratio.id} over the rounds`);
        assert.equal(s.rounds.length, QUICK.rounds, `${def.id}: ${ratio.id} per round`);
        assert.ok(s.min <= s.median && s.median <= s.max, `${def.id}: ${ratio.id} ${JSON.stringify(s)}`);
        assert.equal(figure.ratios[ratio.id], s.median, `${def.id}: ${ratio.id} is the median of the rounds' ratios`);
      }
    }
    assert.equal(results.targets.length, 11);
    assert.deepEqual(results.targets.filter((t) => t.section === 'l7').map((t) => t.id), ['waypointKeepalive', 'waypointP50Added', 'waypointRss']);
    for (const target of results.targets) assert.equal(typeof target.pass, 'boolean', `target ${target.id} was not judged`);
    // The L7 proxies' costs were read from their own processes: some CPU, some memory of their own.
    for (const path of ['waypoint', 'nginx'] as const) {
      assert.ok(results.figures.l7ProxyCpuPer1kReq!.paths[path].median! > 0, `${path}: no CPU time read`);
      assert.ok(results.figures.l7ProxyRssAnonMB!.paths[path].median! > 0, `${path}: no RssAnon read`);
    }
    const p50Added = results.targets.find((t) => t.id === 'waypointP50Added')!;
    assert.ok(p50Added.spread && p50Added.spread.min <= p50Added.value! && p50Added.value! <= p50Added.spread.max, `waypointP50Added ${JSON.stringify(p50Added)}`);

    const markdown = await readFile(join(out, 'latest.md'), 'utf8');
    assert.equal(r.stdout, markdown, 'the table printed is the one written');
    assert.match(markdown, /^\| figure \| unit \| direct \| meshlet \| haproxy-mtls \| meshlet ÷ haproxy \| meshlet ÷ direct \|$/m);
    assert.match(markdown, /^\| figure \| unit \| direct \| meshlet-l4 \| waypoint \| nginx \| waypoint ÷ nginx \| waypoint ÷ meshlet-l4 \|$/m);
    assert.match(markdown, /^\| target \(issue 11\) \| waypoint \| result \|$/m);
    assert.match(markdown, new RegExp(`Machine: ${results.machine.nproc} × `));
    assert.match(markdown, /meshlet's HBONE between the ztunnels: HTTP\/2 CONNECT over mutual TLS 1\.3\./, 'the table says what meshlet was measured with');
    assert.match(markdown, new RegExp(`${QUICK.rounds} rounds, each running every workload on every path in turn \\(${PATH_IDS.join(', ')}, then again\\)`), 'the table says how the paths were measured');
    assert.match(markdown, new RegExp(`the L7 section's paths take their turn after the L4 section's \\(${L7_PATH_IDS.join(', ')}, then again\\)`), 'the table says how the L7 paths were measured');
    assert.match(markdown, /Pinned with taskset, the same on every path: .*node-1 on CPU \d[\d,]*, node-2 on CPU \d[\d,]*/, 'the table says where the processes ran');
    // Ratio columns: min / median / max over the rounds.
    for (const id of ['keepaliveRps', 'l7KeepaliveRps']) {
      assert.match(markdown, new RegExp(`^\\| ${escapeRegExp(results.figures[id]!.title)} \\|.* \\| [\\d.]+ / [\\d.]+ / [\\d.]+ \\| [\\d.]+ / [\\d.]+ / [\\d.]+ \\|$`, 'm'));
    }
    for (const def of defs) assert.ok(markdown.includes(`| ${def.title} |`), `the table has no row for ${def.id}`);
    for (const target of results.targets) assert.match(markdown, new RegExp(`\\| ${escapeRegExp(target.text)} \\|.*\\| (pass|\\*\\*miss\\*\\*) \\|`));
  });
});

describe('bench output readers', () => {
  test('wrk', () => {
    const out = `Running 1s test @ http://127.0.0.1:18999/1k
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   236.25us  292.82us   4.36ms   97.44%
    Req/Sec    38.13k     5.04k   41.80k    85.00%
  Latency Distribution
     50%  189.00us
     99%    1.73ms
  75813 requests in 1.00s, 91.39MB read
Requests/sec:  75788.22
Transfer/sec:     91.36MB
`;
    assert.deepEqual(parseWrk(out), { requestsPerSecond: 75788.22, requests: 75813 });
    // A stray dropped connection leaves the figure and is named for the report's notes; more than one in a thousand requests fails the run.
    const withErrors = (line: string) => out.replace('Requests/sec', `  ${line}\nRequests/sec`);
    const stray = 'Socket errors: connect 0, read 3, write 0, timeout 0';
    assert.deepEqual(parseWrk(withErrors(stray)), { requestsPerSecond: 75788.22, requests: 75813, socketErrors: stray });
    assert.throws(() => parseWrk(withErrors('Socket errors: connect 0, read 70, write 0, timeout 6')), (err: unknown) =>
      err instanceof WorkloadError && err.code === 'MESHLET_BENCH_WORKLOAD' && /read 70, write 0, timeout 6 in 75813 requests/.test(err.message));
    assert.throws(() => parseWrk(out.replace('Requests/sec', '  Non-2xx or 3xx responses: 12\nRequests/sec')), /12 responses were not 2xx/);
    assert.throws(() => parseWrk('unable to connect to 10.244.2.2:8080 Connection refused'), /unreadable output/);
  });

  test('hey', () => {
    const out = `
Summary:
  Total:	1.0070 secs
  Requests/sec:	993.0206

Latency distribution:
  10% in 0.0001 secs
  50% in 0.0002 secs
  95% in 0.0006 secs
  99% in 0.0014 secs

Status code distribution:
  [200]	1000 responses
`;
    assert.deepEqual(parseHey(out), { requestsPerSecond: 993.0206, requests: 1000, p50: 0.0002, p99: 0.0014 });
    assert.throws(() => parseHey(out.replace('[200]\t1000', '[404]\t1000')), /non-200 responses: 1000×404/);
    assert.throws(() => parseHey(`${out}\nError distribution:\n  [3]\tGet "http://10.244.2.2:8080/1k": dial tcp: connection refused\n`), /requests failed/);
  });

  test('curl', () => {
    assert.deepEqual(parseCurl('200 1048576 350000000.000', 1048576), { bytesPerSecond: 350_000_000, bytes: 1048576 });
    assert.throws(() => parseCurl('200 1000 350000000', 1048576), /got 1000 bytes/);
    assert.throws(() => parseCurl('503 0 0', 0), /HTTP 503/);
  });
});

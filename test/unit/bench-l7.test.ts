// The bench's L7 section without a sandbox: the objects it applies (the
// waypoint's route, the Services and the Gateway), nginx's config in the
// waypoint's place, the check that a path took its route, and how its
// figures become ratios, differences and targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { FULL, parseOptions, QUICK } from '../../scripts/bench/options.ts';
import { gatewayManifest, l7Manifest, NS_L7_MESH, proxyPodManifest } from '../../scripts/bench/l7-manifest.ts';
import { routeProblem } from '../../scripts/bench/l7-paths.ts';
import { l7Layout, writeProxyConf } from '../../scripts/bench/l7-www.ts';
import { Collector, figureDefs, judgeTargets, renderMarkdown, summarize, type BenchResults } from '../../scripts/bench/report.ts';

type Doc = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown> };
const docs = (yaml: string): Doc[] => parseAllDocuments(yaml).map((d) => d.toJSON() as Doc);

test('the waypoint path: Service web bound to the waypoint, split 90/10 with retries; web-v1 takes no waypoint', () => {
  const objects = docs(l7Manifest((ns, v) => `/conf/${ns}-${v}`, 'node-1', 'node-2'));
  const find = (kind: string, name: string, ns = NS_L7_MESH) => objects.find((o) => o.kind === kind && o.metadata.name === name && o.metadata.namespace === ns);
  assert.equal(find('Service', 'web')?.metadata.labels?.['istio.io/use-waypoint'], 'waypoint');
  assert.equal(find('Service', 'web-v1')?.metadata.labels?.['istio.io/use-waypoint'], undefined);
  const vs = find('VirtualService', 'web')!.spec as { http: { retries: { attempts: number }; route: { destination: { subset: string }; weight: number }[] }[] };
  assert.deepEqual(vs.http[0]!.route.map((r) => [r.destination.subset, r.weight]), [['v1', 90], ['v2', 10]]);
  assert.ok(vs.http[0]!.retries.attempts > 0);
  const dr = find('DestinationRule', 'web')!.spec as { subsets: { name: string; labels: Record<string, string> }[] };
  assert.deepEqual(dr.subsets.map((s) => s.labels.version), ['v1', 'v2']);
  // Enrolled on the mesh side only.
  const namespaceLabels = (name: string) => objects.find((o) => o.kind === 'Namespace' && o.metadata.name === name)?.metadata.labels;
  assert.equal(namespaceLabels(NS_L7_MESH)?.['istio.io/dataplane-mode'], 'ambient');
  assert.deepEqual(namespaceLabels('bench-l7-direct'), {});

  const [gateway] = docs(gatewayManifest());
  assert.deepEqual(gateway!.spec, { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] });
  const proxy = docs(proxyPodManifest('/conf/proxy', 'node-2')).find((o) => o.kind === 'Pod')!;
  assert.equal((proxy.spec as { nodeName: string }).nodeName, 'node-2');
});

test('nginx in the waypoint\'s place: weights 90/10, mutual TLS 1.3 to the backends, kept-alive upstreams, its own header', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-l7-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = l7Layout(dir);
  await writeProxyConf(files, { v1: '10.244.2.5', v2: '10.244.2.6' }, 1);
  const conf = await readFile(files.proxyConf, 'utf8');
  assert.match(conf, /^worker_processes 1;$/m);
  assert.match(conf, /server 10\.244\.2\.5:8443 weight=90;\n\s+server 10\.244\.2\.6:8443 weight=10;/);
  assert.match(conf, /proxy_pass https:\/\/web;/);
  assert.match(conf, /proxy_ssl_protocols TLSv1\.3;/);
  assert.match(conf, /proxy_ssl_verify on;/);
  assert.match(conf, /proxy_ssl_certificate /);
  assert.match(conf, /keepalive 64;/);
  assert.match(conf, /proxy_next_upstream error timeout http_503;/);
  assert.match(conf, /add_header x-bench-route nginx always;/);
});

const samples = (v1: number, v2: number, route: string, scheme = 'http') => [
  ...Array.from({ length: v1 }, () => ({ status: '200', route, backend: 'v1', scheme })),
  ...Array.from({ length: v2 }, () => ({ status: '200', route, backend: 'v2', scheme })),
];

test('a path takes its route only when every response shows it and the split is 90/10', () => {
  assert.equal(routeProblem(samples(181, 19, 'waypoint'), { route: 'waypoint', scheme: 'http', backends: 'split' }), undefined);
  assert.match(routeProblem(samples(100, 100, 'waypoint'), { route: 'waypoint', scheme: 'http', backends: 'split' })!, /100 v1, 100 v2 of 200, not 90\/10/);
  assert.match(routeProblem(samples(200, 0, 'waypoint'), { route: 'waypoint', scheme: 'http', backends: 'split' })!, /not 90\/10/);
  // Went around the waypoint: the backends answered, but without the route's header.
  assert.match(routeProblem(samples(180, 20, ''), { route: 'waypoint', scheme: 'http', backends: 'split' })!, /200 of 200 responses lack x-bench-route: waypoint/);
  // nginx that spoke plaintext to its backends.
  assert.match(routeProblem(samples(180, 20, 'nginx', 'http'), { route: 'nginx', scheme: 'https', backends: 'split' })!, /reached the backend by http, not https/);
  assert.match(routeProblem(samples(20, 0, 'nginx'), { route: '', scheme: 'http', backends: 'v1' })!, /a proxy answered/);
  assert.match(routeProblem([{ status: '503', route: '', backend: '', scheme: '' }], { route: '', scheme: 'http', backends: 'v1' })!, /1 of 1 responses were not 200 \(503\)/);
});

test('L7 targets: waypoint ÷ nginx and the p50 the waypoint adds over meshlet L4, per round; its RssAnon at 1,000 req/s', () => {
  const c = new Collector();
  const add = (figure: string, values: Record<string, number[]>) => {
    for (const [path, list] of Object.entries(values)) list.forEach((v, round) => c.add(figure, path as 'waypoint', round, v));
  };
  add('l7KeepaliveRps', { direct: [30000, 30000, 30000], 'meshlet-l4': [12000, 12000, 12000], waypoint: [6000, 8000, 9000], nginx: [10000, 10000, 10000] });
  add('l7LatencyP50Ms', { direct: [0.3, 0.3, 0.3], 'meshlet-l4': [1.0, 1.2, 0.9], waypoint: [1.6, 2.6, 1.7], nginx: [0.9, 1.0, 1.1] });
  add('l7ProxyRssAnonMB', { waypoint: [40, 44, 42], nginx: [7, 7, 7] });
  const figures = summarize(figureDefs(QUICK), c, 3);
  assert.deepEqual(figures.l7KeepaliveRps!.ratioRounds.waypointToNginx, { min: 0.6, median: 0.8, max: 0.9, rounds: [0.6, 0.8, 0.9] });
  assert.equal(figures.l7KeepaliveRps!.ratioRounds.meshletToHaproxy, null, 'an L4 ratio means nothing in the L7 section');
  assert.equal(figures.keepaliveRps!.ratioRounds.waypointToNginx, null, 'nor an L7 ratio in the L4 section');
  assert.equal(figures.l7ProxyRssAnonMB!.paths.direct.applicable, false);

  const targets = new Map(judgeTargets(figures, QUICK).map((t) => [t.id, t]));
  const keepalive = targets.get('waypointKeepalive')!;
  assert.deepEqual({ section: keepalive.section, value: keepalive.value, spread: keepalive.spread, pass: keepalive.pass }, { section: 'l7', value: 0.8, spread: { min: 0.6, max: 0.9 }, pass: true });
  const p50 = targets.get('waypointP50Added')!;
  assert.deepEqual({ value: p50.value, spread: p50.spread, pass: p50.pass }, { value: 0.8, spread: { min: 0.6, max: 1.4 }, pass: true });
  assert.deepEqual({ value: targets.get('waypointRss')!.value, pass: targets.get('waypointRss')!.pass }, { value: 42, pass: true });
  assert.equal(targets.get('keepalive')!.section, 'l4');
});

test('an RSS limit the issue gives in MB is judged in MiB: 60 MB is 57.2 MiB', () => {
  const judged = (mib: number) => {
    const c = new Collector();
    c.add('l7ProxyRssAnonMB', 'waypoint', 0, mib);
    return judgeTargets(summarize(figureDefs(QUICK), c, 1), QUICK).find((t) => t.id === 'waypointRss')!;
  };
  assert.equal(judged(57.1).pass, true);
  assert.equal(judged(58).pass, false, '58 MiB is 60.8 MB');
  assert.match(judged(58).text, /60 MB \(57\.2 MiB\)/);
});

test('the L7 table has its own columns and targets, and a path that could not be set up is reported once', () => {
  const c = new Collector();
  for (let round = 0; round < 2; round++) {
    for (const path of ['direct', 'meshlet-l4', 'nginx'] as const) c.add('l7KeepaliveRps', path, round, 1000);
    for (const figure of ['l7KeepaliveRps', 'l7LatencyP50Ms']) c.fail(figure, 'waypoint', round, new Error('the waypoint path could not be set up: no pod\nlog lines'));
  }
  const defs = figureDefs(QUICK).filter((d) => d.section === 'l7');
  const figures = summarize(figureDefs(QUICK), c, 2);
  const results: BenchResults = {
    schema: 2, date: '2026-12-02T00:00:00.000Z', mode: 'quick', profile: { ...QUICK, rounds: 2 }, sandbox: 'b', meshletTunnel: 'mutual_tls',
    machine: { nproc: 2, cpuModel: 'cpu', kernel: 'k', loadStart: 0, memTotalMB: 1 }, cpus: { 'node-1': '1', 'node-2': '0' },
    figures, targets: judgeTargets(figures, QUICK).filter((t) => t.section === 'l7'), extra: {}, notes: [],
  };
  const md = renderMarkdown(results, defs);
  assert.match(md, /^## L7: direct, meshlet-l4, waypoint, nginx \(issue 11\)$/m);
  assert.doesNotMatch(md, /^## L4/m, 'the L4 section was not shown');
  assert.match(md, /^\| L7: HTTP keep-alive, 16 connections, 1 KiB \(wrk\) \| req\/s \| 1,000 \| 1,000 \| error \| 1,000 \| — \| — \|$/m);
  assert.match(md, /^\| target \(issue 11\) \| waypoint \| result \|$/m);
  const failed = md.split('\n').filter((l) => l.startsWith('- failed:'));
  assert.deepEqual(failed, ['- failed: l7KeepaliveRps, l7LatencyP50Ms on waypoint, round 1, 2: the waypoint path could not be set up: no pod']);
});

test('--only l7 runs the L7 section alone, with the profile it is given', () => {
  const opts = parseOptions(['--only', 'l7']);
  assert.ok(opts !== 'help');
  assert.equal(opts.only, 'l7');
  assert.deepEqual(opts.profile, FULL);
  const quick = parseOptions(['--quick', '--only', 'l7']);
  assert.ok(quick !== 'help');
  assert.deepEqual(quick.profile, QUICK);
});

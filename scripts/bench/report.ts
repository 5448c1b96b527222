// The bench's results: figure definitions, the JSON document, the targets
// from issue 4 and the Markdown table printed at the end.
import type { MachineInfo } from './machine.ts';
import type { Profile } from './options.ts';
import { PATH_IDS, type MeshletTunnel, type PathId } from './paths.ts';
import { median, round } from './stats.ts';

export interface FigureDef {
  id: string;
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  digits: number;
  /** Paths the figure means something on (a proxy's memory means nothing on direct). */
  paths: readonly PathId[];
}

const ALL = PATH_IDS;
const PROXIED: readonly PathId[] = ['meshlet', 'haproxy-mtls'];

export function figureDefs(p: Profile): FigureDef[] {
  return [
    { id: 'keepaliveRps', title: 'HTTP keep-alive, 16 connections, 1 KiB (wrk)', unit: 'req/s', better: 'higher', digits: 0, paths: ALL },
    { id: 'latencyP50Ms', title: 'p50 latency at 1,000 req/s (hey)', unit: 'ms', better: 'lower', digits: 2, paths: ALL },
    { id: 'latencyP99Ms', title: 'p99 latency at 1,000 req/s (hey)', unit: 'ms', better: 'lower', digits: 2, paths: ALL },
    { id: 'newConnRps', title: 'new connection per request (hey -disable-keepalive)', unit: 'req/s', better: 'higher', digits: 0, paths: ALL },
    { id: 'singleStreamMBps', title: `one ${sizeLabel(p.transferBytes)} transfer, one connection (curl)`, unit: 'MB/s', better: 'higher', digits: 1, paths: ALL },
    { id: 'proxyRssMB', title: 'proxy RSS during keep-alive, highest node', unit: 'MiB', better: 'lower', digits: 1, paths: PROXIED },
    { id: 'proxyCpuPer1kReq', title: 'proxy CPU per 1,000 keep-alive requests, both nodes', unit: 'CPU s', better: 'lower', digits: 4, paths: PROXIED },
    { id: 'idleConnRssMB', title: `proxy RSS with ${p.idleConnections} idle connections, highest node`, unit: 'MiB', better: 'lower', digits: 1, paths: PROXIED },
    { id: 'loadedRssMB', title: `ztunnel RSS, ${p.pods} enrolled pods + ${p.idleConnections} idle connections, highest node`, unit: 'MiB', better: 'lower', digits: 1, paths: ['meshlet'] },
    { id: 'enrollPodsMs', title: `enroll ${p.pods} pods by namespace label`, unit: 'ms', better: 'lower', digits: 1, paths: ['meshlet'] },
    { id: 'enrollPodP99Ms', title: `enroll one pod by its label, p99 of ${p.podCycles}`, unit: 'ms', better: 'lower', digits: 1, paths: ['meshlet'] },
  ];
}

const sizeLabel = (bytes: number): string => (bytes >= 1024 ** 3 ? `${bytes / 1024 ** 3} GiB` : `${bytes / 1024 ** 2} MiB`);

/** Samples and failures of one figure on one path, collected across runs. */
export interface Cell {
  samples: number[];
  errors: string[];
}

export class Collector {
  readonly #cells = new Map<string, Cell>();

  cell(figure: string, path: PathId): Cell {
    const key = `${figure}|${path}`;
    let c = this.#cells.get(key);
    if (!c) this.#cells.set(key, (c = { samples: [], errors: [] }));
    return c;
  }

  add(figure: string, path: PathId, value: number): void {
    this.cell(figure, path).samples.push(value);
  }

  fail(figure: string, path: PathId, err: unknown): void {
    this.cell(figure, path).errors.push(err instanceof Error ? err.message : String(err));
  }
}

export interface PathFigure {
  applicable: boolean;
  /** Median of the samples; null when not applicable or every run failed. */
  median: number | null;
  samples: number[];
  errors: string[];
}

export interface FigureResult {
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  paths: Record<PathId, PathFigure>;
  /** meshlet ÷ haproxy-mtls and meshlet ÷ direct, from this run's medians. */
  ratios: { meshletToHaproxy: number | null; meshletToDirect: number | null };
}

export interface TargetResult {
  id: string;
  text: string;
  value: number | null;
  /** The value's unit: "×" for ratios. */
  unit: string;
  limit: number;
  pass: boolean | null;
}

export interface BenchResults {
  schema: 1;
  date: string;
  mode: Profile['mode'];
  profile: Profile;
  sandbox: string;
  /** What carried meshlet's HBONE between the ztunnels in this run. */
  meshletTunnel: MeshletTunnel;
  machine: MachineInfo;
  figures: Record<string, FigureResult>;
  targets: TargetResult[];
  /** Figures beyond the issue's list, for reading where time goes. */
  extra: Record<string, number | null>;
  notes: string[];
}

const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : round(a / b, 3));

export function summarize(defs: readonly FigureDef[], collector: Collector): Record<string, FigureResult> {
  const figures: Record<string, FigureResult> = {};
  for (const def of defs) {
    const paths = {} as Record<PathId, PathFigure>;
    for (const path of PATH_IDS) {
      const applicable = def.paths.includes(path);
      const cell = collector.cell(def.id, path);
      const m = applicable ? median(cell.samples) : undefined;
      paths[path] = { applicable, median: m === undefined ? null : round(m, def.digits + 1), samples: cell.samples.map((s) => round(s, def.digits + 2)), errors: cell.errors };
    }
    figures[def.id] = {
      title: def.title, unit: def.unit, better: def.better, paths,
      ratios: { meshletToHaproxy: ratio(paths.meshlet.median, paths['haproxy-mtls'].median), meshletToDirect: ratio(paths.meshlet.median, paths.direct.median) },
    };
  }
  return figures;
}

/** The issue's targets, judged on this run's medians. */
export function judgeTargets(f: Record<string, FigureResult>, p: Profile): TargetResult[] {
  const m = (id: string, path: PathId): number | null => f[id]?.paths[path].median ?? null;
  const atLeast = (value: number | null, limit: number) => (value === null ? null : value >= limit);
  const atMost = (value: number | null, limit: number) => (value === null ? null : value <= limit);
  const p50Added = m('latencyP50Ms', 'meshlet') === null || m('latencyP50Ms', 'direct') === null ? null : round(m('latencyP50Ms', 'meshlet')! - m('latencyP50Ms', 'direct')!, 3);
  const p99 = m('latencyP99Ms', 'meshlet');
  const p99Haproxy = m('latencyP99Ms', 'haproxy-mtls');
  const targets: Omit<TargetResult, 'pass'>[] = [
    { id: 'keepalive', text: 'keep-alive req/s ≥ 1.0× haproxy-mtls', value: f.keepaliveRps!.ratios.meshletToHaproxy, unit: '×', limit: 1.0 },
    { id: 'newconn', text: 'new-connection req/s ≥ 1.5× haproxy-mtls', value: f.newConnRps!.ratios.meshletToHaproxy, unit: '×', limit: 1.5 },
    { id: 'stream', text: 'single-stream MB/s ≥ 0.8× haproxy-mtls', value: f.singleStreamMBps!.ratios.meshletToHaproxy, unit: '×', limit: 0.8 },
    { id: 'p99', text: "p99 at 1,000 req/s ≤ haproxy-mtls's p99", value: p99, unit: 'ms', limit: p99Haproxy ?? Number.NaN },
    { id: 'p50added', text: 'p50 at 1,000 req/s added over direct ≤ 0.5 ms', value: p50Added, unit: 'ms', limit: 0.5 },
    { id: 'rss', text: `ztunnel RSS ≤ 100 MB with ${p.pods} enrolled pods and ${p.idleConnections} open connections`, value: m('loadedRssMB', 'meshlet'), unit: 'MiB', limit: 100 },
    { id: 'enrollPod', text: 'enrollment p99 ≤ 100 ms per pod', value: m('enrollPodP99Ms', 'meshlet'), unit: 'ms', limit: 100 },
    { id: 'enrollPods', text: `enrollment of ${p.pods} pods ≤ 5 s`, value: m('enrollPodsMs', 'meshlet'), unit: 'ms', limit: 5000 },
  ];
  const higher = new Set(['keepalive', 'newconn', 'stream']);
  return targets.map((t) => ({ ...t, limit: Number.isNaN(t.limit) ? 0 : t.limit, pass: Number.isNaN(t.limit) ? null : higher.has(t.id) ? atLeast(t.value, t.limit) : atMost(t.value, t.limit) }));
}

const fmt = (v: number | null, digits: number): string =>
  v === null ? '—' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function cellText(pf: PathFigure, digits: number): string {
  if (!pf.applicable) return 'n/a';
  if (pf.median === null) return pf.errors.length ? 'error' : '—';
  return fmt(pf.median, digits);
}

const TUNNEL_TEXT: Record<MeshletTunnel, string> = {
  mutual_tls: 'HTTP/2 CONNECT over mutual TLS 1.3',
  plaintext: '**cleartext HTTP/2** (no workload certificates): the comparison with haproxy-mtls favours meshlet',
  unknown: 'not reported by the ztunnel (its flow records carry no `security`)',
};

export function renderMarkdown(r: BenchResults, defs: readonly FigureDef[]): string {
  const m = r.machine;
  const load = `load ${m.loadStart.toFixed(2)}${m.loadEnd === undefined ? '' : ` → ${m.loadEnd.toFixed(2)}`}`;
  const lines = [
    `# meshlet bench, ${r.date}`,
    '',
    `${r.mode === 'quick' ? '**Quick smoke run: 1 run, short durations, few pods; the figures are not the published ones.**' : `Median of ${r.profile.runs} runs per figure; ratios from this run's medians.`}`,
    '',
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memTotalMB} MiB, kernel ${m.kernel}, ${load} (1-minute average at start → end). Sandbox \`${r.sandbox}\`: client pod on node-1, server pod (nginx) on node-2.`,
    '',
    `meshlet's HBONE between the ztunnels: ${TUNNEL_TEXT[r.meshletTunnel]}.`,
    '',
    '| figure | unit | direct | meshlet | haproxy-mtls | meshlet ÷ haproxy | meshlet ÷ direct |',
    '|---|---|--:|--:|--:|--:|--:|',
  ];
  for (const def of defs) {
    const f = r.figures[def.id]!;
    lines.push(`| ${def.title} | ${def.unit} | ${PATH_IDS.map((p) => cellText(f.paths[p], def.digits)).join(' | ')} | ${fmt(f.ratios.meshletToHaproxy, 2)} | ${fmt(f.ratios.meshletToDirect, 2)} |`);
  }
  lines.push('', '| target (issue 4) | meshlet | result |', '|---|--:|:-:|');
  for (const t of r.targets) {
    const value = t.value === null ? '—' : `${fmt(t.value, t.unit === '×' ? 2 : t.unit === 'ms' ? 2 : 1)}${t.unit === '×' ? '×' : ` ${t.unit}`}`;
    const limit = t.id === 'p99' ? ` (haproxy ${fmt(t.limit, 2)} ms)` : '';
    lines.push(`| ${t.text} | ${value}${limit} | ${t.pass === null ? '—' : t.pass ? 'pass' : '**miss**'} |`);
  }
  const extras = Object.entries(r.extra).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`);
  if (extras.length > 0) lines.push('', `Other readings (medians): ${extras.join(', ')}.`);
  const failures = Object.entries(r.figures).flatMap(([id, f]) => PATH_IDS.flatMap((p) => f.paths[p].errors.map((e) => `${id} on ${p}: ${e}`)));
  if (r.notes.length || failures.length) {
    lines.push('');
    for (const n of r.notes) lines.push(`- ${n}`);
    for (const e of failures) lines.push(`- failed: ${e.split('\n')[0]}`);
  }
  return `${lines.join('\n')}\n`;
}

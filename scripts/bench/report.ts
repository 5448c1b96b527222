// The bench's results: figure definitions, the JSON document, the targets
// from issue 4 and the Markdown table printed at the end. Every figure is
// kept per round; paths are compared within each round (rounds.ts).
import type { MachineInfo } from './machine.ts';
import type { Profile } from './options.ts';
import { PATH_IDS, type MeshletTunnel, type PathId } from './paths.ts';
import { alignRounds, differenceOverRounds, ratioOverRounds, type Spread } from './rounds.ts';
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

/** A comparison of two paths: `of`'s figure ÷ `to`'s, round by round. */
export interface RatioDef {
  id: string;
  of: PathId;
  to: PathId;
  /** Column heading. */
  label: string;
}

export const RATIOS = [
  { id: 'meshletToHaproxy', of: 'meshlet', to: 'haproxy-mtls', label: 'meshlet ÷ haproxy' },
  { id: 'meshletToDirect', of: 'meshlet', to: 'direct', label: 'meshlet ÷ direct' },
] as const satisfies readonly RatioDef[];

export type RatioId = (typeof RATIOS)[number]['id'];

/** Values (by round) and failures of one figure on one path. */
export interface Cell {
  /** Position i is round i; a hole where that round failed. */
  rounds: (number | undefined)[];
  errors: string[];
}

export class Collector {
  readonly #cells = new Map<string, Cell>();

  cell(figure: string, path: PathId): Cell {
    const key = `${figure}|${path}`;
    let c = this.#cells.get(key);
    if (!c) this.#cells.set(key, (c = { rounds: [], errors: [] }));
    return c;
  }

  add(figure: string, path: PathId, round: number, value: number): void {
    this.cell(figure, path).rounds[round] = value;
  }

  fail(figure: string, path: PathId, round: number, err: unknown): void {
    this.cell(figure, path).errors.push(`round ${round + 1}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export interface PathFigure {
  applicable: boolean;
  /** Median over the rounds; null when not applicable or every round failed. */
  median: number | null;
  /** The rounds' values in round order, without the failed ones. */
  samples: number[];
  /** One entry per round, in order, null where it failed; empty when not applicable. */
  rounds: (number | null)[];
  errors: string[];
}

export interface FigureResult {
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  paths: Record<PathId, PathFigure>;
  /** Each ratio's median over the rounds (of the ratio within each round, not a ratio of medians). */
  ratios: Record<RatioId, number | null>;
  /** Each ratio as min / median / max over the rounds, with every round's ratio; null where no round had both paths. */
  ratioRounds: Record<RatioId, Spread | null>;
}

export interface TargetResult {
  id: string;
  text: string;
  /** The median over the rounds for a comparison of paths (ratio or difference), else the figure's median. */
  value: number | null;
  /** The value's unit: "×" for ratios. */
  unit: string;
  limit: number;
  /** For a comparison of paths: its lowest and highest round. */
  spread?: { min: number; max: number };
  pass: boolean | null;
}

export interface BenchResults {
  /** 2: figures per round, ratios per round (schema 1 had ratios of the runs' medians). */
  schema: 2;
  date: string;
  mode: Profile['mode'];
  profile: Profile;
  sandbox: string;
  /** What carried meshlet's HBONE between the ztunnels in this run. */
  meshletTunnel: MeshletTunnel;
  machine: MachineInfo;
  /** CPU list each node's client, server and proxy were pinned to, by node name; null when nothing was pinned (no traffic paths). */
  cpus: Record<string, string> | null;
  figures: Record<string, FigureResult>;
  targets: TargetResult[];
  /** Figures beyond the issue's list, for reading where time goes. */
  extra: Record<string, number | null>;
  notes: string[];
}

/** Each figure's per-round values, medians and the ratios of `RATIOS` per round, over `rounds` rounds. */
export function summarize(defs: readonly FigureDef[], collector: Collector, rounds: number): Record<string, FigureResult> {
  const figures: Record<string, FigureResult> = {};
  for (const def of defs) {
    const paths = {} as Record<PathId, PathFigure>;
    for (const path of PATH_IDS) {
      const applicable = def.paths.includes(path);
      const cell = collector.cell(def.id, path);
      const byRound = applicable ? alignRounds(cell.rounds, rounds).map((v) => (v === null ? null : round(v, def.digits + 2))) : [];
      const samples = byRound.filter((v): v is number => v !== null);
      const m = median(samples);
      paths[path] = { applicable, median: m === undefined ? null : round(m, def.digits + 1), samples, rounds: byRound, errors: cell.errors };
    }
    const ratioRounds = {} as Record<RatioId, Spread | null>;
    const ratios = {} as Record<RatioId, number | null>;
    for (const r of RATIOS) {
      ratioRounds[r.id] = ratioOverRounds(paths[r.of].rounds, paths[r.to].rounds);
      ratios[r.id] = ratioRounds[r.id]?.median ?? null;
    }
    figures[def.id] = { title: def.title, unit: def.unit, better: def.better, paths, ratios, ratioRounds };
  }
  return figures;
}

const spreadOf = (s: Spread | null | undefined): Pick<TargetResult, 'value' | 'spread'> => (s ? { value: s.median, spread: { min: s.min, max: s.max } } : { value: null });

/** The issue's targets: comparisons of paths judged on their median over the rounds, the rest on the figure's median. */
export function judgeTargets(f: Record<string, FigureResult>, p: Profile): TargetResult[] {
  const m = (id: string, path: PathId): number | null => f[id]?.paths[path].median ?? null;
  const rounds = (id: string, path: PathId): (number | null)[] => f[id]?.paths[path].rounds ?? [];
  const atLeast = (value: number | null, limit: number) => (value === null ? null : value >= limit);
  const atMost = (value: number | null, limit: number) => (value === null ? null : value <= limit);
  const p99 = m('latencyP99Ms', 'meshlet');
  const p99Haproxy = m('latencyP99Ms', 'haproxy-mtls');
  const targets: Omit<TargetResult, 'pass'>[] = [
    { id: 'keepalive', text: 'keep-alive req/s ≥ 1.0× haproxy-mtls', ...spreadOf(f.keepaliveRps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 1.0 },
    { id: 'newconn', text: 'new-connection req/s ≥ 1.5× haproxy-mtls', ...spreadOf(f.newConnRps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 1.5 },
    { id: 'stream', text: 'single-stream MB/s ≥ 0.8× haproxy-mtls', ...spreadOf(f.singleStreamMBps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 0.8 },
    { id: 'p99', text: "p99 at 1,000 req/s ≤ haproxy-mtls's p99", value: p99, unit: 'ms', limit: p99Haproxy ?? Number.NaN },
    { id: 'p50added', text: 'p50 at 1,000 req/s added over direct ≤ 0.5 ms', ...spreadOf(differenceOverRounds(rounds('latencyP50Ms', 'meshlet'), rounds('latencyP50Ms', 'direct'))), unit: 'ms', limit: 0.5 },
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

/** min / median / max over the rounds; the one value when there was one round. */
function spreadText(s: Spread | null, rounds: number): string {
  if (s === null) return '—';
  return rounds === 1 ? fmt(s.median, 2) : `${fmt(s.min, 2)} / ${fmt(s.median, 2)} / ${fmt(s.max, 2)}`;
}

/** How the figures were taken and how to read the columns. */
function methodText(r: BenchResults): string {
  const n = r.profile.rounds;
  const one = n === 1;
  const parts = [
    `${n} round${one ? '' : 's'}, each running every workload on every path in turn (${PATH_IDS.join(', ')}${one ? '' : ', then again'}), so paths are compared within a round.`,
    'Path columns: median over the rounds.',
    `Ratio columns: ${one ? "the round's ratio" : "min / median / max of the rounds' ratios"}.`,
    `Targets that compare paths are judged on the median of the rounds' ratios or differences${one ? '' : ' (lowest–highest round in brackets)'}.`,
  ];
  if (r.mode === 'quick') parts.unshift('**Quick smoke run: short workloads, few pods; the figures are not the published ones.**');
  return parts.join(' ');
}

function cpusText(cpus: BenchResults['cpus']): string {
  if (cpus === null) return 'No process pinned to CPUs (no traffic path was measured).';
  const placed = Object.entries(cpus).map(([node, list]) => `${node} on CPU ${list}`).join(', ');
  return `Pinned with taskset, the same on every path: each node's client or server pod processes and its proxy (ztunnel or haproxy), ${placed}; the rest of the sandbox is not pinned.`;
}

export function renderMarkdown(r: BenchResults, defs: readonly FigureDef[]): string {
  const m = r.machine;
  const load = `load ${m.loadStart.toFixed(2)}${m.loadEnd === undefined ? '' : ` → ${m.loadEnd.toFixed(2)}`}`;
  const rounds = r.profile.rounds;
  const lines = [
    `# meshlet bench, ${r.date}`,
    '',
    methodText(r),
    '',
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memTotalMB} MiB, kernel ${m.kernel}, ${load} (1-minute average at start → end). Sandbox \`${r.sandbox}\`: client pod on node-1, server pod (nginx) on node-2.`,
    '',
    cpusText(r.cpus),
    '',
    `meshlet's HBONE between the ztunnels: ${TUNNEL_TEXT[r.meshletTunnel]}.`,
    '',
    `| figure | unit | ${PATH_IDS.join(' | ')} | ${RATIOS.map((x) => x.label).join(' | ')} |`,
    `|---|---|${PATH_IDS.map(() => '--:|').join('')}${RATIOS.map(() => '--:|').join('')}`,
  ];
  for (const def of defs) {
    const f = r.figures[def.id]!;
    lines.push(`| ${def.title} | ${def.unit} | ${PATH_IDS.map((p) => cellText(f.paths[p], def.digits)).join(' | ')} | ${RATIOS.map((x) => spreadText(f.ratioRounds[x.id], rounds)).join(' | ')} |`);
  }
  lines.push('', '| target (issue 4) | meshlet | result |', '|---|--:|:-:|');
  for (const t of r.targets) {
    const digits = t.unit === '×' || t.unit === 'ms' ? 2 : 1;
    const value = t.value === null ? '—' : `${fmt(t.value, digits)}${t.unit === '×' ? '×' : ` ${t.unit}`}`;
    const range = t.spread && rounds > 1 ? ` (${fmt(t.spread.min, digits)}–${fmt(t.spread.max, digits)})` : '';
    const limit = t.id === 'p99' ? ` (haproxy ${fmt(t.limit, 2)} ms)` : '';
    lines.push(`| ${t.text} | ${value}${range}${limit} | ${t.pass === null ? '—' : t.pass ? 'pass' : '**miss**'} |`);
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

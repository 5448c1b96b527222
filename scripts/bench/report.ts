// The bench's results: figure definitions, the JSON document, the targets
// (issue 4's for the L4 section, issue 11's for the L7 one) and the Markdown
// tables printed at the end. Every figure is kept per round; paths are
// compared within each round (rounds.ts), and only within their section.
import type { MachineInfo } from './machine.ts';
import type { Profile } from './options.ts';
import { L7_PATH_IDS, PATH_IDS, type MeshletTunnel, type PathId } from './paths.ts';
import { alignRounds, differenceOverRounds, ratioOverRounds, type Spread } from './rounds.ts';
import { median, round } from './stats.ts';

/** The bench's sections: each has its own paths, ratios, table and targets. */
export type SectionId = 'l4' | 'l7';

export interface FigureDef {
  id: string;
  section: SectionId;
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  digits: number;
  /** Paths of its section the figure means something on (a proxy's memory means nothing on direct). */
  paths: readonly PathId[];
}

const ALL = PATH_IDS;
const PROXIED: readonly PathId[] = ['meshlet', 'haproxy-mtls'];
const L7_ALL = L7_PATH_IDS;
const L7_PROXIES: readonly PathId[] = ['waypoint', 'nginx'];

export function figureDefs(p: Profile): FigureDef[] {
  return [...l4FigureDefs(p).map((d) => ({ ...d, section: 'l4' as const })), ...l7FigureDefs().map((d) => ({ ...d, section: 'l7' as const }))];
}

function l4FigureDefs(p: Profile): Omit<FigureDef, 'section'>[] {
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

function l7FigureDefs(): Omit<FigureDef, 'section'>[] {
  return [
    { id: 'l7KeepaliveRps', title: 'L7: HTTP keep-alive, 16 connections, 1 KiB (wrk)', unit: 'req/s', better: 'higher', digits: 0, paths: L7_ALL },
    { id: 'l7LatencyP50Ms', title: 'L7: p50 latency at 1,000 req/s (hey)', unit: 'ms', better: 'lower', digits: 2, paths: L7_ALL },
    { id: 'l7LatencyP99Ms', title: 'L7: p99 latency at 1,000 req/s (hey)', unit: 'ms', better: 'lower', digits: 2, paths: L7_ALL },
    { id: 'l7ProxyCpuPer1kReq', title: 'L7 proxy CPU per 1,000 keep-alive requests (utime + stime)', unit: 'CPU s', better: 'lower', digits: 4, paths: L7_PROXIES },
    { id: 'l7ProxyRssAnonLoadMB', title: 'L7 proxy anonymous RSS (RssAnon) during keep-alive, peak', unit: 'MiB', better: 'lower', digits: 1, paths: L7_PROXIES },
    { id: 'l7ProxyRssAnonMB', title: 'L7 proxy anonymous RSS (RssAnon) at 1,000 req/s, peak', unit: 'MiB', better: 'lower', digits: 1, paths: L7_PROXIES },
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

/** The L4 section's ratios. */
export const RATIOS = [
  { id: 'meshletToHaproxy', of: 'meshlet', to: 'haproxy-mtls', label: 'meshlet ÷ haproxy' },
  { id: 'meshletToDirect', of: 'meshlet', to: 'direct', label: 'meshlet ÷ direct' },
] as const satisfies readonly RatioDef[];

/** The L7 section's ratios. */
export const L7_RATIOS = [
  { id: 'waypointToNginx', of: 'waypoint', to: 'nginx', label: 'waypoint ÷ nginx' },
  { id: 'waypointToMeshletL4', of: 'waypoint', to: 'meshlet-l4', label: 'waypoint ÷ meshlet-l4' },
] as const satisfies readonly RatioDef[];

type SectionRatio = (typeof RATIOS)[number] | (typeof L7_RATIOS)[number];
export type RatioId = SectionRatio['id'];

export interface SectionDef {
  id: SectionId;
  /** Heading of its part of the Markdown. */
  title: string;
  /** Its paths, in the order each round measures them. */
  paths: readonly PathId[];
  ratios: readonly SectionRatio[];
  /** The issue its targets come from, and the path they judge (the target table's column). */
  issue: number;
  judged: PathId;
}

export const SECTIONS: readonly SectionDef[] = [
  { id: 'l4', title: 'L4', paths: PATH_IDS, ratios: RATIOS, issue: 4, judged: 'meshlet' },
  { id: 'l7', title: 'L7', paths: L7_PATH_IDS, ratios: L7_RATIOS, issue: 11, judged: 'waypoint' },
];

/** The paths of both sections, each once (direct is in both). */
export const ALL_PATH_IDS: readonly PathId[] = [...new Set<PathId>(SECTIONS.flatMap((s) => s.paths))];
const ALL_RATIOS: readonly SectionRatio[] = SECTIONS.flatMap((s) => s.ratios);

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
  section: SectionId;
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  /** Every path of every section; those of other sections (and those it means nothing on) not applicable. */
  paths: Record<PathId, PathFigure>;
  /** Each ratio's median over the rounds (of the ratio within each round, not a ratio of medians); null for other sections' ratios. */
  ratios: Record<RatioId, number | null>;
  /** Each ratio as min / median / max over the rounds, with every round's ratio; null where no round had both paths. */
  ratioRounds: Record<RatioId, Spread | null>;
}

export interface TargetResult {
  id: string;
  section: SectionId;
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
  /**
   * 2: figures per round, ratios per round (schema 1 had ratios of the runs'
   * medians). The L7 section came in additively: figures and targets carry
   * their section, and paths and ratios cover both sections.
   */
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

/** Each figure's per-round values, medians and its section's ratios per round, over `rounds` rounds. */
export function summarize(defs: readonly FigureDef[], collector: Collector, rounds: number): Record<string, FigureResult> {
  const figures: Record<string, FigureResult> = {};
  for (const def of defs) {
    const paths = {} as Record<PathId, PathFigure>;
    for (const path of ALL_PATH_IDS) {
      const applicable = def.paths.includes(path);
      const cell = collector.cell(def.id, path);
      const byRound = applicable ? alignRounds(cell.rounds, rounds).map((v) => (v === null ? null : round(v, def.digits + 2))) : [];
      const samples = byRound.filter((v): v is number => v !== null);
      const m = median(samples);
      paths[path] = { applicable, median: m === undefined ? null : round(m, def.digits + 1), samples, rounds: byRound, errors: cell.errors };
    }
    const ratioRounds = {} as Record<RatioId, Spread | null>;
    const ratios = {} as Record<RatioId, number | null>;
    for (const r of ALL_RATIOS) {
      const spread = ratioOverRounds(paths[r.of].rounds, paths[r.to].rounds);
      ratioRounds[r.id] = spread;
      ratios[r.id] = spread?.median ?? null;
    }
    figures[def.id] = { section: def.section, title: def.title, unit: def.unit, better: def.better, paths, ratios, ratioRounds };
  }
  return figures;
}

/** A limit the issues give in MB (10^6 bytes), in the MiB the RSS figures are measured in. */
const mbInMiB = (mb: number): number => (mb * 1e6) / 2 ** 20;
/** "60 MB (57.2 MiB)": the issue's limit and the one judged. */
const mbText = (mb: number): string => `${mb} MB (${mbInMiB(mb).toFixed(1)} MiB)`;

const spreadOf = (s: Spread | null | undefined): Pick<TargetResult, 'value' | 'spread'> => (s ? { value: s.median, spread: { min: s.min, max: s.max } } : { value: null });

/** The issues' targets: comparisons of paths judged on their median over the rounds, the rest on the figure's median. */
export function judgeTargets(f: Record<string, FigureResult>, p: Profile): TargetResult[] {
  const m = (id: string, path: PathId): number | null => f[id]?.paths[path].median ?? null;
  const rounds = (id: string, path: PathId): (number | null)[] => f[id]?.paths[path].rounds ?? [];
  const atLeast = (value: number | null, limit: number) => (value === null ? null : value >= limit);
  const atMost = (value: number | null, limit: number) => (value === null ? null : value <= limit);
  const p99 = m('latencyP99Ms', 'meshlet');
  const p99Haproxy = m('latencyP99Ms', 'haproxy-mtls');
  const targets: Omit<TargetResult, 'pass' | 'section'>[] = [
    { id: 'keepalive', text: 'keep-alive req/s ≥ 1.0× haproxy-mtls', ...spreadOf(f.keepaliveRps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 1.0 },
    { id: 'newconn', text: 'new-connection req/s ≥ 1.5× haproxy-mtls', ...spreadOf(f.newConnRps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 1.5 },
    { id: 'stream', text: 'single-stream MB/s ≥ 0.8× haproxy-mtls', ...spreadOf(f.singleStreamMBps!.ratioRounds.meshletToHaproxy), unit: '×', limit: 0.8 },
    { id: 'p99', text: "p99 at 1,000 req/s ≤ haproxy-mtls's p99", value: p99, unit: 'ms', limit: p99Haproxy ?? Number.NaN },
    { id: 'p50added', text: 'p50 at 1,000 req/s added over direct ≤ 0.5 ms', ...spreadOf(differenceOverRounds(rounds('latencyP50Ms', 'meshlet'), rounds('latencyP50Ms', 'direct'))), unit: 'ms', limit: 0.5 },
    { id: 'rss', text: `ztunnel RSS ≤ ${mbText(100)} with ${p.pods} enrolled pods and ${p.idleConnections} open connections`, value: m('loadedRssMB', 'meshlet'), unit: 'MiB', limit: mbInMiB(100) },
    { id: 'enrollPod', text: 'enrollment p99 ≤ 100 ms per pod', value: m('enrollPodP99Ms', 'meshlet'), unit: 'ms', limit: 100 },
    { id: 'enrollPods', text: `enrollment of ${p.pods} pods ≤ 5 s`, value: m('enrollPodsMs', 'meshlet'), unit: 'ms', limit: 5000 },
    // Issue 11: the waypoint against nginx in its place, and over the same mesh without it.
    { id: 'waypointKeepalive', text: 'waypoint keep-alive req/s ≥ 0.7× nginx', ...spreadOf(f.l7KeepaliveRps!.ratioRounds.waypointToNginx), unit: '×', limit: 0.7 },
    { id: 'waypointP50Added', text: 'p50 at 1,000 req/s added by the waypoint over meshlet L4 ≤ 1 ms', ...spreadOf(differenceOverRounds(rounds('l7LatencyP50Ms', 'waypoint'), rounds('l7LatencyP50Ms', 'meshlet-l4'))), unit: 'ms', limit: 1 },
    { id: 'waypointRss', text: `waypoint anonymous RSS (RssAnon) ≤ ${mbText(60)} at 1,000 req/s`, value: m('l7ProxyRssAnonMB', 'waypoint'), unit: 'MiB', limit: mbInMiB(60) },
  ];
  const higher = new Set(['keepalive', 'newconn', 'stream', 'waypointKeepalive']);
  return targets.map((t) => ({
    ...t,
    section: L7_TARGETS.has(t.id) ? 'l7' : 'l4',
    limit: Number.isNaN(t.limit) ? 0 : t.limit,
    pass: Number.isNaN(t.limit) ? null : higher.has(t.id) ? atLeast(t.value, t.limit) : atMost(t.value, t.limit),
  }));
}

const L7_TARGETS: ReadonlySet<string> = new Set(['waypointKeepalive', 'waypointP50Added', 'waypointRss']);

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

/** The sections some of `defs` belong to, in SECTIONS order. */
const shownSections = (defs: readonly FigureDef[]): SectionDef[] => SECTIONS.filter((s) => defs.some((d) => d.section === s.id));

/** How the figures were taken and how to read the columns. */
function methodText(r: BenchResults, sections: readonly SectionDef[]): string {
  const n = r.profile.rounds;
  const one = n === 1;
  const again = one ? '' : ', then again';
  const [first, ...rest] = sections;
  const parts = [
    `${n} round${one ? '' : 's'}, each running every workload on every path in turn (${first ? `${first.paths.join(', ')}${again}` : ''}), so paths are compared within a round.`,
    ...rest.map((s) => `In each round the ${s.title} section's paths take their turn after the ${first!.title} section's (${s.paths.join(', ')}${again}); paths are compared within their section only.`),
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
  return `Pinned with taskset, the same on every path: each node's client or server pod processes and its proxies (ztunnel, haproxy, the waypoint, nginx), ${placed}; the rest of the sandbox is not pinned.`;
}

const SECTION_TEXT: Record<SectionId, (r: BenchResults) => string> = {
  l4: (r) => `Client pod on node-1, server pod (nginx) on node-2. meshlet's HBONE between the ztunnels: ${TUNNEL_TEXT[r.meshletTunnel]}.`,
  l7: () => [
    'Clients on node-1; backends v1 and v2 (nginx, 1 KiB) on node-2, and the waypoint and nginx proxy there too.',
    '`direct`: a client outside the mesh to the v1 pod. `meshlet-l4`: an enrolled client to the Service web-v1, which no waypoint takes.',
    '`waypoint`: an enrolled client to the Service web, bound to a waypoint Gateway (istio-waypoint) whose pod the sandbox runs; a VirtualService splits it 90/10 over DestinationRule subsets v1 and v2, with retries.',
    '`nginx`: a client outside the mesh to an nginx reverse proxy (Debian package) in the waypoint\'s place: the same 90/10 split by upstream weights, retries on error and 503, mutual TLS 1.3 to the backends over kept-alive connections.',
    "Proxy CPU (utime + stime) and RssAnon: the waypoint's `meshlet waypoint` process; nginx's master and workers, summed.",
    'Before the first round every path gets one unrecorded keep-alive run: the waypoint is JIT-compiled JavaScript.',
  ].join(' '),
};

function targetRow(t: TargetResult, rounds: number): string {
  const digits = t.unit === '×' || t.unit === 'ms' ? 2 : 1;
  const value = t.value === null ? '—' : `${fmt(t.value, digits)}${t.unit === '×' ? '×' : ` ${t.unit}`}`;
  const range = t.spread && rounds > 1 ? ` (${fmt(t.spread.min, digits)}–${fmt(t.spread.max, digits)})` : '';
  const limit = t.id === 'p99' ? ` (haproxy ${fmt(t.limit, 2)} ms)` : '';
  return `| ${t.text} | ${value}${range}${limit} | ${t.pass === null ? '—' : t.pass ? 'pass' : '**miss**'} |`;
}

function sectionLines(r: BenchResults, section: SectionDef, defs: readonly FigureDef[]): string[] {
  const rounds = r.profile.rounds;
  const { paths, ratios } = section;
  const lines = [
    `## ${section.title}: ${paths.join(', ')} (issue ${section.issue})`,
    '',
    SECTION_TEXT[section.id](r),
    '',
    `| figure | unit | ${paths.join(' | ')} | ${ratios.map((x) => x.label).join(' | ')} |`,
    `|---|---|${paths.map(() => '--:|').join('')}${ratios.map(() => '--:|').join('')}`,
  ];
  for (const def of defs.filter((d) => d.section === section.id)) {
    const f = r.figures[def.id]!;
    lines.push(`| ${def.title} | ${def.unit} | ${paths.map((p) => cellText(f.paths[p], def.digits)).join(' | ')} | ${ratios.map((x) => spreadText(f.ratioRounds[x.id], rounds)).join(' | ')} |`);
  }
  const targets = r.targets.filter((t) => t.section === section.id);
  if (targets.length > 0) {
    lines.push('', `| target (issue ${section.issue}) | ${section.judged} | result |`, '|---|--:|:-:|');
    for (const t of targets) lines.push(targetRow(t, rounds));
  }
  return lines;
}

/** Each distinct failure (its first line) once per path, with the figures and rounds it cost: a path that could not be set up fails alike everywhere. */
function failureLines(figures: Record<string, FigureResult>): string[] {
  const grouped = new Map<string, { path: string; message: string; figures: Set<string>; rounds: Set<string> }>();
  for (const [id, f] of Object.entries(figures)) {
    for (const [path, pf] of Object.entries(f.paths)) {
      for (const e of pf.errors) {
        const first = e.split('\n')[0]!;
        const m = /^round (\d+): (.*)$/.exec(first);
        const message = m ? m[2]! : first;
        const key = `${path}\n${message}`;
        let g = grouped.get(key);
        if (!g) grouped.set(key, (g = { path, message, figures: new Set(), rounds: new Set() }));
        g.figures.add(id);
        if (m) g.rounds.add(m[1]!);
      }
    }
  }
  return [...grouped.values()].map((g) => `${[...g.figures].join(', ')} on ${g.path}${g.rounds.size ? `, round ${[...g.rounds].join(', ')}` : ''}: ${g.message}`);
}

export function renderMarkdown(r: BenchResults, defs: readonly FigureDef[]): string {
  const m = r.machine;
  const load = `load ${m.loadStart.toFixed(2)}${m.loadEnd === undefined ? '' : ` → ${m.loadEnd.toFixed(2)}`}`;
  const sections = shownSections(defs);
  const lines = [
    `# meshlet bench, ${r.date}`,
    '',
    methodText(r, sections),
    '',
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memTotalMB} MiB, kernel ${m.kernel}, ${load} (1-minute average at start → end). Sandbox \`${r.sandbox}\`.`,
    '',
    cpusText(r.cpus),
  ];
  for (const section of sections) lines.push('', ...sectionLines(r, section, defs));
  const extras = Object.entries(r.extra).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`);
  if (extras.length > 0) lines.push('', `Other readings (medians): ${extras.join(', ')}.`);
  const failures = failureLines(r.figures);
  if (r.notes.length || failures.length) {
    lines.push('');
    for (const n of r.notes) lines.push(`- ${n}`);
    for (const e of failures) lines.push(`- failed: ${e}`);
  }
  return `${lines.join('\n')}\n`;
}

// Command line of `npm run bench` and the two profiles: full (the published
// figures) and quick (a smoke run that only proves the harness works).
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../lib/core/errors.ts';
import { REPO_ROOT } from '../../sandbox/layout.ts';

export interface Profile {
  mode: 'full' | 'quick';
  /**
   * Rounds: each runs every workload once on every path, the paths back to
   * back in a fixed order, and the enrollment figures once. The report gives
   * each figure's median over the rounds and each ratio's min / median / max
   * of the rounds' ratios.
   */
  rounds: number;
  /** wrk keep-alive and hey new-connection runs, per path and round (L4 and L7 sections). */
  loadSeconds: number;
  /** hey at a fixed 1,000 requests/s, per path and round (L4 and L7 sections). */
  latencySeconds: number;
  /** Size of the single-stream transfer. */
  transferBytes: number;
  /** Connections held open for the idle-memory figure. */
  idleConnections: number;
  /** Pods enrolled at once by one namespace label. */
  pods: number;
  /** Enroll/un-enroll cycles of one pod per round, for the per-pod p99. */
  podCycles: number;
}

export interface BenchOptions {
  profile: Profile;
  /** Run only this group of figures (the others are reported as not measured). */
  only?: OnlyGroup;
  outDir: string;
  /** Per-run sandbox name: everything the bench creates carries it. */
  name: string;
  /** Progress lines (stderr); the table goes to stdout. */
  log: (line: string) => void;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

// Many short rounds rather than a few long blocks: a burst of other load
// then spoils one round, which the median over the rounds discounts.
export const FULL: Profile = {
  mode: 'full', rounds: 7, loadSeconds: 3, latencySeconds: 4, transferBytes: GiB,
  idleConnections: 1000, pods: 100, podCycles: 40,
};

export const QUICK: Profile = {
  mode: 'quick', rounds: 3, loadSeconds: 1, latencySeconds: 1, transferBytes: 64 * MiB,
  idleConnections: 200, pods: 10, podCycles: 8,
};

export const MAX_ROUNDS = 20;

export const ONLY_GROUPS = ['enrollment', 'l7'] as const;
export type OnlyGroup = (typeof ONLY_GROUPS)[number];

export const USAGE = `usage: npm run bench [-- [--quick] [--only enrollment|l7] [--rounds N] [--out DIR] [--name NAME]]
  --quick      smoke run (${QUICK.rounds} rounds of ${QUICK.loadSeconds} s workloads, ${QUICK.pods} pods): proves the harness works
  --only enrollment
               just the enrollment figures (${FULL.pods} idle pods, ${FULL.podCycles} single-pod cycles in the full
               profile), without the traffic paths or the ztunnel-memory figure: for iterating on enrollment;
               writes only <date>.json, so latest.json and latest.md stay those of the last whole run
  --only l7    just the L7 section (direct, meshlet-l4, waypoint, nginx), without the L4 paths and the
               enrollment figures: for iterating on the waypoint; writes only <date>.json likewise
  --rounds N   rounds (full default ${FULL.rounds}, quick ${QUICK.rounds}, at most ${MAX_ROUNDS}): each runs every workload on
               every path in turn; the report shows medians over the rounds and each ratio's
               min / median / max of the rounds' ratios
  --out DIR    where <date>.json, latest.json and latest.md go (default bench-results/)
  --name NAME  sandbox name (default bench<random hex>)`;

export function parseOptions(argv: readonly string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const profile = { ...(values.quick ? QUICK : FULL) };
  if (values.rounds !== undefined) {
    const rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1 || rounds > MAX_ROUNDS) throw new ConfigError(`--rounds must be an integer from 1 to ${MAX_ROUNDS}, got ${values.rounds}`);
    profile.rounds = rounds;
  }
  if (values.only !== undefined && !(ONLY_GROUPS as readonly string[]).includes(values.only)) {
    throw new ConfigError(`--only must be one of ${ONLY_GROUPS.join(', ')}, got ${values.only}`);
  }
  return {
    profile,
    ...(values.only === undefined ? {} : { only: values.only as OnlyGroup }),
    outDir: resolve(values.out ?? resolve(REPO_ROOT, 'bench-results')),
    name: values.name ?? `bench${randomBytes(3).toString('hex')}`,
    log: (line) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`),
  };
}

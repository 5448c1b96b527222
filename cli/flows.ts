// `meshlet flows`, like `hubble observe`: the connections every node's
// ztunnel captured (L4) and the HTTP requests the waypoints carried (L7).
import { Command, Option } from 'commander';
import type { FlowEvent, FlowRecord } from '../lib/telemetry/flow.ts';
import { closeAdminClients, getJson, streamLines } from './admin-client.ts';
import { L7_HEADER, L7_WIDE_HEADER, l7Row, matchesL7, type L7FlowRecord } from './l7-flows.ts';
import { targetNodes, sandboxOption } from './sandbox-target.ts';
import { formatBytes, renderTable } from './table.ts';
import { followRequests, listRequests, WAYPOINT_POD_SELECTOR, waypointPods, type WaypointPod } from './waypoint-requests.ts';

type Output = 'table' | 'wide' | 'json';
type Kind = 'l4' | 'l7';

interface FlowsOptions {
  sandbox: string;
  node?: string;
  namespace?: string;
  follow?: boolean;
  output: Output;
  type?: Kind;
}

const wants = (opts: Pick<FlowsOptions, 'type'>, kind: Kind): boolean => opts.type === undefined || opts.type === kind;

const warn = (message: string): void => void process.stderr.write(`meshlet: warning: ${message}\n`);

const hostPort = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

function who(e: { ip: string; port: number; workload?: { namespace: string; name: string } }): string {
  return e.workload ? `${e.workload.namespace}/${e.workload.name}` : hostPort(e.ip, e.port);
}

function matches(f: FlowRecord, ns: string | undefined): boolean {
  return ns === undefined || f.source.workload?.namespace === ns || f.destination?.workload?.namespace === ns || f.service?.namespace === ns;
}

function row(f: FlowRecord, wide: boolean): string[] {
  const to = f.service ? `${f.service.namespace}/${f.service.name} (${hostPort(f.originalDestination.ip, f.originalDestination.port)})` : hostPort(f.originalDestination.ip, f.originalDestination.port);
  // Through a waypoint (or refused for want of one): say which.
  const via = f.waypoint ? `via waypoint ${f.waypoint.namespace}/${f.waypoint.name}` : undefined;
  const resolved = f.destination ? `${who(f.destination)}${f.destination.node ? `@${f.destination.node}` : ''}${via ? ` ${via}` : ''}` : (via ?? '-');
  const state = f.state === 'open' ? 'OPEN' : `CLOSED ${f.closeReason ?? ''}`.trim();
  const verdict = f.verdict ? `${f.verdict.toUpperCase()}${f.policy ? ` ${f.policy}` : ''}` : '-';
  const base = [f.startedAt.slice(11, 23), f.node, f.direction, who(f.source), to, resolved, `${formatBytes(f.bytesSent)}/${formatBytes(f.bytesReceived)}`, verdict, state];
  if (!wide) return base;
  return [
    ...base,
    f.security ?? '-',
    f.source.identity ?? '-',
    f.destination?.identity ?? '-',
    f.path ?? '-',
    f.durationMs === undefined ? '-' : `${f.durationMs}ms`,
    // A source address that did not check out is shown beside the vouched one.
    `${hostPort(f.source.ip, f.source.port)}${f.claimedSource ? ` (claimed ${hostPort(f.claimedSource.ip, f.claimedSource.port)})` : ''}`,
    f.destination ? hostPort(f.destination.ip, f.destination.port) : '-',
    f.verdictReason ?? '',
  ];
}

const HEADER = ['TIME', 'NODE', 'DIR', 'SOURCE', 'DESTINATION', 'RESOLVED', 'SENT/RECV', 'VERDICT', 'STATE'];
const WIDE_HEADER = [...HEADER, 'SECURITY', 'SOURCE IDENTITY', 'DESTINATION IDENTITY', 'PATH', 'DURATION', 'SOURCE ADDR', 'RESOLVED ADDR', 'REASON'];

export function flowsCommand(): Command {
  return new Command('flows')
    .description('show connections captured by the mesh (who, to what original destination, resolved to which pod, bytes, verdict, state) and the HTTP requests its waypoints carried (method, authority, path, status, duration, route, flags)')
    .addOption(sandboxOption())
    .option('--node <name>', 'only this node\'s ztunnel and waypoints')
    .option('-n, --namespace <ns>', 'only flows and requests from or to this namespace (or for its Services)')
    .addOption(new Option('-t, --type <kind>', 'only L4 connections (ztunnels) or L7 requests (waypoints)').choices(['l4', 'l7']))
    .option('-f, --follow', 'keep printing flows as they open and close, and requests as they end')
    .addOption(new Option('-o, --output <format>', 'output format (json: L7 records carry "type": "l7")').choices(['table', 'wide', 'json']).default('table'))
    .action(async (opts: FlowsOptions) => {
      try {
        const nodes = await targetNodes(opts.sandbox, opts.node);
        // The ztunnels know the connections they carried; the agents, what the kernel dropped; the waypoints, the requests.
        const sockets = wants(opts, 'l4') ? nodes.flatMap((n) => [n.ztunnelAdminSocket, n.agentAdminSocket]) : [];
        const waypoints = wants(opts, 'l7') ? await waypointPods(opts.sandbox, opts.node) : [];
        if (opts.type === 'l7' && waypoints.length === 0) warn(`sandbox "${opts.sandbox}" runs no waypoint pod${opts.node ? ` on ${opts.node}` : ''} (pods labelled ${WAYPOINT_POD_SELECTOR}); a Gateway of class istio-waypoint makes one`);
        if (opts.follow) await follow(sockets, waypoints, opts);
        else await list(sockets, waypoints, opts);
      } finally {
        await closeAdminClients();
      }
    });
}

/** L7 rows are shown when asked for or when there is a waypoint to have carried any: without waypoints the output is the L4 one alone. */
const showsL7 = (waypoints: readonly WaypointPod[], opts: FlowsOptions): boolean => opts.type === 'l7' || (wants(opts, 'l7') && waypoints.length > 0);

async function list(sockets: string[], waypoints: WaypointPod[], opts: FlowsOptions): Promise<void> {
  const [replies, records] = await Promise.all([
    Promise.all(sockets.map((s) => getJson<{ flows: FlowRecord[] }>(s, '/flows'))),
    listRequests(waypoints, warn),
  ]);
  const flows = replies.flatMap((r) => r.flows).filter((f) => matches(f, opts.namespace));
  const requests = records.filter((r) => matchesL7(r, opts.namespace));
  process.stdout.write(formatList(flows, requests, opts, showsL7(waypoints, opts)));
}

/** What `meshlet flows` prints without --follow: the L4 table (or records), then the L7 one when `withL7Table`, each oldest first. */
export function formatList(flows: readonly FlowRecord[], requests: readonly L7FlowRecord[], opts: Pick<FlowsOptions, 'output' | 'type'>, withL7Table: boolean): string {
  const l4 = [...flows].sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const l7 = [...requests].sort((a, b) => a.startTime.localeCompare(b.startTime));
  if (opts.output === 'json') {
    // The L4 records stay where and as they were; the L7 ones beside them, each saying what it is.
    return `${JSON.stringify({ ...(wants(opts, 'l4') ? { flows: l4 } : {}), ...(wants(opts, 'l7') ? { requests: l7 } : {}) }, null, 2)}\n`;
  }
  const wide = opts.output === 'wide';
  const tables: string[] = [];
  if (wants(opts, 'l4')) tables.push(renderTable(wide ? WIDE_HEADER : HEADER, l4.map((f) => row(f, wide))));
  if (withL7Table) tables.push(renderTable(wide ? L7_WIDE_HEADER : L7_HEADER, l7.map((r) => l7Row(r, wide))));
  return `${tables.join('\n\n')}\n`;
}

async function follow(sockets: string[], waypoints: WaypointPod[], opts: FlowsOptions): Promise<void> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  const wide = opts.output === 'wide';
  if (opts.output !== 'json') {
    if (wants(opts, 'l4')) process.stdout.write(`${(wide ? WIDE_HEADER : HEADER).join('  ')}\n`);
    if (showsL7(waypoints, opts)) process.stdout.write(`${(wide ? L7_WIDE_HEADER : L7_HEADER).join('  ')}\n`);
  }
  const print = (line: string) => {
    const event = JSON.parse(line) as FlowEvent;
    if (!matches(event.flow, opts.namespace)) return;
    process.stdout.write(opts.output === 'json' ? `${line}\n` : `${row(event.flow, wide).join('  ')}\n`);
  };
  const printL7 = (r: L7FlowRecord) => {
    if (!matchesL7(r, opts.namespace)) return;
    process.stdout.write(opts.output === 'json' ? `${JSON.stringify(r)}\n` : `${l7Row(r, wide).join('  ')}\n`);
  };
  await Promise.all([
    ...sockets.map((s) => streamLines(s, '/flows?follow=1', print, abort.signal)),
    followRequests(waypoints, printL7, abort.signal, warn),
  ]);
}

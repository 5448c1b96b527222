// `meshlet flows`: captured connections from every node's ztunnel, like `hubble observe`.
import { Command, Option } from 'commander';
import type { FlowEvent, FlowRecord } from '../lib/telemetry/flow.ts';
import { closeAdminClients, getJson, streamLines } from './admin-client.ts';
import { targetNodes, sandboxOption } from './sandbox-target.ts';
import { formatBytes, renderTable } from './table.ts';

type Output = 'table' | 'wide' | 'json';

interface FlowsOptions {
  sandbox: string;
  node?: string;
  namespace?: string;
  follow?: boolean;
  output: Output;
}

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
    .description('show connections captured by the mesh: who, to what original destination, resolved to which pod, bytes, verdict, state')
    .addOption(sandboxOption())
    .option('--node <name>', 'only this node\'s ztunnel')
    .option('-n, --namespace <ns>', 'only flows from or to this namespace')
    .option('-f, --follow', 'keep printing flows as they open and close')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'wide', 'json']).default('table'))
    .action(async (opts: FlowsOptions) => {
      try {
        // The ztunnels know the connections they carried; the agents, what the kernel dropped.
        const sockets = (await targetNodes(opts.sandbox, opts.node)).flatMap((n) => [n.ztunnelAdminSocket, n.agentAdminSocket]);
        if (opts.follow) await follow(sockets, opts);
        else await list(sockets, opts);
      } finally {
        await closeAdminClients();
      }
    });
}

async function list(sockets: string[], opts: FlowsOptions): Promise<void> {
  const replies = await Promise.all(sockets.map((s) => getJson<{ flows: FlowRecord[] }>(s, '/flows')));
  const flows = replies.flatMap((r) => r.flows).filter((f) => matches(f, opts.namespace)).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  if (opts.output === 'json') {
    process.stdout.write(`${JSON.stringify({ flows }, null, 2)}\n`);
    return;
  }
  const wide = opts.output === 'wide';
  process.stdout.write(`${renderTable(wide ? WIDE_HEADER : HEADER, flows.map((f) => row(f, wide)))}\n`);
}

async function follow(sockets: string[], opts: FlowsOptions): Promise<void> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  const wide = opts.output === 'wide';
  if (opts.output !== 'json') process.stdout.write(`${(wide ? WIDE_HEADER : HEADER).join('  ')}\n`);
  const print = (line: string) => {
    const event = JSON.parse(line) as FlowEvent;
    if (!matches(event.flow, opts.namespace)) return;
    process.stdout.write(opts.output === 'json' ? `${line}\n` : `${row(event.flow, wide).join('  ')}\n`);
  };
  await Promise.all(sockets.map((s) => streamLines(s, '/flows?follow=1', print, abort.signal)));
}

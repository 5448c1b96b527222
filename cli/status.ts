// `meshlet status`: per node, where the agent's cluster state comes from, what
// it has attached, enrolled and rejected.
import { Command, Option } from 'commander';
import type { AgentStatus } from '../lib/mesh/agent-status.ts';
import { queryNodes, sandboxOption } from './sandbox-target.ts';
import { renderTable } from './table.ts';

export function statusCommand(): Command {
  return new Command('status')
    .description('per node: BPF programs attached, pods enrolled, map fill, ztunnel sync, rejected objects')
    .addOption(sandboxOption())
    .option('--node <name>', 'only this node')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { sandbox: string; node?: string; output: 'table' | 'json' }) => {
      const statuses = (await queryNodes<AgentStatus>(opts.sandbox, opts.node, (n) => n.agentAdminSocket, '/status')).map((r) => r.reply);
      if (opts.output === 'json') process.stdout.write(`${JSON.stringify({ nodes: statuses }, null, 2)}\n`);
      else process.stdout.write(statuses.map(render).join('\n\n') + '\n');
    });
}

function ztunnelSync(z: AgentStatus['ztunnel']): string {
  if (!z.connected) return 'NOT CONNECTED';
  const refused = z.refused > 0 ? `, ${z.refused} refused` : '';
  return z.inSync ? `in sync (version ${z.ackedVersion}${refused})` : `OUT OF SYNC, resyncing (acked version ${z.ackedVersion}${refused})`;
}

function render(s: AgentStatus): string {
  const out = [
    `NODE ${s.node}   ${s.ready ? 'ready' : 'NOT READY'}   ztunnel: ${ztunnelSync(s.ztunnel)}   last reconcile: ${s.reconciledAt ?? 'never'}`,
    ...s.notReady.map((r) => `  not ready: ${r}`),
    `  cluster state: ${s.source.name}${s.source.server ? ` ${s.source.server}` : ''}, ${s.source.synced ? 'synced' : 'NOT SYNCED'}`,
    ...(s.source.informers ?? []).filter((i) => !i.synced || i.lastError).map((i) => `    ${i.kind}: ${i.synced ? 'synced' : 'not synced'}${i.lastError ? `, ${i.lastError}` : ''}`),
    `  addresses: ${Object.entries(s.datapath.addresses).map(([name, ip]) => `${name} ${ip}`).join(', ') || 'none'}`,
    `  programs: ${s.datapath.programs.map((p) => `${p.name}#${p.id}`).join(' ') || 'none loaded'}`,
    `  maps: ${s.datapath.maps.map((m) => `${m.name} ${m.entries}/${m.maxEntries}`).join(', ')}`,
    `  enrolled pods (${s.enrolledPods.length}):`,
  ];
  if (s.enrolledPods.length > 0) {
    const rows = s.enrolledPods.map((p) => [`${p.namespace}/${p.name}`, p.uid, p.excludeOutboundPorts.join(',') || '-', p.since]);
    out.push(indent(renderTable(['POD', 'UID', 'EXCLUDED PORTS', 'SINCE'], rows)));
  }
  const sweeps = s.strictSweeps;
  if (sweeps && (sweeps.closed + sweeps.failed > 0 || sweeps.recent.length > 0)) {
    out.push(`  connections closed when inbound mode tightened: ${sweeps.closed}${sweeps.failed > 0 ? `, ${sweeps.failed} the kernel refused to close` : ''}`);
    for (const r of sweeps.recent) out.push(`    ${r.pod}: ${r.error ? `FAILED: ${r.error}` : `${r.closed} closed${r.failed > 0 ? `, ${r.failed} refused` : ''}`} at ${r.at}`);
  }
  out.push(`  rejected objects (${s.rejected.length}):`);
  for (const r of s.rejected) {
    out.push(`    ${r.object}: ${r.reason} [${r.rule}]`);
    if (r.failClosed) out.push(`      ${r.failClosed}`);
  }
  if (s.policyWarnings.length > 0) out.push(`  policy warnings (${s.policyWarnings.length}):`);
  for (const w of s.policyWarnings) out.push(`    ${w.policy}: ${w.warning}`);
  if (s.endpointWarnings.length > 0) out.push(`  endpoint warnings (${s.endpointWarnings.length}):`);
  for (const w of s.endpointWarnings) out.push(`    ${w.object}: ${w.warning}`);
  if (s.waypointWarnings.length > 0) out.push(`  waypoint warnings (${s.waypointWarnings.length}):`);
  for (const w of s.waypointWarnings) out.push(`    ${w.object}${w.waypoint === '-' ? '' : ` (waypoint ${w.waypoint})`}: ${w.problem}`);
  if (s.lastError) out.push(`  last error: ${s.lastError}`);
  return out.join('\n');
}

const indent = (text: string) => text.split('\n').map((l) => `    ${l}`).join('\n');

// `meshlet certs`: each node's workload certificates, as its ztunnel holds them.
import { Command, Option } from 'commander';
import type { CertificateListing } from '../lib/identity/store.ts';
import { queryNodes, sandboxOption } from './sandbox-target.ts';
import { renderTable } from './table.ts';

export function certsCommand(): Command {
  return new Command('certs')
    .description('workload certificates per node: identity, serial, not-after, next rotation')
    .addOption(sandboxOption())
    .option('--node <name>', 'only this node')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { sandbox: string; node?: string; output: 'table' | 'json' }) => {
      const replies = await queryNodes<{ certificates: CertificateListing[] }>(opts.sandbox, opts.node, (n) => n.ztunnelAdminSocket, '/certs');
      const nodes = replies.map((r) => ({ node: r.node, certificates: r.reply.certificates }));
      if (opts.output === 'json') {
        process.stdout.write(`${JSON.stringify({ nodes }, null, 2)}\n`);
        return;
      }
      const rows = nodes.flatMap((r) => r.certificates.map((c) => [r.node, c.identity, c.state, c.serial ?? '-', c.notAfter ?? '-', c.nextRotation ?? '-', c.lastError ?? '']));
      process.stdout.write(`${renderTable(['NODE', 'IDENTITY', 'STATE', 'SERIAL', 'NOT AFTER', 'NEXT ROTATION', 'LAST ERROR'], rows)}\n`);
    });
}

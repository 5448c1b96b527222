#!/usr/bin/env node
// The one `meshlet` command: node components (agent, ztunnel), operator views
// (flows, status) and the sandbox.
import { Command } from 'commander';
import { MeshletError } from '../errors.ts';
import { agentCommand } from '../agent-command.ts';
import { ztunnelCommand } from '../ztunnel/command.ts';
import { sandboxCommand } from '../sandbox/command.ts';
import { caCommand } from '../ca/command.ts';
import { flowsCommand } from './flows.ts';
import { statusCommand } from './status.ts';
import { certsCommand } from './certs.ts';

const program = new Command('meshlet')
  .description('sidecarless service mesh: eBPF capture, node ztunnel, HBONE')
  .showHelpAfterError()
  .addCommand(flowsCommand())
  .addCommand(statusCommand())
  .addCommand(certsCommand())
  .addCommand(sandboxCommand())
  .addCommand(agentCommand())
  .addCommand(ztunnelCommand())
  .addCommand(caCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof MeshletError) {
    process.stderr.write(`meshlet: ${err.message} [${err.code}]\n`);
    process.exit(1);
  }
  throw err;
}

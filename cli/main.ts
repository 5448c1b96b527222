#!/usr/bin/env node
// The one `meshlet` command: mesh components (agent, ztunnel, ca, waypoint), operator
// views (flows, status, certs) and the sandbox. Only the subcommand being run
// is loaded: each node process would otherwise carry every other's modules
// (tens of MB of resident memory per process).
import { Command } from 'commander';
import { MeshletError } from '../lib/core/errors.ts';

const commands: Record<string, () => Promise<Command>> = {
  flows: async () => (await import('./flows.ts')).flowsCommand(),
  status: async () => (await import('./status.ts')).statusCommand(),
  certs: async () => (await import('./certs.ts')).certsCommand(),
  install: async () => (await import('./install.ts')).installCommand(),
  uninstall: async () => (await import('./uninstall.ts')).uninstallCommand(),
  sandbox: async () => (await import('../sandbox/command.ts')).sandboxCommand(),
  agent: async () => (await import('../agent/command.ts')).agentCommand(),
  ztunnel: async () => (await import('../ztunnel/command.ts')).ztunnelCommand(),
  ca: async () => (await import('../ca/command.ts')).caCommand(),
  waypoint: async () => (await import('../waypoint/command.ts')).waypointCommand(),
};

const program = new Command('meshlet')
  .description('sidecarless service mesh: eBPF capture, node ztunnel, HBONE')
  .showHelpAfterError();

try {
  const wanted = process.argv[2];
  const load = wanted !== undefined ? commands[wanted] : undefined;
  for (const make of load ? [load] : Object.values(commands)) program.addCommand(await make());
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof MeshletError) {
    process.stderr.write(`meshlet: ${err.message} [${err.code}]\n`);
    process.exit(1);
  }
  throw err;
}

// Which nodes a CLI command talks to: those of a running sandbox (the only
// cluster form so far), named by --sandbox or $MESHLET_SANDBOX.
import { Option } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { closeAdminClients, getJson } from './admin-client.ts';
import { DEFAULT_NAME, sandboxStatus, type SandboxNodeInfo } from '../sandbox/api.ts';

export const sandboxOption = (): Option =>
  new Option('--sandbox <name>', 'sandbox to inspect').env('MESHLET_SANDBOX').default(DEFAULT_NAME);

export async function targetNodes(sandbox: string, node?: string): Promise<SandboxNodeInfo[]> {
  const info = await sandboxStatus(sandbox);
  if (node === undefined) return info.nodes;
  const found = info.nodes.filter((n) => n.name === node);
  if (found.length === 0) throw new ConfigError(`sandbox "${sandbox}" has no node "${node}"; its nodes are ${info.nodes.map((n) => n.name).join(', ')}`);
  return found;
}

/** GETs `path` from one admin socket of every targeted node, and closes the clients after. */
export async function queryNodes<T>(sandbox: string, node: string | undefined, socket: (n: SandboxNodeInfo) => string, path: string): Promise<{ node: string; reply: T }[]> {
  try {
    const nodes = await targetNodes(sandbox, node);
    return await Promise.all(nodes.map(async (n) => ({ node: n.name, reply: await getJson<T>(socket(n), path) })));
  } finally {
    await closeAdminClients();
  }
}

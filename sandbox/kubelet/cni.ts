// The sandbox runtime's CNI, as containerd runs it: the node's primary config
// is the lexically first file of its CNI config dir; its first plugin is the
// sandbox's own network (routed veths, ../pods.ts), which the runtime sets up
// itself, and every plugin chained after it is an executable of the node's
// CNI plugin dir, run on ADD with the result so far and on DEL, with the
// CNI_* environment and the config on stdin (CNI spec 1.0). A chained
// plugin's failure fails the pod's sandbox, which the kubelet retries.
// Plugins run as node processes that see the node's own /run/cni and
// /run/meshlet (its CNI dirs, meshlet's sockets), not the host's.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPrimaryConfig } from '../../lib/cni/conflist.ts';
import { isRecord } from '../../lib/cluster/objects.ts';
import { SandboxError } from '../../lib/core/errors.ts';
import { DEFAULT_CAPABILITIES } from '../capabilities.ts';
import type { SandboxNodeInfo } from '../info.ts';
import { NETNS_DIR, NODE_CNI_BIN_DIR, NODE_CNI_CONF_DIR, nodeCgroups, nodeHostPath } from '../layout.ts';
import { planContainerRun, spawnIn } from '../proc.ts';

/** The sandbox network's plugin type: the runtime's own, never executed. */
export const SANDBOX_NETWORK_TYPE = 'meshlet-sandbox-network';
const PRIMARY_CONFIG = '10-meshlet-sandbox.conflist';
const CNI_VERSION = '1.0.0';
/** containerd's default CNI timeout is longer; a plugin that hangs this long is broken, not slow. */
const PLUGIN_TIMEOUT_MS = 30_000;
const OUTPUT_LIMIT = 64 * 1024;
/** What of the node's /run a plugin sees: its CNI dirs and meshlet's sockets. */
const NODE_RUN_DIRS = ['/run/cni', '/run/meshlet'] as const;

/** A chained plugin failed (or could not run): the sandbox is not created. */
export class CniPluginError extends SandboxError {}

export interface CniPod {
  uid: string;
  namespace: string;
  name: string;
  netns: string;
  ips: readonly string[];
}

interface ChainedPlugin {
  type: string;
  config: Record<string, unknown>;
}

/** The node's network config, written as the node's network plugin installs it, unless one is there already. */
export function ensureSandboxNetworkConfig(sandbox: string, node: SandboxNodeInfo): void {
  const dir = nodeHostPath(sandbox, node, NODE_CNI_CONF_DIR).path;
  mkdirSync(dir, { recursive: true });
  mkdirSync(nodeHostPath(sandbox, node, NODE_CNI_BIN_DIR).path, { recursive: true });
  const config = { cniVersion: CNI_VERSION, name: 'meshlet-sandbox', plugins: [{ type: SANDBOX_NETWORK_TYPE }] };
  try {
    writeFileSync(join(dir, PRIMARY_CONFIG), `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** The plugins chained after the sandbox network in the node's primary config, with the config's name and version. */
async function chainedPlugins(sandbox: string, node: SandboxNodeInfo): Promise<{ name: string; cniVersion: string; plugins: ChainedPlugin[] }> {
  const path = await findPrimaryConfig(nodeHostPath(sandbox, node, NODE_CNI_CONF_DIR).path);
  if (!path) return { name: '', cniVersion: CNI_VERSION, plugins: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CniPluginError(`the node's CNI config ${path} is not JSON (${(err as Error).message}); fix or remove it`);
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.plugins)) throw new CniPluginError(`the node's CNI config ${path} has no plugins list`);
  const plugins = parsed.plugins.filter(isRecord).filter((p) => p.type !== SANDBOX_NETWORK_TYPE).map((p) => ({ type: String(p.type), config: p }));
  return { name: String(parsed.name ?? ''), cniVersion: String(parsed.cniVersion ?? CNI_VERSION), plugins };
}

/** A CNI result with the pod's addresses, as the sandbox network gives them. */
function sandboxResult(cniVersion: string, pod: CniPod): Record<string, unknown> {
  return {
    cniVersion,
    interfaces: [{ name: 'eth0', sandbox: join(NETNS_DIR, pod.netns) }],
    ips: pod.ips.map((ip) => ({ address: `${ip}/${ip.includes(':') ? 64 : 24}`, interface: 0 })),
  };
}

/** Runs one plugin as a node process; resolves with its stdout, or rejects with its CNI error's message. */
function runPlugin(sandbox: string, node: SandboxNodeInfo, staging: string, plugin: ChainedPlugin, env: Record<string, string>, stdin: string): Promise<string> {
  const executable = join(NODE_CNI_BIN_DIR, plugin.type);
  const run = planContainerRun(staging, NODE_RUN_DIRS.map((target) => {
    const source = nodeHostPath(sandbox, node, target).path;
    mkdirSync(source, { recursive: true });
    return { source, target, readOnly: false };
  }));
  return new Promise((resolve, reject) => {
    const child = spawnIn({ cgroup: nodeCgroups(node).supervisor, netns: node.netns }, [executable], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, capabilities: DEFAULT_CAPABILITIES, containerRun: run, cwd: '/',
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out = (out + String(d)).slice(0, OUTPUT_LIMIT)));
    child.stderr?.on('data', (d: Buffer) => (err = (err + String(d)).slice(0, OUTPUT_LIMIT)));
    const timer = setTimeout(() => child.kill('SIGKILL'), PLUGIN_TIMEOUT_MS);
    child.once('error', (e) => reject(new CniPluginError(`CNI plugin ${plugin.type} cannot run: ${e.message}`)));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(out);
      let message = err.trim() || `exit ${code ?? signal}`;
      try {
        const reply: unknown = JSON.parse(out);
        if (isRecord(reply) && typeof reply.msg === 'string') message = `${reply.msg}${typeof reply.details === 'string' && reply.details !== '' ? ` (${reply.details})` : ''}`;
      } catch {
        // Not a CNI error object: its stderr or exit status says what happened.
      }
      reject(new CniPluginError(`plugin type="${plugin.type}" failed (${command(env)}): ${message}`));
    });
    child.stdin?.end(stdin);
  });
}

function parseResult(plugin: ChainedPlugin, out: string): unknown {
  try {
    return JSON.parse(out);
  } catch {
    throw new CniPluginError(`plugin type="${plugin.type}" printed no CNI result (stdout: ${JSON.stringify(out.slice(0, 200))})`);
  }
}

const command = (env: Record<string, string>): string => env.CNI_COMMAND!.toLowerCase();

/**
 * Runs the chained plugins for `pod` (ADD in order, DEL in reverse, as
 * libcni does); on ADD each gets the previous one's result. Rejects with
 * CniPluginError on ADD; on DEL every plugin runs and the first failure is
 * thrown after.
 */
export async function runChainedPlugins(sandbox: string, node: SandboxNodeInfo, staging: string, cni: 'ADD' | 'DEL', pod: CniPod): Promise<void> {
  const { name, cniVersion, plugins } = await chainedPlugins(sandbox, node);
  const env = {
    CNI_COMMAND: cni,
    CNI_CONTAINERID: pod.uid.replaceAll('-', ''),
    CNI_NETNS: join(NETNS_DIR, pod.netns),
    CNI_IFNAME: 'eth0',
    CNI_PATH: NODE_CNI_BIN_DIR,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.uid.replaceAll('-', '')};K8S_POD_UID=${pod.uid}`,
  };
  let result: unknown = sandboxResult(cniVersion, pod);
  const ordered = cni === 'ADD' ? plugins : [...plugins].reverse();
  let firstFailure: unknown;
  for (const plugin of ordered) {
    const stdin = JSON.stringify({ ...plugin.config, cniVersion, name, prevResult: result });
    try {
      const out = await runPlugin(sandbox, node, staging, plugin, env, stdin);
      if (cni === 'ADD' && out.trim() !== '') result = parseResult(plugin, out);
    } catch (err) {
      if (cni === 'ADD') throw err;
      firstFailure ??= err;
    }
  }
  if (firstFailure) throw firstFailure;
}

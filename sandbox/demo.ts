// `demo` (npm start): a sandbox with the sample workloads, a few commands to
// try, and a teardown on Ctrl-C.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyManifest, type ObjectResult } from './apply.ts';
import type { SandboxInfo } from './info.ts';
import { DEFAULT_NAME, REPO_ROOT, sandboxPaths } from './layout.ts';
import { down, READY_TIMEOUT_MS, up, waitReady } from './lifecycle.ts';
import { sandboxStatus } from './status.ts';

export const SAMPLE_MANIFEST = join(REPO_ROOT, 'scripts', 'sandbox', 'sample.yaml');

export interface DemoOptions {
  name: string;
  nodes: number;
  out: (line: string) => void;
}

export function formatResults(results: readonly ObjectResult[]): string[] {
  return results.map((r) => `${r.ref}${r.namespace ? ` (${r.namespace})` : ''} ${r.action}${r.reason ? `: ${r.reason}` : ''}${r.warning ? ` (warning: ${r.warning})` : ''}`);
}

export function demoHints(info: SandboxInfo): string[] {
  const cli = 'meshlet';
  const sb = info.name === DEFAULT_NAME ? '' : ` --name ${info.name}`;
  const view = info.name === DEFAULT_NAME ? '' : ` --sandbox ${info.name}`;
  const vip = (svc: string): string => info.services?.find((s) => s.namespace === 'demo' && s.name === svc)?.clusterIPs[0] ?? `<${svc} ClusterIP>`;
  const web = info.pods.find((p) => p.namespace === 'demo' && p.name === 'web');
  return [
    `sandbox "${info.name}" is up: ${info.nodes.length} nodes; namespace demo is in the mesh (istio.io/dataplane-mode=ambient)`,
    '',
    'try:',
    `  ${cli} sandbox exec${sb} client -n demo -- curl -s http://web/           # web on node-2 via its Service (${vip('web')}), through both ztunnels`,
    ...(web ? [`  ${cli} sandbox exec${sb} client -n demo -- curl -s http://${web.ip}:8080/    # the pod directly`] : []),
    `  ${cli} sandbox exec${sb} client -n demo -- redis-cli -h redis ping       # redis, ${vip('redis')}`,
    `  ${cli} flows${view}                 # connections the ztunnels carried`,
    `  ${cli} status${view}                # agents, ztunnels, enrolled workloads`,
    `  ${cli} certs${view}                 # each node's workload certificates (SPIFFE identities)`,
    `  ${cli} flows${view} -o wide         # with both identities, mTLS and the policy verdict`,
    `  ${cli} sandbox kubectl${sb} -- get pods -A -o wide   # the cluster, with the built kubectl (or: kubectl --kubeconfig "$(${cli} sandbox kubeconfig${sb})" …)`,
    `  ${cli} sandbox status${sb}`,
    `  ${cli} sandbox down${sb}            # or Ctrl-C here`,
    '',
    'Service names resolve in pods through a per-namespace /etc/hosts (web, web.demo, web.demo.svc.cluster.local).',
    `logs: ${info.runDir}/nodes/<node>/{agent,ztunnel,supervisor}.log, ${info.runDir}/nodes/<node>/pods/, ${info.controlPlane.dir}/*.log`,
  ];
}

/** Resolves once the demo's sandbox is gone (Ctrl-C, SIGTERM, or `sandbox down` elsewhere). */
export async function runDemo(options: DemoOptions): Promise<void> {
  const { name, out } = options;
  let stopRequested = false;
  let wake: () => void = () => undefined;
  const onSignal = (): void => {
    stopRequested = true;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Once up, the demo owns the sandbox: any way out of here removes it, unless
  // someone else already did.
  let owned = false;
  try {
    const { info } = await up({ name, nodes: options.nodes, waitReady: false, log: out });
    owned = true;
    if (!stopRequested) {
      try {
        await waitReady(info, READY_TIMEOUT_MS, out);
      } catch (err) {
        out(`warning: ${(err as Error).message}`);
      }
    }
    if (!stopRequested) {
      for (const line of formatResults(await applyManifest(name, await readFile(SAMPLE_MANIFEST, 'utf8'), SAMPLE_MANIFEST))) out(line);
      out('');
      for (const line of demoHints(await sandboxStatus(name))) out(line);
    }
    const infoFile = sandboxPaths(name).infoFile;
    while (!stopRequested && existsSync(infoFile)) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 1000);
      });
    }
    if (!stopRequested) {
      out(`sandbox "${name}" was torn down elsewhere`);
      owned = false;
    }
  } finally {
    if (owned) {
      out(`tearing down sandbox "${name}"…`);
      await down(name);
      out('done');
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

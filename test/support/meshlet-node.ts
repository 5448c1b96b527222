// meshlet as a sandbox runs it, from its DaemonSet: each node's meshlet-node
// pod, its containers' logs as `kubectl logs` reads them, and commands run in
// its ztunnel container, which holds the node's CA credentials (the pod-bound
// token and the trust bundle the kubelet mounts) and resolves the CA's
// Service, so a fixture there asks the CA exactly as that node's ztunnel does.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { caUrl } from '../../lib/install/ca-deployment.ts';
import { AGENT_CONTAINER, CA_TOKEN_DIR, CA_TOKEN_FILE, TRUST_BUNDLE_DIR, TRUST_BUNDLE_KEY, ZTUNNEL_CONTAINER } from '../../lib/install/names.ts';
import { DEFAULT_NAMESPACE } from '../../lib/install/options.ts';
import { cgroupOfPid } from '../../sandbox/cgroup.ts';
import { NODE_POD_SELECTOR } from '../../sandbox/node-pod.ts';
import { sandboxExec, sandboxKubectl, type ExecOptions, type ExecResult } from '../../sandbox/api.ts';
import { eventually } from './eventually.ts';
import type { CaAccess } from './mesh-peer.ts';

export type NodeContainer = typeof AGENT_CONTAINER | typeof ZTUNNEL_CONTAINER;

/** The CA as a ztunnel container reaches it: the paths are the container's own. */
export const ZTUNNEL_CA_ACCESS: CaAccess = {
  url: caUrl(DEFAULT_NAMESPACE),
  bundleFile: `${TRUST_BUNDLE_DIR}/${TRUST_BUNDLE_KEY}`,
  tokenFile: `${CA_TOKEN_DIR}/${CA_TOKEN_FILE}`,
};

/** The node's meshlet-node pod that is not going away. */
export async function nodePod(sandbox: string, node: string): Promise<V1Pod> {
  const r = await sandboxKubectl(sandbox, ['get', 'pods', '-n', DEFAULT_NAMESPACE, '-l', NODE_POD_SELECTOR, '--field-selector', `spec.nodeName=${node}`, '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`kubectl get pods on ${node}: ${r.stderr}`);
  const pod = (JSON.parse(r.stdout) as { items: V1Pod[] }).items.find((p) => !p.metadata?.deletionTimestamp);
  if (!pod) throw new Error(`node ${node} has no meshlet-node pod`);
  return pod;
}

/** What the container logged, its previous instance's lines first when it restarted. */
export async function nodeLog(sandbox: string, node: string, container: NodeContainer): Promise<string> {
  const pod = await nodePod(sandbox, node);
  const logs = (previous: boolean) => sandboxKubectl(sandbox, ['logs', '-n', DEFAULT_NAMESPACE, pod.metadata!.name!, '-c', container, ...(previous ? ['--previous'] : [])]);
  const restarted = (pod.status?.containerStatuses?.find((c) => c.name === container)?.restartCount ?? 0) > 0;
  const [before, now] = await Promise.all([restarted ? logs(true) : undefined, logs(false)]);
  if (now.exitCode !== 0) throw new Error(`kubectl logs ${pod.metadata!.name} -c ${container}: ${now.stderr}`);
  return `${before?.exitCode === 0 ? before.stdout : ''}${now.stdout}`;
}

/** `argv` in the node's ztunnel container (its network, mounts and capabilities). */
export async function inZtunnel(sandbox: string, node: string, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const pod = await nodePod(sandbox, node);
  return sandboxExec(sandbox, { pod: pod.metadata!.name!, namespace: DEFAULT_NAMESPACE, container: ZTUNNEL_CONTAINER }, argv, options);
}

/** A container whose processes are frozen: thawed, or killed all at once (a frozen process cannot reap its children, so one signal would not do). */
export interface FrozenContainer {
  thaw(): Promise<void>;
  kill(): Promise<void>;
}

/** Freezes every process of the container whose main process is `pid` (cgroup v2's freezer). */
export async function freezeContainer(pid: number): Promise<FrozenContainer> {
  const cgroup = await cgroupOfPid(pid);
  if (!cgroup) throw new Error(`process ${pid} is gone or in no cgroup v2`);
  await writeFile(join(cgroup, 'cgroup.freeze'), '1');
  await eventually(`the cgroup of ${pid} to be frozen`, async () => (await readFile(join(cgroup, 'cgroup.events'), 'utf8')).includes('frozen 1'));
  // Either may find the cgroup gone: the container ended meanwhile.
  return {
    thaw: () => writeFile(join(cgroup, 'cgroup.freeze'), '0').catch(() => undefined),
    kill: () => writeFile(join(cgroup, 'cgroup.kill'), '1').catch(() => undefined),
  };
}

// The sandbox's cluster as the host sees it: the admin kubeconfig through the
// control plane's loopback relay, client-node's APIs on it, and the built
// kubectl with the same kubeconfig.
import { CoreV1Api, type KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../lib/cluster/pooled-kubeconfig.ts';
import { run, type RunResult } from '../lib/core/exec.ts';
import { controlPlaneBinaries } from './controlplane/binaries.ts';
import type { SandboxInfo } from './info.ts';
import { readSandboxFile } from './registry.ts';

export interface SandboxCluster {
  info: SandboxInfo;
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  objects: KubernetesObjectApi;
}

export async function openCluster(name: string): Promise<SandboxCluster> {
  const info = await readSandboxFile(name);
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromFile(info.controlPlane.kubeconfig);
  return { info, kubeConfig, core: kubeConfig.makeApiClient(CoreV1Api), objects: KubernetesObjectApi.makeApiClient(kubeConfig) };
}

/** The built kubectl against the sandbox (`meshlet sandbox kubectl -- ARGS`); never throws on its exit code. */
export async function sandboxKubectl(name: string, args: readonly string[], input?: string): Promise<RunResult> {
  const info = await readSandboxFile(name);
  const binaries = await controlPlaneBinaries();
  return run(binaries.path('kubectl'), ['--kubeconfig', info.controlPlane.kubeconfig, ...args], { allowFailure: true, ...(input === undefined ? {} : { input }) });
}

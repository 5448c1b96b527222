// A real Kubernetes control plane for tests, on 127.0.0.1: etcd and
// kube-apiserver (and, when asked, the controller manager, the scheduler and
// Istio's and the Gateway API's CRDs) from the cached build, with the same
// PKI and flags as the sandbox's, in a per-run directory that t.after removes
// together with every process.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { run, type RunResult } from '../../lib/core/exec.ts';
import { controlPlaneBinaries } from '../../sandbox/controlplane/binaries.ts';
import { clientKubeconfig, installCrds, prepareControlPlane, waitForApiServer } from '../../sandbox/controlplane/bootstrap.ts';
import { apiServerUrl, componentArgs, controlPlaneLayout, type Component, type ControlPlaneNetwork } from '../../sandbox/controlplane/components.ts';
import type { PkiFiles } from '../../sandbox/controlplane/pki.ts';

export interface TestControlPlane {
  /** Admin kubeconfig path (system:masters), server https://127.0.0.1:<port>. */
  kubeconfig: string;
  server: string;
  /** The cluster's PKI: its CA, and the ServiceAccount signing key (to mint tokens the API server did not issue, e.g. expired ones). */
  pki: PkiFiles;
  /** The built kubectl against this control plane. */
  kubectl(args: readonly string[], input?: string): Promise<RunResult>;
  /** A client-certificate kubeconfig for `user` in `groups` (e.g. 'system:node:node-1', ['system:nodes']). */
  userKubeconfig(user: string, groups?: readonly string[]): Promise<string>;
  /** Stops and starts kube-apiserver (same etcd, same port). */
  restartApiServer(): Promise<void>;
}

/** kubectl that must succeed: its stdout, or the test fails with kubectl's stderr. */
export async function kubectlOk(cp: TestControlPlane, args: readonly string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input);
  assert.equal(result.exitCode, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** Applies `objects` as one List. */
export const applyObjects = (cp: TestControlPlane, ...objects: object[]): Promise<string> =>
  kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));

/** A KubeConfig that authenticates as the ServiceAccount with a TokenRequest token, against the control plane's server and CA. */
export async function asServiceAccount(cp: TestControlPlane, account: string, namespace: string, tokenArgs: readonly string[] = []): Promise<{ kc: KubeConfig; token: string }> {
  const token = (await kubectlOk(cp, ['create', 'token', account, '-n', namespace, ...tokenArgs])).trim();
  const admin = new KubeConfig();
  admin.loadFromFile(cp.kubeconfig);
  const cluster = admin.getCurrentCluster();
  assert.ok(cluster?.caData, `${cp.kubeconfig} has no current cluster with certificate-authority-data`);
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'meshlet-test', server: cluster.server, caData: cluster.caData, skipTLSVerify: false }, { name: account, token });
  return { kc, token };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** `serverNames`: more addresses the API server's certificate names (where a test relays to it from a network namespace). */
export async function startTestControlPlane(t: TestContext, opts: { crds?: boolean; controllers?: boolean; serverNames?: readonly string[] } = {}): Promise<TestControlPlane> {
  const binaries = await controlPlaneBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cp-'));
  const layout = controlPlaneLayout(dir);
  const [apiServerPort, etcdClientPort, etcdPeerPort, controllerManagerPort, schedulerPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const network: ControlPlaneNetwork = {
    apiServerIp: '127.0.0.1', apiServerPort, etcdClientPort, etcdPeerPort, controllerManagerPort, schedulerPort,
    serviceCidrs: '10.96.0.0/16', clusterCidrs: '10.244.0.0/16',
  };
  const args = componentArgs(layout, network);
  const children = new Map<Component, ChildProcess>();
  const start = (component: Component): void => {
    const log = openSync(layout.log(component), 'a');
    try {
      children.set(component, spawn(binaries.path(component), args[component], { stdio: ['ignore', log, log] }));
    } finally {
      closeSync(log);
    }
  };
  // The API server first, etcd last: the API server waits for an etcd that is gone.
  const stopAll = async (): Promise<void> => {
    for (const c of ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'] as const) await stop(children.get(c));
  };
  t.after(async () => {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  });
  await prepareControlPlane(layout, network, opts.serverNames);
  start('etcd');
  start('kube-apiserver');
  await waitForApiServer(layout, network);
  if (opts.controllers) {
    start('kube-controller-manager');
    start('kube-scheduler');
  }
  const kubectl = (argv: readonly string[], input?: string) =>
    run(binaries.path('kubectl'), ['--kubeconfig', layout.adminKubeconfig, ...argv], { allowFailure: true, ...(input === undefined ? {} : { input }) });
  if (opts.crds) await installCrds(binaries, layout.adminKubeconfig);
  let users = 0;
  return {
    kubeconfig: layout.adminKubeconfig,
    server: apiServerUrl(network),
    pki: layout.pki,
    kubectl,
    userKubeconfig: (user, groups = []) => clientKubeconfig(layout, network, join(dir, `user-${++users}.kubeconfig`), user, groups),
    async restartApiServer() {
      await stop(children.get('kube-apiserver'));
      start('kube-apiserver');
      await waitForApiServer(layout, network);
    },
  };
}

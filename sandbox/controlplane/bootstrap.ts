// Bringing a control plane up: its PKI and kubeconfigs before the first
// start, readiness after it, and the CRDs users' objects need (Istio's and
// the Gateway API's own, so the API server validates them against the real
// schemas).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { SandboxError } from '../../lib/core/errors.ts';
import { run } from '../../lib/core/exec.ts';
import type { ControlPlaneBinaries } from './binaries.ts';
import { apiServerUrl, type ControlPlaneLayout, type ControlPlaneNetwork } from './components.ts';
import { writeKubeconfig } from './kubeconfig.ts';
import { createPki, issueClient, issueKubeletServing } from './pki.ts';

/** The API server's names: its own address, loopback (the sandbox's host relay), the kubernetes Service's first ClusterIP, the in-cluster DNS names, and `extra`. */
function serverNames(n: ControlPlaneNetwork, extra: readonly string[]): string[] {
  const first = n.serviceCidrs.split(',')[0]!.split('/')[0]!.split('.');
  const kubernetesService = [...first.slice(0, 3), String(Number(first[3]) + 1)].join('.');
  return [...new Set([n.apiServerIp, '127.0.0.1', kubernetesService, 'localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', ...extra])];
}

/** A kubeconfig for `user` in `groups` with a client certificate from the cluster CA, against `server` (default: the API server's own address). */
export async function clientKubeconfig(layout: ControlPlaneLayout, n: ControlPlaneNetwork, path: string, user: string, groups: readonly string[] = [], server = apiServerUrl(n)): Promise<string> {
  const client = await issueClient(layout.pki, user, groups);
  return writeKubeconfig(path, { server, caFile: layout.pki.caCert, user, client });
}

/** Writes node `nodeName`'s kubelet serving certificate (for its name and `addresses`) and key to `certFile` and `keyFile`. */
export async function writeKubeletServing(layout: ControlPlaneLayout, nodeName: string, addresses: readonly string[], certFile: string, keyFile: string): Promise<void> {
  const pair = await issueKubeletServing(layout.pki, nodeName, addresses);
  await Promise.all([writeFile(certFile, pair.certPem), writeFile(keyFile, pair.keyPem, { mode: 0o600 })]);
}

/** Creates the PKI and the components' kubeconfigs (the bootstrap RBAC roles bind these user names); `extraServerNames` are more names for the serving certificate (a test's relay address). */
export async function prepareControlPlane(layout: ControlPlaneLayout, n: ControlPlaneNetwork, extraServerNames: readonly string[] = []): Promise<void> {
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await createPki(layout.pki.dir, serverNames(n, extraServerNames));
  await Promise.all([
    clientKubeconfig(layout, n, layout.adminKubeconfig, 'meshlet-admin', ['system:masters']),
    clientKubeconfig(layout, n, layout.controllerManagerKubeconfig, 'system:kube-controller-manager'),
    clientKubeconfig(layout, n, layout.schedulerKubeconfig, 'system:kube-scheduler'),
  ]);
}

function readyz(url: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${url}/readyz`, { ca, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Waits until the API server answers /readyz (about 2 s after start on these machines) at `url` (default: its own address). */
export async function waitForApiServer(layout: ControlPlaneLayout, n: ControlPlaneNetwork, timeoutMs = 60_000, url = apiServerUrl(n)): Promise<void> {
  const ca = await readFile(layout.pki.caCert, 'utf8');
  const deadline = Date.now() + timeoutMs;
  while (!(await readyz(url, ca))) {
    if (Date.now() > deadline) throw new SandboxError(`the API server at ${url} was not ready within ${timeoutMs / 1000} s; see ${layout.log('kube-apiserver')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Installs Istio's and the Gateway API's CRDs server-side (httproutes alone is over client-side apply's 256 KiB annotation) and waits until they are served. */
export async function installCrds(binaries: ControlPlaneBinaries, kubeconfig: string, exec: (argv: string[]) => Promise<unknown> = (argv) => run(argv[0]!, argv.slice(1))): Promise<void> {
  const kubectl = [binaries.path('kubectl'), '--kubeconfig', kubeconfig];
  await exec([...kubectl, 'apply', '--server-side', '-f', `${binaries.crds}/istio.yaml`, '-f', `${binaries.crds}/gateway-api/`]);
  await exec([...kubectl, 'wait', '--for', 'condition=Established', 'crd', '--all', '--timeout', '60s']);
}

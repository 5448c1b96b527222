// What meshlet needs in the sandbox's cluster before its processes start: its
// namespace, ServiceAccounts and RBAC exactly as shipped (daemonset/rbac.yaml),
// an API token for the agent and one for the CA (ServiceAccount token Secrets,
// which the controller manager fills), and each node's meshlet pod
// (node-pod.ts). The agents and the CA then talk to the API server under their
// own ServiceAccounts, so RBAC is what a real cluster enforces.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Secret } from '@kubernetes/client-node';
import { SandboxError } from '../lib/core/errors.ts';
import { statusCodeOf } from '../lib/cluster/sources/kube-client.ts';
import { applyManifest, type ObjectResult } from './apply.ts';
import { openCluster, type SandboxCluster } from './cluster-client.ts';
import { controlPlaneLayout } from './controlplane/components.ts';
import { writeKubeconfig } from './controlplane/kubeconfig.ts';
import type { SandboxInfo } from './info.ts';
import { REPO_ROOT } from './layout.ts';
import { MESHLET_NAMESPACE, nodePod } from './node-pod.ts';

export const RBAC_MANIFEST = join(REPO_ROOT, 'daemonset', 'rbac.yaml');
const TOKEN_WAIT_MS = 30_000;

const tokenSecret = (account: string): V1Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  type: 'kubernetes.io/service-account-token',
  metadata: { name: `${account}-token`, namespace: MESHLET_NAMESPACE, annotations: { 'kubernetes.io/service-account.name': account } },
});

function refusals(results: readonly ObjectResult[], what: string): void {
  const refused = results.filter((r) => r.action === 'refused');
  if (refused.length > 0) throw new SandboxError(`the API server refused ${what}: ${refused.map((r) => `${r.ref}: ${r.reason}`).join('; ')}`);
}

/** The token the controller manager put into the account's token Secret. */
async function waitForToken(cluster: SandboxCluster, account: string): Promise<string> {
  const deadline = Date.now() + TOKEN_WAIT_MS;
  for (;;) {
    try {
      const secret = await cluster.core.readNamespacedSecret({ namespace: MESHLET_NAMESPACE, name: `${account}-token` });
      const token = secret.data?.token;
      if (token) return Buffer.from(token, 'base64').toString();
    } catch (err) {
      if (statusCodeOf(err) !== 404) throw err;
    }
    if (Date.now() > deadline) throw new SandboxError(`the controller manager did not fill Secret ${MESHLET_NAMESPACE}/${account}-token within ${TOKEN_WAIT_MS / 1000} s; see ${controlPlaneLayout(cluster.info.controlPlane.dir).log('kube-controller-manager')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Installs meshlet's accounts and writes the agents' and the CA's kubeconfigs (against the API server's in-sandbox address). */
export async function installMeshlet(info: SandboxInfo): Promise<void> {
  const name = info.name;
  refusals(await applyManifest(name, await readFile(RBAC_MANIFEST, 'utf8'), RBAC_MANIFEST), RBAC_MANIFEST);
  const secrets = [tokenSecret('meshlet-agent'), tokenSecret('meshlet-ca')];
  refusals(await applyManifest(name, secrets.map((s) => JSON.stringify(s)).join('\n---\n'), 'meshlet token Secrets'), 'meshlet\'s token Secrets');
  const cluster = await openCluster(name);
  const caFile = controlPlaneLayout(info.controlPlane.dir).pki.caCert;
  const server = info.controlPlane.server;
  const agentToken = await waitForToken(cluster, 'meshlet-agent');
  for (const node of info.nodes) await writeKubeconfig(node.agentKubeconfig, { server, caFile, user: 'meshlet-agent', token: agentToken });
  if (info.ca) await writeKubeconfig(info.ca.kubeconfig, { server, caFile, user: 'meshlet-ca', token: await waitForToken(cluster, 'meshlet-ca') });
  const pods = info.nodes.map((n) => JSON.stringify(nodePod(n.name))).join('\n---\n');
  refusals(await applyManifest(name, pods, 'meshlet node pods', { waitForPods: false }), 'the meshlet node pods');
}

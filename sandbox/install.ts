// What meshlet needs in the sandbox's cluster before its processes start: its
// namespace, ServiceAccounts and RBAC as `meshlet install` renders them
// (daemonset/rbac.yaml, the Namespace labelled for Pod Security),
// an API token for the agent and one for the CA (ServiceAccount token Secrets,
// which the controller manager fills), and each node's meshlet pod
// (node-pod.ts). The agents and the CA then talk to the API server under their
// own ServiceAccounts, so RBAC is what a real cluster enforces.
import type { V1Secret } from '@kubernetes/client-node';
import { SandboxError } from '../lib/core/errors.ts';
import { statusCodeOf } from '../lib/cluster/sources/kube-client.ts';
import { installDefaults, type InstallOptions } from '../lib/install/options.ts';
import { RBAC_FILE, rbacManifests } from '../lib/install/rbac.ts';
import { installObjects } from '../lib/install/render.ts';
import { parseDuration } from '../lib/core/duration.ts';
import { CONTROL_PLANE_NETWORK, DAEMONSET_INBOUND_SOURCE4, DAEMONSET_INBOUND_SOURCE6 } from './layout.ts';
import { applyManifest, type ObjectResult } from './apply.ts';
import { openCluster, type SandboxCluster } from './cluster-client.ts';
import { controlPlaneLayout } from './controlplane/components.ts';
import { writeKubeconfig } from './controlplane/kubeconfig.ts';
import type { SandboxInfo } from './info.ts';
import { NODE_NAMESPACE_READER } from './kubelet/pod-security.ts';
import { MESHLET_NAMESPACE, nodePod } from './node-pod.ts';

const TOKEN_WAIT_MS = 30_000;

const tokenSecret = (account: string): V1Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  type: 'kubernetes.io/service-account-token',
  metadata: { name: `${account}-token`, namespace: MESHLET_NAMESPACE, annotations: { 'kubernetes.io/service-account.name': account } },
});

/** Objects as one manifest, for applyManifest. */
const manifestOf = (objects: readonly object[]): string => objects.map((o) => JSON.stringify(o)).join('\n---\n');

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

/** The sandbox's own RBAC, whichever way meshlet runs: the nodes' kubelets read Namespaces for their Pod Security level (kubelet/pod-security.ts). */
export async function installNodeRbac(info: SandboxInfo): Promise<void> {
  refusals(await applyManifest(info.name, manifestOf(NODE_NAMESPACE_READER), 'the nodes\' Namespace reader'), 'the nodes\' Namespace reader RBAC');
}

/**
 * What `meshlet install` renders for this sandbox, applied through its API
 * server: the same objects a cluster gets, with the sandbox's Service ranges
 * (and its certificate lifetime, when set).
 */
export async function installFromManifests(info: SandboxInfo): Promise<void> {
  const options: InstallOptions = {
    ...installDefaults(),
    serviceCidrs: CONTROL_PLANE_NETWORK.serviceCidrs,
    inboundSourceIp4: DAEMONSET_INBOUND_SOURCE4,
    inboundSourceIp6: DAEMONSET_INBOUND_SOURCE6,
    ...(info.certTtl === undefined ? {} : { certTtl: parseDuration(info.certTtl, '--cert-ttl') }),
    ...info.ztunnelLimits,
  };
  refusals(await applyManifest(info.name, manifestOf(installObjects(options)), 'meshlet install', { waitForPods: false }), 'the objects of `meshlet install`');
}

/** Installs meshlet's accounts and writes the agents' and the CA's kubeconfigs (against the API server's in-sandbox address). */
export async function installMeshlet(info: SandboxInfo): Promise<void> {
  const name = info.name;
  // As `meshlet install` renders them: its Namespace labelled for Pod Security's privileged level, which the node pods need.
  refusals(await applyManifest(name, manifestOf(rbacManifests(MESHLET_NAMESPACE).map((m) => m.object)), RBAC_FILE), RBAC_FILE);
  refusals(await applyManifest(name, manifestOf([tokenSecret('meshlet-agent'), tokenSecret('meshlet-ca')]), 'meshlet token Secrets'), 'meshlet\'s token Secrets');
  const cluster = await openCluster(name);
  const caFile = controlPlaneLayout(info.controlPlane.dir).pki.caCert;
  const server = info.controlPlane.server;
  const agentToken = await waitForToken(cluster, 'meshlet-agent');
  for (const node of info.nodes) await writeKubeconfig(node.agentKubeconfig, { server, caFile, user: 'meshlet-agent', token: agentToken });
  if (info.ca) await writeKubeconfig(info.ca.kubeconfig, { server, caFile, user: 'meshlet-ca', token: await waitForToken(cluster, 'meshlet-ca') });
  refusals(await applyManifest(name, manifestOf(info.nodes.map((n) => nodePod(n.name))), 'meshlet node pods', { waitForPods: false }), 'the meshlet node pods');
}

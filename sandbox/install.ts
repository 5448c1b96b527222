// meshlet in the sandbox's cluster, installed as users install it: the
// objects `meshlet install` renders, applied through the API server, with
// the sandbox's Service ranges and inbound source addresses. The DaemonSet
// controller, the scheduler and each node's kubelet then run the agents, the
// ztunnels and the CA under their own ServiceAccounts, so RBAC is what a real
// cluster enforces. Beside them, the sandbox's own RBAC for its kubelets.
import { SandboxError } from '../lib/core/errors.ts';
import { configArgs } from '../lib/config/flags.ts';
import { INSTALL_FLAGS, installDefaults, type InstallOptions } from '../lib/install/options.ts';
import { installObjects } from '../lib/install/render.ts';
import { parseDuration } from '../lib/core/duration.ts';
import { CONTROL_PLANE_NETWORK, INBOUND_SOURCE4, INBOUND_SOURCE6, NODE_CNI_BIN_DIR, NODE_CNI_CONF_DIR } from './layout.ts';
import { applyManifest, type ObjectResult } from './apply.ts';
import type { SandboxInfo } from './info.ts';
import { NODE_NAMESPACE_READER } from './kubelet/pod-security.ts';

/** Objects as one manifest, for applyManifest. */
const manifestOf = (objects: readonly object[]): string => objects.map((o) => JSON.stringify(o)).join('\n---\n');

function refusals(results: readonly ObjectResult[], what: string): void {
  const refused = results.filter((r) => r.action === 'refused');
  if (refused.length > 0) throw new SandboxError(`the API server refused ${what}: ${refused.map((r) => `${r.ref}: ${r.reason}`).join('; ')}`);
}

/** The sandbox's own RBAC: the nodes' kubelets read Namespaces for their Pod Security level (kubelet/pod-security.ts). */
export async function installNodeRbac(info: SandboxInfo): Promise<void> {
  refusals(await applyManifest(info.name, manifestOf(NODE_NAMESPACE_READER), 'the nodes\' Namespace reader'), 'the nodes\' Namespace reader RBAC');
}

/**
 * The `meshlet install` settings this sandbox's network needs: its Service
 * ranges, and the inbound source addresses every node holds on its loopback.
 */
export const SANDBOX_INSTALL_SETTINGS: Pick<InstallOptions, 'serviceCidrs' | 'inboundSourceIp4' | 'inboundSourceIp6' | 'cniConfDir' | 'cniBinDir'> = {
  serviceCidrs: CONTROL_PLANE_NETWORK.serviceCidrs,
  inboundSourceIp4: INBOUND_SOURCE4,
  inboundSourceIp6: INBOUND_SOURCE6,
  cniConfDir: NODE_CNI_CONF_DIR,
  cniBinDir: NODE_CNI_BIN_DIR,
};

/** The same as `meshlet install` flags, for installing meshlet by hand into a sandbox made with `up --no-install`. */
export const sandboxInstallArgs = (): string[] => configArgs(INSTALL_FLAGS, SANDBOX_INSTALL_SETTINGS);

/**
 * What `meshlet install` renders for this sandbox, applied through its API
 * server: the same objects a cluster gets, with the sandbox's settings (and
 * its certificate lifetime and the ztunnels' bounds, when set).
 */
export async function installFromManifests(info: SandboxInfo): Promise<void> {
  const options: InstallOptions = {
    ...installDefaults(),
    ...SANDBOX_INSTALL_SETTINGS,
    ...(info.certTtl === undefined ? {} : { certTtl: parseDuration(info.certTtl, '--cert-ttl') }),
    ...info.ztunnelLimits,
  };
  refusals(await applyManifest(info.name, manifestOf(installObjects(options)), 'meshlet install', { waitForPods: false }), 'the objects of `meshlet install`');
}

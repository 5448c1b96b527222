// What `meshlet install` prints and `meshlet uninstall` names, in the order
// kubectl should take them: the install from the namespace and accounts to
// the workloads (the CA before the DaemonSet whose ztunnels ask it for
// certificates), the uninstall the other way round (the node pods go first,
// while the accounts they run as still exist).
import { caDeployment, caService, kubeconfigMap } from './ca-deployment.ts';
import { nodeDaemonSet } from './node.ts';
import type { InstallObject, Manifest } from './object.ts';
import { installDefaults, type InstallOptions } from './options.ts';
import { rbacManifests } from './rbac.ts';
import { renderStream } from './yaml-stream.ts';

/** Every object of the install, in apply order. */
export function installManifests(o: InstallOptions): Manifest[] {
  return [...rbacManifests(o.namespace), kubeconfigMap(o), caService(o), caDeployment(o), nodeDaemonSet(o)];
}

export const installObjects = (o: InstallOptions): InstallObject[] => installManifests(o).map((m) => m.object);

export function renderInstall(o: InstallOptions): string {
  return renderStream(installManifests(o), [
    'meshlet, rendered by `meshlet install`: apply with `meshlet install | kubectl apply -f -`.',
    'Needs the Istio and Gateway API CRDs, a cgroup v2 node with bpffs at /sys/fs/bpf, and Linux 6.5 or newer (daemonset/README.md).',
  ]);
}

/** The install's objects by identity only, in delete order. */
export function uninstallObjects(namespace: string): InstallObject[] {
  // No object's name depends on a setting but the namespace.
  const objects = installObjects({ ...installDefaults(), namespace });
  const workloads = new Set(['DaemonSet', 'Deployment']);
  const ordered = [...objects.filter((o) => workloads.has(o.kind)).reverse(), ...objects.filter((o) => !workloads.has(o.kind)).reverse()];
  return ordered.map((o) => ({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { name: o.metadata.name, ...(o.metadata.namespace === undefined ? {} : { namespace: o.metadata.namespace }) },
  }));
}

export function renderUninstall(namespace: string): string {
  return renderStream(uninstallObjects(namespace).map((object) => ({ object, comments: [] })), [
    'What `meshlet install` made, for `meshlet uninstall | kubectl delete --ignore-not-found -f -`.',
    'The node pods go first. What the CA made at run time goes with the namespace (its root Secret, the trust-bundle ConfigMap) or',
    'stays (waypoint Deployments, ClusterRoleBindings and ConfigMaps in Gateways\' namespaces): see daemonset/README.md, "Uninstall".',
  ]);
}

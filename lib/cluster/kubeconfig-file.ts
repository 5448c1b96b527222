// A kubeconfig file, loaded with an error that says what to fix. KubeConfig's
// module is imported only here, when a file is given: the package's index
// brings its generated API code (73 MiB of RSS, see sources/in-cluster.ts),
// which in-cluster components never load.
import type { KubeConfig } from '@kubernetes/client-node';
import { ConfigError } from '../core/errors.ts';
import { describeError } from './sources/kube-client.ts';

/** `path` as a KubeConfig whose current cluster has a server; `label` names it in errors (a flag, or "kubeconfig"). */
export async function loadKubeconfigFile(path: string, label = '--kubeconfig'): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node/dist/config.js');
  const kubeconfig = new KubeConfig();
  try {
    kubeconfig.loadFromFile(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${label} ${path}: ${describeError(err)}; check the path and that the file is a kubeconfig (YAML with clusters, users and contexts)`);
  }
  if (!kubeconfig.getCurrentCluster()?.server) throw new ConfigError(`${label} ${path} has no current cluster with a server URL; set current-context to a context whose cluster has a server`);
  return kubeconfig;
}

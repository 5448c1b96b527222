// Which pods may have capabilities beyond containerd's default set. Sandbox
// containers see the host's filesystems, so such a capability reaches past
// the node into the host (NET_ADMIN moves links through /run/netns,
// SYS_ADMIN mounts): the sandbox's kubelet grants them only where Pod
// Security admits them, in a namespace whose enforce level is privileged
// (the label `meshlet install` puts on its own, which only those who may
// update Namespaces can set). It reads the Namespace with the node's
// credentials, which the sandbox lets its nodes do (NODE_NAMESPACE_READER:
// the Node authorizer grants no Namespace reads), caching each answer
// briefly; a Namespace it cannot read counts as not privileged.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../../lib/core/log.ts';
import { describeError } from '../../lib/cluster/sources/kube-client.ts';

export const POD_SECURITY_ENFORCE = 'pod-security.kubernetes.io/enforce';
const CACHE_MS = 5000;

/** A ClusterRole and its binding for every node (group system:nodes): get Namespaces, for their Pod Security labels. */
export const NODE_NAMESPACE_READER = [
  {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole',
    metadata: { name: 'meshlet-sandbox:node-namespace-reader' },
    rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get'] }],
  },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding',
    metadata: { name: 'meshlet-sandbox:node-namespace-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'meshlet-sandbox:node-namespace-reader' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:nodes' }],
  },
] as const;

export class PrivilegedNamespaces {
  readonly #core: Pick<CoreV1Api, 'readNamespace'>;
  readonly #log: Logger;
  readonly #known = new Map<string, { privileged: boolean; at: number }>();

  constructor(core: Pick<CoreV1Api, 'readNamespace'>, log: Logger) {
    this.#core = core;
    this.#log = log;
  }

  /** Whether Pod Security enforces the privileged level in `namespace`. */
  async privileged(namespace: string): Promise<boolean> {
    const known = this.#known.get(namespace);
    if (known && Date.now() - known.at < CACHE_MS) return known.privileged;
    let privileged = false;
    try {
      const ns = await this.#core.readNamespace({ name: namespace });
      privileged = ns.metadata?.labels?.[POD_SECURITY_ENFORCE] === 'privileged';
    } catch (err) {
      this.#log.warn('namespace_unreadable', { namespace, error: describeError(err), effect: 'its pods get containerd\'s default capabilities at most' });
    }
    // Bounded by the node's pods' namespaces; stale ones are overwritten on use.
    this.#known.set(namespace, { privileged, at: Date.now() });
    return privileged;
  }
}

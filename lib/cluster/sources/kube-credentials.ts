// What the list and the watch need from a kubeconfig: the current cluster and
// a way to authenticate a request. Client-node's KubeConfig has both; so does
// InClusterCredentials (in-cluster.ts), which a process that only ever runs in
// a pod can use without loading KubeConfig's module.
import type { KubeConfig } from '@kubernetes/client-node';

export type KubeCredentials = Pick<KubeConfig, 'getCurrentCluster' | 'applySecurityAuthentication'>;

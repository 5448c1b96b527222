// The pods of the node DaemonSet `meshlet install` renders, as the sandbox
// tells them apart: `status` reads their containers' pids, `up` waits for them.
import type { V1Pod } from '@kubernetes/client-node';
import { NODE_DAEMONSET } from '../lib/install/names.ts';
import { DEFAULT_NAMESPACE } from '../lib/install/options.ts';

/** Where the sandbox installs meshlet: `meshlet install`'s default namespace. */
export const MESHLET_NAMESPACE = DEFAULT_NAMESPACE;

/** The node DaemonSet's pods carry its name label: this selects them (kubectl -l). */
export const NODE_POD_SELECTOR = `app.kubernetes.io/name=${NODE_DAEMONSET}`;

/** A pod of the node DaemonSet. */
export const isNodeDaemonSetPod = (pod: V1Pod): boolean =>
  pod.metadata?.namespace === MESHLET_NAMESPACE && pod.metadata.labels?.['app.kubernetes.io/name'] === NODE_DAEMONSET;

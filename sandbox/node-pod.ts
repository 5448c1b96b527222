// Each node's meshlet pod: until meshlet runs as the DaemonSet it ships
// (issue 12), the node supervisor runs the agent and ztunnel itself, and this
// pod gives them what a DaemonSet pod gives them on a real node: a Pod object
// on the node under the ztunnel's ServiceAccount, so that the ztunnel holds a
// token bound to a pod on its node (audience meshlet-ca) as the CA requires.
// The node supervisor does for it what the kubelet does for a projected token
// volume: requests the token through the TokenRequest API with the node's own
// credentials (kubelet/service-account-token.ts, as the kubelet's volume
// manager does) and rewrites the file well before it expires.
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../lib/core/log.ts';
import { describeError } from '../lib/cluster/sources/kube-client.ts';
import { NODE_DAEMONSET } from '../lib/install/names.ts';
import { writeFileAtomic } from './kubelet/atomic-writer.ts';
import { RetryDelay } from './kubelet/backoff.ts';
import { DEFAULT_TOKEN_SECONDS, requestBoundToken } from './kubelet/service-account-token.ts';

export const MESHLET_NAMESPACE = 'meshlet-system';
export const ZTUNNEL_SERVICE_ACCOUNT = 'meshlet-ztunnel';
export const CA_TOKEN_AUDIENCE = 'meshlet-ca';

export const nodePodName = (node: string): string => `meshlet-node-${node}`;

/** A pod of the node DaemonSet `meshlet install` renders (its pods carry the DaemonSet's name label). */
export const isNodeDaemonSetPod = (pod: V1Pod): boolean =>
  pod.metadata?.namespace === MESHLET_NAMESPACE && pod.metadata.labels?.['app.kubernetes.io/name'] === NODE_DAEMONSET;

/** The pod `sandbox up` creates for node `node`: host network, the ztunnel's ServiceAccount, an idle container. */
export function nodePod(node: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: nodePodName(node), namespace: MESHLET_NAMESPACE, labels: { 'app.kubernetes.io/name': 'meshlet-node', 'app.kubernetes.io/part-of': 'meshlet' } },
    spec: {
      nodeName: node,
      hostNetwork: true,
      serviceAccountName: ZTUNNEL_SERVICE_ACCOUNT,
      tolerations: [{ operator: 'Exists' }],
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'meshlet', image: 'meshlet' }],
    },
  };
}

/** Keeps `file` holding a fresh token bound to the node's meshlet pod. */
export class ZtunnelTokenFile {
  readonly #core: CoreV1Api;
  readonly #node: string;
  readonly #file: string;
  readonly #log: Logger;
  readonly #retry = new RetryDelay(500, 30_000);
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #first: (() => void) | undefined;

  constructor(kubeConfig: KubeConfig, node: string, file: string, log: Logger) {
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#node = node;
    this.#file = file;
    this.#log = log;
  }

  /** Resolves once the first token is written (or on stop). */
  start(): Promise<void> {
    const first = new Promise<void>((resolve) => (this.#first = resolve));
    void this.#refresh();
    return first;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#first?.();
  }

  async #refresh(): Promise<void> {
    if (this.#stopped) return;
    let nextMs: number;
    try {
      const pod = await this.#core.readNamespacedPod({ namespace: MESHLET_NAMESPACE, name: nodePodName(this.#node) });
      const { token, refreshAt } = await requestBoundToken(this.#core, {
        namespace: MESHLET_NAMESPACE,
        serviceAccount: ZTUNNEL_SERVICE_ACCOUNT,
        pod: { name: pod.metadata!.name!, uid: pod.metadata!.uid! },
        audiences: [CA_TOKEN_AUDIENCE],
        expirationSeconds: DEFAULT_TOKEN_SECONDS,
      }, Date.now());
      await writeFileAtomic(this.#file, token, 0o600);
      this.#retry.reset();
      this.#first?.();
      this.#first = undefined;
      nextMs = refreshAt - Date.now();
    } catch (err) {
      nextMs = this.#retry.next();
      this.#log.warn('cannot refresh the ztunnel\'s CA token', { pod: `${MESHLET_NAMESPACE}/${nodePodName(this.#node)}`, error: describeError(err), retryInMs: nextMs });
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#refresh(), nextMs);
  }
}

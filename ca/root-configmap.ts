// The mesh root certificate, published as a ConfigMap in the CA's own
// namespace, where the node DaemonSet's ztunnels mount it
// (lib/install/node.ts); the certificate is public, its key stays in the
// root Secret. Published in the background and retried with backoff, so
// signing never waits on it. A ConfigMap of that name that meshlet does not
// manage is never overwritten: the CA logs why and leaves it, and the
// ztunnels, lacking the root, trust no peer (fail closed).
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../lib/core/log.ts';
import { describeError } from '../lib/cluster/sources/kube-client.ts';
import { kubeApply } from '../lib/cluster/kube-api.ts';
import { lookup, notManaged, refusal } from './waypoint-apply.ts';
import { FIELD_MANAGER, trustBundleConfigMap } from './waypoint-objects.ts';

export type RootConfigMapState = { state: 'pending'; lastError?: string } | { state: 'published' } | { state: 'refused'; reason: string };

export interface RootConfigMapOptions {
  kubeconfig: KubeConfig;
  /** The CA's own namespace (that of --root-secret). */
  namespace: string;
  rootCertPem: string;
  log: Logger;
  /** First retry after a failure that retrying can cure; doubled up to maxRetryMs. */
  firstRetryMs?: number;
  maxRetryMs?: number;
}

export interface RootConfigMapPublisher {
  state(): RootConfigMapState;
  /** Settles once published or refused for good (never while retrying). */
  readonly settled: Promise<RootConfigMapState>;
  stop(): void;
}

export function publishRootConfigMap(o: RootConfigMapOptions): RootConfigMapPublisher {
  const desired = trustBundleConfigMap(o.namespace, o.rootCertPem);
  let current: RootConfigMapState = { state: 'pending' };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let settle: (s: RootConfigMapState) => void = () => {};
  const settled = new Promise<RootConfigMapState>((resolve) => { settle = resolve; });
  const finish = (s: RootConfigMapState) => {
    current = s;
    settle(s);
  };
  const refuse = (reason: string) => {
    o.log.error('mesh root not published: the ztunnels mounting it trust no peer until it is', { configMap: desired.what, reason });
    finish({ state: 'refused', reason });
  };

  const attempt = async (): Promise<void> => {
    const found = await lookup(o.kubeconfig, desired);
    if (found.state === 'refused') return refuse(found.message);
    if (found.state === 'present' && !found.managed) return refuse(notManaged(desired, 'and the CA publishes the mesh root there'));
    const answer = await kubeApply(o.kubeconfig, desired.path, desired.body, { fieldManager: FIELD_MANAGER, force: true });
    if (answer.status !== 200 && answer.status !== 201) return refuse(refusal(answer, `apply ${desired.what}`));
    o.log.info('mesh root published', { configMap: desired.what });
    finish({ state: 'published' });
  };

  const first = o.firstRetryMs ?? 1000;
  const max = o.maxRetryMs ?? 30_000;
  const run = (delayMs: number): void => {
    attempt().catch((err: unknown) => {
      if (stopped) return;
      const lastError = describeError(err);
      current = { state: 'pending', lastError };
      o.log.warn('mesh root not published yet; retrying', { configMap: desired.what, error: lastError, retryInMs: delayMs });
      timer = setTimeout(() => run(Math.min(delayMs * 2, max)), delayMs);
      timer.unref();
    });
  };
  run(first);

  return {
    state: () => current,
    settled,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

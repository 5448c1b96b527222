// Whether the agent is stopping because meshlet is being uninstalled: its
// DaemonSet is gone (kubectl delete removes it before the garbage collector
// deletes its pods) or being deleted (foreground deletion). The agent watches
// its DaemonSet while it runs, because `kubectl delete -f` may remove the
// agent's Role and ServiceAccount before its pod gets SIGTERM; at the stop
// it asks once more in case the watch was down. Anything else is an upgrade
// or a restart, and capture stays for the next agent: so does an answer the
// agent cannot get, because removing capture by mistake lets pods' traffic
// out unmeshed, while keeping it by mistake refuses their traffic (fail
// closed) until the pods restart.
import type { KubeConfig } from '@kubernetes/client-node';
import type { ObjectRef } from '../lib/config/flags.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { answerMessage, kubeRequest } from '../lib/cluster/kube-api.ts';
import { describeError, TrackedWatch } from '../lib/cluster/sources/kube-client.ts';
import type { Logger } from '../lib/core/log.ts';

export interface StopKind {
  uninstall: boolean;
  why: string;
}

const SHUTDOWN_TIMEOUT_MS = 5000;

const collectionPath = (ref: ObjectRef): string => `/apis/apps/v1/namespaces/${encodeURIComponent(ref.namespace)}/daemonsets`;
const describe = (ref: ObjectRef): string => `DaemonSet ${ref.namespace}/${ref.name}`;
const RECONNECT_MS = 1000;

/** What the watch last saw of the agent's DaemonSet. */
export type DaemonSetSeen = 'unknown' | 'present' | 'deleting' | 'gone';

/** The agent's own DaemonSet, watched by name (its Role grants get, list and watch on that name only). */
export class DaemonSetWatch {
  readonly #kubeconfig: KubeConfig;
  readonly #ref: ObjectRef;
  readonly #watch: TrackedWatch;
  readonly #log: Logger;
  #seen: DaemonSetSeen = 'unknown';
  #closed = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(kubeconfig: KubeConfig, ref: ObjectRef, log: Logger) {
    this.#kubeconfig = kubeconfig;
    this.#ref = ref;
    this.#log = log;
    this.#watch = new TrackedWatch(kubeconfig, { connected: () => {}, ended: () => {} });
  }

  get seen(): DaemonSetSeen {
    return this.#seen;
  }

  start(): void {
    if (this.#closed) return;
    const onEvent = (phase: string, obj: unknown): void => {
      if (phase === 'DELETED') this.#seen = 'gone';
      else if (phase === 'ADDED' || phase === 'MODIFIED') {
        const meta = isRecord(obj) && isRecord(obj.metadata) ? obj.metadata : {};
        this.#seen = typeof meta.deletionTimestamp === 'string' ? 'deleting' : 'present';
      }
    };
    const again = (err: unknown): void => {
      if (this.#closed) return;
      if (err) this.#log.warn('watching the agent\'s DaemonSet failed; retrying', { daemonSet: describe(this.#ref), error: describeError(err) });
      this.#retry = setTimeout(() => this.start(), RECONNECT_MS).unref();
    };
    // Without a resource version the watch opens with the object as it is now (ADDED), if it exists.
    this.#watch.watch(collectionPath(this.#ref), { fieldSelector: `metadata.name=${this.#ref.name}` }, onEvent, again).catch(again);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#watch.close();
  }

  /** Whether this stop is an uninstall: what the watch saw, else one read. */
  stopKind(): Promise<StopKind> {
    return stopKind(this.#kubeconfig, this.#ref, this.#seen);
  }
}

/** Uninstall or not, from what the watch saw, else from one read of the DaemonSet. */
export async function stopKind(kubeconfig: KubeConfig, daemonSet: ObjectRef, seen: DaemonSetSeen = 'unknown'): Promise<StopKind> {
  const what = describe(daemonSet);
  if (seen === 'gone') return { uninstall: true, why: `${what} was deleted` };
  if (seen === 'deleting') return { uninstall: true, why: `${what} is being deleted` };
  const path = `${collectionPath(daemonSet)}/${encodeURIComponent(daemonSet.name)}`;
  let answer;
  try {
    answer = await kubeRequest(kubeconfig, 'GET', path, undefined, SHUTDOWN_TIMEOUT_MS);
  } catch (err) {
    return { uninstall: false, why: `cannot tell whether ${what} is being deleted (${describeError(err)}): capture stays` };
  }
  if (answer.status === 404) return { uninstall: true, why: `${what} is gone` };
  if (answer.status !== 200) return { uninstall: false, why: `cannot read ${what} (HTTP ${answer.status}: ${answerMessage(answer)}): capture stays` };
  const meta = isRecord(answer.body) && isRecord(answer.body.metadata) ? answer.body.metadata : {};
  if (typeof meta.deletionTimestamp === 'string') return { uninstall: true, why: `${what} is being deleted` };
  return { uninstall: false, why: `${what} is still there (an upgrade or a restart): capture stays for the next agent` };
}

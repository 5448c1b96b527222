// client-node's KubeConfig makes a new undici Agent for every request it
// authenticates, so every API call opens a TLS connection of its own and
// leaves it idle until undici's keep-alive timeout. The bench's 100 pods,
// each polled every 100 ms until it runs, opened over 256 at once and
// overflowed the sandbox's API relay ("socket disconnected before secure TLS
// connection was established"). This one keeps the first Agent it makes and
// hands every request a view of it, so connections are reused: as many as
// there are requests in flight.
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import type { RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { Dispatcher } from 'undici';

/**
 * The shared Agent as one request's dispatcher. Callers close "their"
 * dispatcher when done, as client-node's per-request Agents need
 * (lib/cluster/sources/kube-client.ts does after a list): closing a view
 * leaves the shared Agent open for the others.
 */
class SharedAgentView extends Dispatcher {
  readonly #agent: Dispatcher;

  constructor(agent: Dispatcher) {
    super();
    this.#agent = agent;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#agent.dispatch(options, handler);
  }

  override close(callback: () => void): void;
  override close(): Promise<void>;
  override close(callback?: () => void): Promise<void> | void {
    if (callback) return void queueMicrotask(callback);
    return Promise.resolve();
  }

  override destroy(err: Error | null, callback: () => void): void;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null): Promise<void>;
  override destroy(): Promise<void>;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b;
    if (callback) return void queueMicrotask(callback);
    return Promise.resolve();
  }
}

export class PooledKubeConfig extends KubeConfig {
  #shared: SharedAgentView | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const made = context.getDispatcher();
    if (made === undefined) return;
    if (this.#shared === undefined) this.#shared = new SharedAgentView(made);
    // Made for this request alone and not used yet: closing it costs nothing.
    else void made.close();
    context.setDispatcher(this.#shared);
  }
}

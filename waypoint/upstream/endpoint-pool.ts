// The connections to one endpoint in one protocol, as an Envoy connection
// pool keeps them: a request takes a connection with room at once, or waits
// (pending) while one is opened or freed. Each connection is a hop-2 tunnel
// carrying an undici Client: one request at a time for HTTP/1.1 (keep-alive),
// up to H2_STREAMS_PER_CONNECTION for HTTP/2. The cluster's circuit breakers
// bound what is open, pending and in flight; a connection that has carried
// maxRequestsPerConnection requests is closed once it is idle.
import type { Duplex } from 'node:stream';
import type { Client } from 'undici';
import type { CircuitBreakers } from './circuit-breakers.ts';
import { endpointKey, type UpstreamEndpoint } from './endpoint.ts';
import { failureOf, type ClusterFailure } from './failures.ts';
import { clientOnTunnel, H2_STREAMS_PER_CONNECTION } from './tunnel-client.ts';
import type { PendingTunnel, TunnelConnector } from './tunnel-connector.ts';

/** A connection with a request's place reserved on it; release() once the response is over (or failed). */
export interface Lease {
  readonly client: Client;
  release(): void;
}

export type Acquired = { ok: true; lease: Lease } | { ok: false; failure: ClusterFailure };

export interface EndpointPoolOptions {
  endpoint: UpstreamEndpoint;
  http2: boolean;
  connector: TunnelConnector;
  breakers: CircuitBreakers;
}

interface Connection {
  /** Set once the tunnel is up. */
  client: Client | undefined;
  stream: Duplex | undefined;
  tunnel: PendingTunnel;
  /** Requests on it now. */
  streams: number;
  /** Requests it has carried. */
  served: number;
  /** Listed in #free. */
  free: boolean;
  /** Takes no new requests (maxRequestsPerConnection reached); closed once idle. */
  retiring: boolean;
  gone: boolean;
}

interface Waiter {
  resolve(result: Acquired): void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class EndpointPool {
  readonly #o: EndpointPoolOptions;
  readonly #key: string;
  readonly #capacity: number;
  readonly #connections: Connection[] = [];
  /** Connected, with room; the most recently freed last, so a warm connection is reused first. */
  readonly #free: Connection[] = [];
  /** In arrival order; a Set so that an aborted waiter leaves in O(1). */
  readonly #waiters = new Set<Waiter>();
  #leased = 0;
  #closed = false;

  constructor(options: EndpointPoolOptions) {
    this.#o = options;
    this.#key = endpointKey(options.endpoint);
    this.#capacity = options.http2 ? H2_STREAMS_PER_CONNECTION : 1;
  }

  /** Requests in flight or waiting here: least request balances on it. */
  get outstanding(): number {
    return this.#leased + this.#waiters.size;
  }

  /** Connections open or opening. */
  get connections(): number {
    return this.#connections.length;
  }

  acquire(signal?: AbortSignal): Promise<Acquired> {
    if (this.#closed) return Promise.resolve({ ok: false, failure: { kind: 'local_reset', message: `the pool for ${this.#key} is closed` } });
    if (signal?.aborted) return Promise.resolve({ ok: false, failure: failureOf(signal.reason, signal) });
    const ready = this.#takeFree();
    if (ready) return Promise.resolve(this.#lease(ready));
    if (!this.#o.breakers.tryEnterPending()) return Promise.resolve({ ok: false, failure: { kind: 'overflow', limit: 'pending' } });
    return new Promise((resolve) => {
      const waiter: Waiter = {
        resolve,
        signal,
        onAbort: () => {
          if (!this.#waiters.delete(waiter)) return;
          this.#o.breakers.leavePending();
          resolve({ ok: false, failure: failureOf(signal?.reason, signal) });
        },
      };
      this.#waiters.add(waiter);
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#grow();
    });
  }

  /** Waiting requests fail; open requests finish, then their connections close. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#failWaiters({ kind: 'local_reset', message: `the cluster no longer sends to ${this.#key}` });
    await Promise.all([...this.#connections].map((c) => {
      c.tunnel.cancel();
      return this.#drop(c, 'close', false);
    }));
  }

  /** A connected connection with room, if any; entries that filled up or whose stream died are dropped on the way. */
  #takeFree(): Connection | undefined {
    while (this.#free.length > 0) {
      const c = this.#free[this.#free.length - 1]!;
      if (!c.gone && !c.retiring && c.streams < this.#capacity && !c.stream!.destroyed) return c;
      this.#free.pop();
      c.free = false;
    }
    return undefined;
  }

  #lease(c: Connection): Acquired {
    if (!this.#o.breakers.tryStartRequest()) return { ok: false, failure: { kind: 'overflow', limit: 'requests' } };
    c.streams++;
    c.served++;
    this.#leased++;
    const max = this.#o.breakers.maxRequestsPerConnection;
    if (max > 0 && c.served >= max) c.retiring = true;
    if (c.free && (c.retiring || c.streams >= this.#capacity)) {
      this.#free.splice(this.#free.lastIndexOf(c), 1);
      c.free = false;
    }
    let released = false;
    return {
      ok: true,
      lease: {
        client: c.client!,
        release: () => {
          if (released) return;
          released = true;
          this.#release(c);
        },
      },
    };
  }

  #release(c: Connection): void {
    c.streams--;
    this.#leased--;
    this.#o.breakers.requestEnded();
    if (c.gone) return;
    if (c.retiring) {
      if (c.streams === 0) void this.#drop(c, 'close');
      return;
    }
    this.#serve(c);
  }

  /** Opens connections while the waiting requests outnumber the room of those being opened, as the breakers allow. */
  #grow(): void {
    const opening = this.#connections.filter((c) => !c.client).length;
    let room = opening * this.#capacity;
    while (!this.#closed && this.#waiters.size > room && this.#o.breakers.tryOpenConnection(this.#connections.length === 0)) {
      this.#open();
      room += this.#capacity;
    }
  }

  #open(): void {
    const c: Connection = { client: undefined, stream: undefined, tunnel: this.#o.connector.open(this.#o.endpoint), streams: 0, served: 0, free: false, retiring: false, gone: false };
    this.#connections.push(c);
    c.tunnel.ready.then(
      (stream) => {
        if (c.gone || this.#closed) return void stream.destroy();
        c.stream = stream;
        const client = clientOnTunnel(stream, this.#key, this.#o.http2);
        c.client = client;
        const gone = () => void this.#drop(c, 'destroy');
        stream.once('close', gone);
        client.once('disconnect', gone);
        client.once('connectionError', gone);
        this.#serve(c);
      },
      (err: unknown) => {
        void this.#drop(c, 'destroy', false);
        // Nothing else will come up for the requests waiting here: fail them now, as Envoy purges its pending streams.
        if (this.#connections.length === 0) this.#failWaiters(failureOf(err));
      },
    );
  }

  /** Hands waiting requests to `c` while it has room; lists it free if room is left. */
  #serve(c: Connection): void {
    for (const w of this.#waiters) {
      if (c.retiring || c.streams >= this.#capacity) break;
      this.#waiters.delete(w);
      w.signal?.removeEventListener('abort', w.onAbort);
      this.#o.breakers.leavePending();
      w.resolve(this.#lease(c));
    }
    if (!c.free && !c.retiring && c.streams < this.#capacity) {
      c.free = true;
      this.#free.push(c);
    }
  }

  #drop(c: Connection, how: 'close' | 'destroy', regrow = true): Promise<void> {
    if (c.gone) return Promise.resolve();
    c.gone = true;
    this.#connections.splice(this.#connections.indexOf(c), 1);
    if (c.free) {
      c.free = false;
      this.#free.splice(this.#free.indexOf(c), 1);
    }
    this.#o.breakers.connectionClosed();
    if (regrow && this.#waiters.size > 0) this.#grow();
    const client = c.client;
    if (!client) return Promise.resolve();
    return (how === 'close' ? client.close() : client.destroy()).catch(() => {});
  }

  #failWaiters(failure: ClusterFailure): void {
    for (const w of this.#waiters) {
      w.signal?.removeEventListener('abort', w.onAbort);
      this.#o.breakers.leavePending();
      w.resolve({ ok: false, failure });
    }
    this.#waiters.clear();
  }
}

// The DestinationRule's loadBalancer, applied per request (never per
// connection) to the endpoints the cluster offers: the healthy ones, or all
// of them in panic. Equal weights throughout, as Kubernetes endpoints have.
// Randomness is injected so that tests can fix it.
import type { LoadBalancerPolicy } from '../../lib/l7/cluster-policy.ts';
import type { UpstreamEndpoint } from './endpoint.ts';
import { RingHash } from './ring-hash.ts';

/** A uniform number in [0, 1), as Math.random. */
export type Random = () => number;

export interface PickContext {
  /** The request's hash for consistent hashing; undefined when its key is absent (then a random point). */
  readonly hash: number | undefined;
  /** 0 for the first choice; n when a retry predicate refused n choices before. */
  readonly attempt: number;
  /** Requests outstanding on an endpoint (in flight or waiting for a connection). */
  outstanding(endpoint: UpstreamEndpoint): number;
}

export interface LoadBalancer {
  /** One of `hosts`, which is never empty. */
  pick(hosts: readonly UpstreamEndpoint[], context: PickContext): UpstreamEndpoint;
}

const index = (random: Random, n: number): number => Math.min(n - 1, Math.floor(random() * n));

/** Envoy's round robin over equal weights: the next endpoint each request. */
export class RoundRobin implements LoadBalancer {
  #next = 0;

  pick(hosts: readonly UpstreamEndpoint[]): UpstreamEndpoint {
    const host = hosts[this.#next % hosts.length]!;
    // Wrap before it loses integer precision; the modulo keeps the order.
    this.#next = (this.#next + 1) % Number.MAX_SAFE_INTEGER;
    return host;
  }
}

/**
 * Envoy's least request over equal weights: the power of two choices. Two
 * endpoints drawn at random (with replacement), the one with fewer
 * outstanding requests wins, the first on a tie.
 */
export class LeastRequest implements LoadBalancer {
  readonly #random: Random;

  constructor(random: Random) {
    this.#random = random;
  }

  pick(hosts: readonly UpstreamEndpoint[], context: PickContext): UpstreamEndpoint {
    const first = hosts[index(this.#random, hosts.length)]!;
    const second = hosts[index(this.#random, hosts.length)]!;
    return context.outstanding(second) < context.outstanding(first) ? second : first;
  }
}

export class RandomChoice implements LoadBalancer {
  readonly #random: Random;

  constructor(random: Random) {
    this.#random = random;
  }

  pick(hosts: readonly UpstreamEndpoint[]): UpstreamEndpoint {
    return hosts[index(this.#random, hosts.length)]!;
  }
}

/** Consistent hashing on a ring; a request without a hash lands on a random point, as in Envoy. */
export class ConsistentHash implements LoadBalancer {
  readonly #ring = new RingHash();
  readonly #random: Random;

  constructor(random: Random) {
    this.#random = random;
  }

  pick(hosts: readonly UpstreamEndpoint[], context: PickContext): UpstreamEndpoint {
    const hash = context.hash ?? Math.floor(this.#random() * 2 ** 32) >>> 0;
    return this.#ring.pick(hosts, hash, context.attempt);
  }
}

export function createLoadBalancer(policy: LoadBalancerPolicy, random: Random = Math.random): LoadBalancer {
  switch (policy.kind) {
    case 'round_robin':
      return new RoundRobin();
    case 'least_request':
      return new LeastRequest(random);
    case 'random':
      return new RandomChoice(random);
    case 'consistent_hash':
      return new ConsistentHash(random);
  }
}

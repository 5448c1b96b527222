// Ring hash over equally weighted endpoints, as Envoy's ring hash balancer:
// each endpoint owns points on a 32-bit ring hashed from `ip:port_<i>`, and
// a request takes the first point at or after its hash. Unlike Envoy, whose
// points per endpoint follow from a minimum ring size (so adding or removing
// one endpoint reshuffles some keys among the others too), every endpoint
// owns the same POINTS_PER_ENDPOINT points, so a membership change moves only
// the keys of the endpoint that came or went. The ring is built once per
// endpoint list (the cluster hands the same array until membership or health
// changes), so one list of endpoints costs one ring, whatever the requests.
import { endpointKey, type UpstreamEndpoint } from './endpoint.ts';
import { hash32 } from './hash.ts';

/** Points per endpoint: four endpoints make Envoy's default minimum ring of 1024. */
const POINTS_PER_ENDPOINT = 256;
/** Keeps a ring bounded whatever the endpoint count; past it, endpoints own fewer points each. */
const MAX_RING_SIZE = 65_536;

interface Ring {
  readonly hosts: readonly UpstreamEndpoint[];
  /** Point hashes, ascending. */
  readonly points: Uint32Array;
  /** Index into `hosts` of each point. */
  readonly owners: Uint32Array;
}

function buildRing(hosts: readonly UpstreamEndpoint[]): Ring {
  const perHost = Math.max(1, Math.min(POINTS_PER_ENDPOINT, Math.floor(MAX_RING_SIZE / hosts.length)));
  const entries: { hash: number; owner: number }[] = [];
  hosts.forEach((h, owner) => {
    const key = endpointKey(h);
    for (let i = 0; i < perHost; i++) entries.push({ hash: hash32(`${key}_${i}`), owner });
  });
  // Ties broken by owner so that the ring does not depend on sort stability.
  entries.sort((a, b) => a.hash - b.hash || a.owner - b.owner);
  return { hosts, points: Uint32Array.from(entries, (e) => e.hash), owners: Uint32Array.from(entries, (e) => e.owner) };
}

/** Index of the first point >= hash, wrapping to 0. */
function lowerBound(points: Uint32Array, hash: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid]! < hash) lo = mid + 1;
    else hi = mid;
  }
  return lo === points.length ? 0 : lo;
}

export class RingHash {
  #ring: Ring | undefined;

  /**
   * The endpoint owning `hash`; attempt n > 0 (a retry predicate refused the
   * previous choice) moves n points on, as Envoy's ring does.
   */
  pick(hosts: readonly UpstreamEndpoint[], hash: number, attempt: number): UpstreamEndpoint {
    if (this.#ring?.hosts !== hosts) this.#ring = buildRing(hosts);
    const { points, owners } = this.#ring;
    return hosts[owners[(lowerBound(points, hash) + attempt) % points.length]!]!;
  }
}

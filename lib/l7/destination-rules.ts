// Which DestinationRule a waypoint applies to a host, and the ClusterPolicy
// it gives a (port, subset). Istio's lookup for a proxy: the rules visible to
// its namespace, from its own namespace first, then the service's, then the
// root namespace; an exact host beats a wildcard; several rules for one host
// in one namespace merge oldest first (the first traffic policy wins, subsets
// are joined, the first of a name wins). Levels then apply in Istio's order:
// rule, rule port, subset, subset port, each part replacing the one above.
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.ts';
import { DEFAULT_CLUSTER_POLICY, type ClusterPolicy } from './cluster-policy.ts';
import type { ConvertedDestinationRule, DestinationSubset, PolicyLevel, TrafficPolicyParts } from './destination-rule.ts';
import { DEFAULT_DOMAIN, hostMatches, hostSpecificity, serviceOfHost } from './hosts.ts';

export interface DestinationRuleOptions {
  /** The waypoint's namespace: rules must be visible to it. */
  waypointNamespace: string;
  rootNamespace?: string;
  domain?: string;
}

interface Merged {
  /** The rules merged, oldest first, as `namespace/name`. */
  keys: string[];
  policy: PolicyLevel;
  subsets: Map<string, DestinationSubset>;
}

/** Bounds the per-host cache: hosts come from the services the waypoint serves. */
const MAX_CACHED_HOSTS = 4096;

export class DestinationRuleIndex {
  readonly rules: readonly ConvertedDestinationRule[];
  #options: Required<DestinationRuleOptions>;
  #cache = new Map<string, Merged | null>();

  constructor(rules: readonly ConvertedDestinationRule[], options: DestinationRuleOptions) {
    this.#options = { rootNamespace: DEFAULT_ROOT_NAMESPACE, domain: DEFAULT_DOMAIN, ...options };
    const visible = (r: ConvertedDestinationRule) => r.forWaypoints && (r.exportTo === null || r.exportTo.includes(this.#options.waypointNamespace));
    this.rules = [...rules].filter(visible).sort((a, b) => a.createdAt - b.createdAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** `namespace/name` of the rules that apply to `host`, oldest first; empty when none does. */
  rulesFor(host: string): string[] {
    return this.#merged(host)?.keys ?? [];
  }

  /** The subset's labels; undefined when no applicable rule defines it (Envoy answers 503, no cluster). */
  subsetLabels(host: string, subset: string): Readonly<Record<string, string>> | undefined {
    return this.#merged(host)?.subsets.get(subset)?.labels;
  }

  /** What reaching `host`'s endpoints on `port` (in `subset`) is governed by. */
  clusterPolicy(host: string, port: number, subset?: string): ClusterPolicy {
    const merged = this.#merged(host);
    const policy: ClusterPolicy = { ...DEFAULT_CLUSTER_POLICY };
    if (!merged) return policy;
    applyLevel(policy, merged.policy, port);
    const s = subset === undefined ? undefined : merged.subsets.get(subset);
    if (s) applyLevel(policy, s.policy, port);
    return policy;
  }

  #merged(host: string): Merged | null {
    const cached = this.#cache.get(host);
    if (cached !== undefined) return cached;
    const merged = this.#merge(host);
    if (this.#cache.size >= MAX_CACHED_HOSTS) this.#cache.clear();
    this.#cache.set(host, merged);
    return merged;
  }

  #merge(host: string): Merged | null {
    const { waypointNamespace, rootNamespace, domain } = this.#options;
    const candidates = this.rules.filter((r) => hostMatches(r.host, host));
    const order = [waypointNamespace, serviceOfHost(host, domain)?.namespace, rootNamespace];
    for (const ns of order) {
      const inNs = candidates.filter((r) => r.namespace === ns);
      if (inNs.length === 0) continue;
      const best = Math.max(...inNs.map((r) => hostSpecificity(r.host)));
      const chosen = inNs.filter((r) => hostSpecificity(r.host) === best);
      const merged: Merged = { keys: [], policy: { ports: [] }, subsets: new Map() };
      let hasPolicy = false;
      for (const r of chosen) {
        merged.keys.push(r.key);
        if (!hasPolicy && (r.policy.loadBalancer || r.policy.connectionPool || r.policy.outlierDetection || r.policy.ports.length > 0)) {
          merged.policy = r.policy;
          hasPolicy = true;
        }
        for (const s of r.subsets) if (!merged.subsets.has(s.name)) merged.subsets.set(s.name, s);
      }
      return merged;
    }
    return null;
  }
}

function applyParts(policy: ClusterPolicy, parts: TrafficPolicyParts): void {
  if (parts.loadBalancer) policy.loadBalancer = parts.loadBalancer;
  if (parts.connectionPool) policy.connectionPool = parts.connectionPool;
  if (parts.outlierDetection) policy.outlierDetection = parts.outlierDetection;
}

function applyLevel(policy: ClusterPolicy, level: PolicyLevel, port: number): void {
  applyParts(policy, level);
  const portLevel = level.ports.find((p) => p.port === port);
  if (portLevel) applyParts(policy, portLevel.policy);
}

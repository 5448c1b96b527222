// The waypoint's upstream clusters, one per (service, port, subset) as
// Envoy's, and one per pod port for pod-IP traffic, made on first use and
// kept current with every config: endpoints and DestinationRule policy are
// set in place (connections, outlier and breaker state survive), a cluster
// whose subset labels or protocol changed is made anew, and one whose
// service, port or subset is gone is closed. At most one cluster per Service
// port and subset, and per pod port in use, and MAX_CLUSTERS in all: a client
// that names ever more pod ports cannot grow the table without bound.
import type { Clock } from '../lib/core/clock.ts';
import type { ResolvedBackend } from '../lib/l7/index.ts';
import { DEFAULT_CLUSTER_POLICY, type ClusterPolicy } from '../lib/l7/cluster-policy.ts';
import type { WaypointConfig, PortEndpoint } from './config.ts';
import { declaredProtocol, declaresHttp2, type PortDeclaration } from './downstream/protocol.ts';
import type { WorkloadDestination } from './destination.ts';
import type { Overflow } from './upstream/circuit-breakers.ts';
import { Cluster, clusterName, type ClusterStats } from './upstream/cluster.ts';
import { endpointKey } from './upstream/endpoint.ts';
import type { Random } from './upstream/load-balancer.ts';
import type { OutlierEvent } from './upstream/outlier-detector.ts';
import type { TunnelConnector } from './upstream/tunnel-connector.ts';

export interface ClusterSetOptions {
  connector: TunnelConnector;
  /** Outlier detection's clock. */
  clock?: Clock;
  /** Balancing's randomness. */
  random?: Random;
  onOutlierEvent?(cluster: string, event: OutlierEvent): void;
  onOverflow?(cluster: string, which: Overflow): void;
}

/** What a cluster is made from, worked out from one config. */
interface Spec {
  policy: ClusterPolicy;
  subsetLabels?: Readonly<Record<string, string>>;
  http2: boolean;
  endpoints: readonly PortEndpoint[];
}

interface Held {
  cluster: Cluster;
  /** What it was made for: read again from each new config. */
  source: { kind: 'service'; backend: ResolvedBackend } | { kind: 'workload'; ip: string; port: number; uid: string };
  /** For telling what changed. */
  policyJson: string;
  labelsJson: string;
  http2: boolean;
  /** By endpoint key: the workload behind each endpoint (the destination_* labels). */
  workloads: Map<string, PortEndpoint['workload']>;
}

/** Far above what one waypoint's services need (Envoy's clusters are per service port and subset too). */
export const MAX_CLUSTERS = 16_384;

export type ClusterLookup = { ok: true; cluster: Cluster; workloadOf(key: string): PortEndpoint['workload'] | undefined } | { ok: false; reason: string };

const http2Of = (port: PortDeclaration): boolean => declaresHttp2(declaredProtocol(port));

function serviceSpec(config: WaypointConfig, b: ResolvedBackend): Spec | string {
  const service = config.serviceByHost(b.host);
  if (!service) return `no Service ${b.host} in the cluster`;
  const port = service.ports.find((p) => p.protocol === 'TCP' && p.port === b.port);
  if (!port) return `Service ${service.namespace}/${service.name} has no TCP port ${b.port}`;
  let subsetLabels: Readonly<Record<string, string>> | undefined;
  if (b.subset !== undefined) {
    subsetLabels = config.destinationRules.subsetLabels(b.host, b.subset);
    if (!subsetLabels) return `no DestinationRule for ${b.host} defines subset ${b.subset}`;
  }
  return {
    policy: config.destinationRules.clusterPolicy(b.host, b.port, b.subset),
    ...(subsetLabels ? { subsetLabels } : {}),
    http2: http2Of(port),
    endpoints: config.endpointsOf(service, b.port),
  };
}

function workloadSpec(config: WaypointConfig, ip: string, port: number, uid: string): Spec | string {
  const w = config.view.workloadByIp(ip);
  if (!w || w.uid !== uid) return `no pod has address ${ip} any more`;
  const pe = config.workloadEndpoint(w, ip, port);
  if (!pe) return `pod ${w.namespace}/${w.name}'s node ${w.node} is not in the cluster state`;
  // A pod's own address names no Service, so no DestinationRule: the default policy.
  return { policy: DEFAULT_CLUSTER_POLICY, http2: http2Of(config.workloadPort(ip, port)), endpoints: [pe] };
}

export class ClusterSet {
  readonly #o: ClusterSetOptions;
  readonly #held = new Map<string, Held>();

  constructor(options: ClusterSetOptions) {
    this.#o = options;
  }

  /** The cluster for a route's backend. */
  forBackend(config: WaypointConfig, backend: ResolvedBackend): ClusterLookup {
    const name = clusterName({ service: backend.host, port: backend.port, ...(backend.subset !== undefined ? { subset: backend.subset } : {}) });
    return this.#get(name, config, { kind: 'service', backend });
  }

  /** The cluster of one pod port (pod-IP traffic). */
  forWorkload(config: WaypointConfig, d: WorkloadDestination): ClusterLookup {
    return this.#get(clusterName({ service: d.ip, port: d.port.port }), config, { kind: 'workload', ip: d.ip, port: d.port.port, uid: d.workload.uid });
  }

  /** Refreshes every cluster from a new config; closes those it no longer has. */
  update(config: WaypointConfig): void {
    for (const [name, held] of this.#held) {
      const spec = this.#spec(config, held.source);
      if (typeof spec === 'string' || JSON.stringify(spec.subsetLabels) !== held.labelsJson || spec.http2 !== held.http2) {
        this.#held.delete(name);
        void held.cluster.close();
        continue;
      }
      this.#refresh(held, spec);
    }
  }

  stats(): ClusterStats[] {
    return [...this.#held.values()].map((h) => h.cluster.stats());
  }

  async close(): Promise<void> {
    const held = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(held.map((h) => h.cluster.close()));
  }

  #get(name: string, config: WaypointConfig, source: Held['source']): ClusterLookup {
    let held = this.#held.get(name);
    if (!held) {
      if (this.#held.size >= MAX_CLUSTERS) return { ok: false, reason: `the waypoint already holds ${MAX_CLUSTERS} clusters` };
      const spec = this.#spec(config, source);
      if (typeof spec === 'string') return { ok: false, reason: spec };
      const { connector, clock, random, onOutlierEvent, onOverflow } = this.#o;
      const [service, port, subset] = source.kind === 'service' ? [source.backend.host, source.backend.port, source.backend.subset] : [source.ip, source.port, undefined];
      const cluster = new Cluster({
        name: { service, port, ...(subset !== undefined ? { subset } : {}) },
        policy: spec.policy,
        ...(spec.subsetLabels ? { subsetLabels: spec.subsetLabels } : {}),
        http2: spec.http2,
        connector,
        ...(clock ? { clock } : {}),
        ...(random ? { random } : {}),
        ...(onOutlierEvent ? { onOutlierEvent: (e: OutlierEvent) => onOutlierEvent(name, e) } : {}),
        ...(onOverflow ? { onOverflow: (w: Overflow) => onOverflow(name, w) } : {}),
      });
      held = { cluster, source, policyJson: JSON.stringify(spec.policy), labelsJson: JSON.stringify(spec.subsetLabels), http2: spec.http2, workloads: new Map() };
      this.#refresh(held, spec, true);
      this.#held.set(name, held);
    }
    const found = held;
    return { ok: true, cluster: found.cluster, workloadOf: (key) => found.workloads.get(key) };
  }

  #spec(config: WaypointConfig, source: Held['source']): Spec | string {
    return source.kind === 'service' ? serviceSpec(config, source.backend) : workloadSpec(config, source.ip, source.port, source.uid);
  }

  #refresh(held: Held, spec: Spec, created = false): void {
    const policyJson = JSON.stringify(spec.policy);
    // A new policy restarts the balancer (and, if its outlier settings changed, the detector): only when it did change.
    if (!created && policyJson !== held.policyJson) held.cluster.setPolicy(spec.policy);
    held.policyJson = policyJson;
    held.workloads = new Map(spec.endpoints.map((e) => [endpointKey(e.endpoint), e.workload]));
    held.cluster.setEndpoints(spec.endpoints.map((e) => e.endpoint));
  }
}

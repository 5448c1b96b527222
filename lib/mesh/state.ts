// The ztunnel's copy of mesh state (after istio/ztunnel's state.rs): an
// immutable, indexed StateView the data path reads, and a StateStore that
// builds a complete new view per control message and swaps it in only if the
// whole message is consistent (phase two of a two-phase update).
import { ControlProtocolError } from '../core/errors.ts';
import { PolicyStore } from '../policy/store.ts';
import type { AuthzPolicy, PeerAuthPolicy } from '../policy/types.ts';
import { serviceKey, type MeshNode, type MeshState, type Service, type ServicePort, type Workload } from './model.ts';
import type { ControlMessage, DeltaMessage } from './control-protocol.ts';
import { hostPort, isV6 } from '../core/ip.ts';

/** One pod behind a Service port, with the address and target port to reach it on. */
export interface ServiceEndpoint {
  workload: Workload;
  ip: string;
  port: number;
}

/** A Service VIP:port and the endpoints it balances over. */
export interface ServiceTarget {
  /** `vip:port`, stable across views; keys round-robin cursors. */
  key: string;
  service: Service;
  port: ServicePort;
  endpoints: readonly ServiceEndpoint[];
}

const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
};

function targetPort(p: ServicePort, w: Workload): number | undefined {
  return typeof p.targetPort === 'number' ? p.targetPort : w.namedPorts[p.targetPort];
}

/** By node name, workload uid, service and policy "namespace/name": the keys deltas use. */
export interface StateMaps {
  nodes: ReadonlyMap<string, MeshNode>;
  workloads: ReadonlyMap<string, Workload>;
  services: ReadonlyMap<string, Service>;
  authorizationPolicies: ReadonlyMap<string, AuthzPolicy>;
  peerAuthentications: ReadonlyMap<string, PeerAuthPolicy>;
}

export class StateView implements StateMaps {
  readonly version: number;
  readonly nodes: ReadonlyMap<string, MeshNode>;
  readonly workloads: ReadonlyMap<string, Workload>;
  readonly services: ReadonlyMap<string, Service>;
  readonly authorizationPolicies: ReadonlyMap<string, AuthzPolicy>;
  readonly peerAuthentications: ReadonlyMap<string, PeerAuthPolicy>;
  /** Compiled once per view: the per-connection checks read it. */
  readonly policies: PolicyStore;
  readonly #byIp = new Map<string, Workload>();
  readonly #targets = new Map<string, ServiceTarget>();

  /** Builds every index; throws ControlProtocolError if the objects contradict each other. */
  constructor(version: number, maps: StateMaps) {
    this.version = version;
    const { nodes, workloads, services } = maps;
    this.nodes = nodes;
    this.workloads = workloads;
    this.services = services;
    this.authorizationPolicies = maps.authorizationPolicies;
    this.peerAuthentications = maps.peerAuthentications;
    this.policies = new PolicyStore([...maps.authorizationPolicies.values()], [...maps.peerAuthentications.values()]);
    const byNamespace = new Map<string, Workload[]>();
    for (const w of workloads.values()) {
      for (const ip of w.ips) {
        const other = this.#byIp.get(ip);
        if (other) throw new ControlProtocolError(`workloads ${other.namespace}/${other.name} and ${w.namespace}/${w.name} both have IP ${ip}`);
        this.#byIp.set(ip, w);
      }
      const peers = byNamespace.get(w.namespace);
      if (peers) peers.push(w);
      else byNamespace.set(w.namespace, [w]);
    }
    for (const s of services.values()) {
      const members = (byNamespace.get(s.namespace) ?? []).filter((w) => selects(s.selector, w.labels));
      for (const vip of s.vips) {
        for (const p of s.ports) {
          if (p.protocol !== 'TCP') continue;
          const key = hostPort(vip, p.port);
          const other = this.#targets.get(key);
          if (other) throw new ControlProtocolError(`services ${serviceKey(other.service)} and ${serviceKey(s)} both claim ${key}`);
          const endpoints: ServiceEndpoint[] = [];
          for (const w of members) {
            // Same family as the VIP; a named port the pod lacks leaves it out (as kube-proxy does).
            const ip = w.ips.find((a) => isV6(a) === isV6(vip));
            const port = targetPort(p, w);
            if (ip !== undefined && port !== undefined) endpoints.push({ workload: w, ip, port });
          }
          this.#targets.set(key, { key, service: s, port: p, endpoints });
        }
      }
    }
  }

  get state(): MeshState {
    return {
      nodes: [...this.nodes.values()],
      workloads: [...this.workloads.values()],
      services: [...this.services.values()],
      authorizationPolicies: [...this.authorizationPolicies.values()],
      peerAuthentications: [...this.peerAuthentications.values()],
    };
  }

  node(name: string): MeshNode | undefined {
    return this.nodes.get(name);
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.workloads.get(uid);
  }

  /** The Service target at VIP:port, if the address is one. */
  serviceAt(ip: string, port: number): ServiceTarget | undefined {
    return this.#targets.get(hostPort(ip, port));
  }

  hasTarget(key: string): boolean {
    return this.#targets.has(key);
  }
}

function indexBy<T>(items: readonly T[], key: (t: T) => string, kind: string): Map<string, T> {
  const m = new Map<string, T>();
  for (const item of items) {
    const k = key(item);
    if (m.has(k)) throw new ControlProtocolError(`duplicate ${kind} ${k}`);
    m.set(k, item);
  }
  return m;
}

const workloadKey = (w: Workload): string => w.uid;
const nodeKey = (n: MeshNode): string => n.name;
const policyKey = (p: AuthzPolicy | PeerAuthPolicy): string => p.key;

function applyDelta(current: StateView, d: DeltaMessage): StateView {
  if (d.version <= current.version) throw new ControlProtocolError(`delta version ${d.version} is not newer than the current version ${current.version}`);
  const patch = <T>(base: ReadonlyMap<string, T>, removed: string[], upserted: T[], key: (t: T) => string, kind: string) => {
    const next = new Map(base);
    for (const k of removed) next.delete(k);
    for (const [k, v] of indexBy(upserted, key, kind)) next.set(k, v);
    return next;
  };
  return new StateView(d.version, {
    nodes: patch(current.nodes, d.remove.nodes, d.upsert.nodes, nodeKey, 'node'),
    workloads: patch(current.workloads, d.remove.workloads, d.upsert.workloads, workloadKey, 'workload'),
    services: patch(current.services, d.remove.services, d.upsert.services, serviceKey, 'service'),
    authorizationPolicies: patch(current.authorizationPolicies, d.remove.authorizationPolicies, d.upsert.authorizationPolicies, policyKey, 'AuthorizationPolicy'),
    peerAuthentications: patch(current.peerAuthentications, d.remove.peerAuthentications, d.upsert.peerAuthentications, policyKey, 'PeerAuthentication'),
  });
}

export class StateStore {
  #view: StateView | undefined;

  /** The current state; undefined until the first snapshot. */
  get view(): StateView | undefined {
    return this.#view;
  }

  /** Builds the next view from a validated message and swaps it in; on error the current view stays. */
  apply(msg: ControlMessage): StateView {
    let next: StateView;
    if (msg.type === 'snapshot') {
      const s = msg.state;
      next = new StateView(msg.version, {
        nodes: indexBy(s.nodes, nodeKey, 'node'),
        workloads: indexBy(s.workloads, workloadKey, 'workload'),
        services: indexBy(s.services, serviceKey, 'service'),
        authorizationPolicies: indexBy(s.authorizationPolicies, policyKey, 'AuthorizationPolicy'),
        peerAuthentications: indexBy(s.peerAuthentications, policyKey, 'PeerAuthentication'),
      });
    } else {
      if (!this.#view) throw new ControlProtocolError('delta before any snapshot');
      next = applyDelta(this.#view, msg);
    }
    this.#view = next;
    return next;
  }
}

// Which traffic goes through which waypoint, and which workloads take mesh
// traffic from their waypoint only, worked out once per state from the
// bindings (istio.io/use-waypoint on Services, Pods and Namespaces, resolved
// by the agent), the waypoints (Gateways) and the waypoints' own
// AuthorizationPolicies (targetRefs). After Istio's ambient controller
// (pilot/pkg/serviceregistry/ambient/waypoints.go): a waypoint's instances
// are the pods labelled gateway.networking.k8s.io/gateway-name=<name> in its
// namespace, and their ServiceAccounts are its identities; it is reached at
// its Service's ready endpoints on 15008. Unlike Istio, a binding to a
// waypoint that is missing or has no ready pod is never skipped: the traffic
// that needs it is refused (waypoint_unavailable), and a workload under a
// waypoint's L7 policy refuses mesh traffic that did not come through one of
// its waypoints (waypoint_bypass).
import { isV6 } from '../core/ip.ts';
import { L7AuthzSet } from '../l7/authz-eval.ts';
import type { L7AuthzPolicy } from '../l7/authz-types.ts';
import { serviceHost } from '../l7/hosts.ts';
import { PORTS, serviceKey, waypointKey, type Service, type ServiceEndpoint, type ServicePort, type Waypoint, type WaypointBinding, type WaypointPolicy, type WaypointRef, type WaypointTraffic, type Workload } from './model.ts';

/** Set on a waypoint's pods by its controller (Istio's and meshlet's): the Gateway they serve. */
export const WAYPOINT_INSTANCE_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** One ready waypoint pod, and the port its HBONE listener has (its Service's 15008, resolved). */
export interface WaypointEndpoint {
  workload: Workload;
  ip: string;
  port: number;
}

/**
 * That a connection's destination is bound to a waypoint that takes its
 * kind of traffic: it goes there, to one of `endpoints`, or, with
 * `problem`, it is refused (the waypoint is missing, or has no ready pod).
 */
export interface WaypointUse {
  ref: WaypointRef;
  /** Absent: no Gateway meshlet can use has this name (missing, or rejected). */
  waypoint?: Waypoint;
  endpoints: readonly WaypointEndpoint[];
  /** Why the traffic cannot go through it; set exactly when `endpoints` is empty. */
  problem?: string;
}

/** A workload port whose mesh traffic must come from a waypoint. */
export interface WaypointGuard {
  /** `namespace/name` of an L7 AuthorizationPolicy that applies to it through a waypoint. */
  policy: string;
  /** The waypoints that bring its traffic on this port (all of them, governed or not, may). */
  waypoints: readonly WaypointRef[];
  /** Their identities, as `namespace/serviceAccount`: the only peers accepted. */
  serviceAccounts: ReadonlySet<string>;
}

/** A line for `meshlet status`: an object whose traffic a waypoint should take, and why it cannot, or how the binding is read. */
export interface WaypointProblem {
  /** "Service ns/name", "Pod ns/name", "AuthorizationPolicy ns/name". */
  object: string;
  waypoint: string;
  problem: string;
}

export interface WaypointState {
  workloads: Iterable<Workload>;
  services: Iterable<Service>;
  waypoints: Iterable<Waypoint>;
  waypointPolicies: Iterable<WaypointPolicy>;
}

const takesServices = (t: WaypointTraffic): boolean => t === 'service' || t === 'all';
const takesWorkloads = (t: WaypointTraffic): boolean => t === 'workload' || t === 'all';

/** Its HBONE port: the Service port 15008 (the controller names it mesh). */
const hbonePort = (s: Service): ServicePort | undefined =>
  s.ports.find((p) => p.protocol === 'TCP' && p.port === PORTS.hbone) ?? s.ports.find((p) => p.protocol === 'TCP' && p.name === 'mesh');

const portOf = (e: ServiceEndpoint, p: ServicePort): number | undefined => {
  const name = p.name ?? '';
  return Object.hasOwn(e.ports, name) ? e.ports[name] : undefined;
};

/** What a port's traffic is bound to: `all` covers every port (a workload binding). */
interface GuardEntry {
  waypoints: Map<string, WaypointRef>;
  policy?: string;
}

export class WaypointIndex {
  readonly #waypoints = new Map<string, Waypoint>();
  readonly #instances = new Map<string, WaypointRef>();
  readonly #serviceAccounts = new Map<string, Set<string>>();
  readonly #endpoints = new Map<string, WaypointEndpoint[]>();
  readonly #serviceUses = new Map<string, WaypointUse>();
  readonly #workloadUses = new Map<string, WaypointUse>();
  /** By workload UID, then port ('all' for every port). */
  readonly #guards = new Map<string, Map<number | 'all', GuardEntry>>();
  readonly #problems: WaypointProblem[] = [];
  /** Per waypoint, one set per policy, for naming the policy that governs a host. */
  readonly #policySets = new Map<string, L7AuthzSet[]>();
  readonly #policies: L7AuthzPolicy[];

  constructor(state: WaypointState) {
    for (const w of state.waypoints) this.#waypoints.set(waypointKey(w), w);
    // L7AuthzSet.governs reads a policy's targets alone: the rules stay the waypoint's.
    this.#policies = [...state.waypointPolicies].map((p) => ({ key: p.key, namespace: p.namespace, name: p.name, action: p.action, targets: p.targets, rules: [], warnings: [] }));
    const workloads = [...state.workloads];
    const services = [...state.services];
    const byIp = new Map<string, Workload>();
    for (const w of workloads) {
      for (const ip of w.ips) byIp.set(ip, w);
      const gateway = w.labels[WAYPOINT_INSTANCE_LABEL];
      const key = `${w.namespace}/${gateway}`;
      if (gateway === undefined || !this.#waypoints.has(key)) continue;
      this.#instances.set(w.uid, { namespace: w.namespace, name: gateway });
      let accounts = this.#serviceAccounts.get(key);
      if (!accounts) this.#serviceAccounts.set(key, (accounts = new Set()));
      accounts.add(`${w.namespace}/${w.serviceAccount}`);
    }
    for (const s of services) {
      const key = serviceKey(s);
      const port = this.#waypoints.has(key) ? hbonePort(s) : undefined;
      if (!port) continue;
      const endpoints: WaypointEndpoint[] = [];
      for (const e of s.endpoints) {
        const workload = byIp.get(e.ip);
        const target = portOf(e, port);
        const of = workload && this.#instances.get(workload.uid);
        // Only its own pods: they present the identities the waypoint is known by.
        if (workload && of && waypointKey(of) === key && target !== undefined) endpoints.push({ workload, ip: e.ip, port: target });
      }
      this.#endpoints.set(key, endpoints);
    }
    for (const s of services) this.#bindService(s, byIp);
    for (const w of workloads) this.#bindWorkload(w);
    this.#checkPolicyTargets(services);
    this.#checkIdentities();
  }

  /** The waypoint `namespace/name`, if the state has it. */
  waypoint(key: string): Waypoint | undefined {
    return this.#waypoints.get(key);
  }

  /** The waypoint a pod is an instance of: its traffic never goes to a waypoint, and it is never bound to one. */
  instanceOf(w: Workload): WaypointRef | undefined {
    return this.#instances.get(w.uid);
  }

  /** Where traffic to the Service's VIPs goes, if a waypoint takes it. */
  forService(s: Service): WaypointUse | undefined {
    return this.#serviceUses.get(serviceKey(s));
  }

  /** Where traffic to the pod's own addresses goes, if a waypoint takes it. */
  forWorkload(w: Workload): WaypointUse | undefined {
    return this.#workloadUses.get(w.uid);
  }

  /** Whether mesh traffic to `port` of the workload must come from one of its waypoints, and which identities those are. */
  guard(w: Workload, port: number): WaypointGuard | undefined {
    const entries = this.#guards.get(w.uid);
    if (!entries) return undefined;
    const relevant = [entries.get('all'), entries.get(port)].filter((e): e is GuardEntry => e !== undefined);
    const policy = relevant.find((e) => e.policy !== undefined)?.policy;
    if (policy === undefined) return undefined;
    const waypoints = new Map(relevant.flatMap((e) => [...e.waypoints]));
    const serviceAccounts = new Set([...waypoints.keys()].flatMap((k) => [...(this.#serviceAccounts.get(k) ?? [])]));
    return { policy, waypoints: [...waypoints.values()], serviceAccounts };
  }

  /** Whether any port of the workload is guarded: then no plaintext reaches it (the kernel's STRICT). */
  guarded(w: Workload): boolean {
    return [...(this.#guards.get(w.uid)?.values() ?? [])].some((e) => e.policy !== undefined);
  }

  /** Bindings that cannot be honoured, and policies nothing enforces: for `meshlet status`. */
  problems(): readonly WaypointProblem[] {
    return this.#problems;
  }

  #use(binding: WaypointBinding, family: 'v4' | 'v6' | undefined): WaypointUse {
    const key = waypointKey(binding);
    const ref = { namespace: binding.namespace, name: binding.name };
    const waypoint = this.#waypoints.get(key);
    if (!waypoint) {
      return { ref, endpoints: [], problem: `waypoint ${key} does not exist: no Gateway of class istio-waypoint or meshlet-waypoint is named so (or meshlet rejected it; see the rejected objects); its traffic is refused, not sent around it` };
    }
    const all = this.#endpoints.get(key) ?? [];
    if (all.length === 0) {
      return { ref, waypoint, endpoints: [], problem: `waypoint ${key} has no ready pod: its Service ${key} lists none on port ${PORTS.hbone} labelled ${WAYPOINT_INSTANCE_LABEL}=${binding.name}; its traffic is refused until one is ready` };
    }
    // The destination's address family first: a v4 VIP's traffic goes to a waypoint pod's v4 address.
    const same = family === undefined ? [] : all.filter((e) => (isV6(e.ip) ? 'v6' : 'v4') === family);
    return { ref, waypoint, endpoints: same.length > 0 ? same : all };
  }

  #bindService(s: Service, byIp: ReadonlyMap<string, Workload>): void {
    const binding = s.waypoint;
    const key = serviceKey(s);
    // A waypoint's own Service takes no waypoint (Istio's rule).
    if (!binding || this.#waypoints.has(key) || waypointKey(binding) === key) return;
    const waypoint = this.#waypoints.get(waypointKey(binding));
    if (waypoint && !takesServices(waypoint.trafficType)) {
      if (binding.from === 'object') this.#problems.push({ object: `Service ${key}`, waypoint: waypointKey(binding), problem: `the waypoint takes ${waypoint.trafficType} traffic only (istio.io/waypoint-for), not service traffic: the Service's VIP traffic goes straight to its endpoints` });
      return;
    }
    const family = s.vips[0] === undefined ? undefined : isV6(s.vips[0]) ? 'v6' : 'v4';
    const use = this.#use(binding, family);
    this.#serviceUses.set(key, use);
    if (use.problem) this.#problems.push({ object: `Service ${key}`, waypoint: waypointKey(binding), problem: use.problem });
    const policy = this.#governing(binding, waypoint, serviceHost(s.name, s.namespace));
    for (const e of s.endpoints) {
      const w = byIp.get(e.ip);
      if (!w) continue;
      for (const p of s.ports) {
        const target = p.protocol === 'TCP' ? portOf(e, p) : undefined;
        if (target !== undefined) this.#guardEntry(w, target, binding, policy);
      }
    }
  }

  #bindWorkload(w: Workload): void {
    const binding = w.waypoint;
    if (!binding || !w.enrolled || this.#instances.has(w.uid)) return;
    const waypoint = this.#waypoints.get(waypointKey(binding));
    const name = `Pod ${w.namespace}/${w.name}`;
    if (waypoint && !takesWorkloads(waypoint.trafficType)) {
      // Inherited from its namespace, it is the waypoint's services the namespace meant (Istio's reading).
      if (binding.from === 'object') this.#problems.push({ object: name, waypoint: waypointKey(binding), problem: `the waypoint takes ${waypoint.trafficType} traffic only (istio.io/waypoint-for), not workload traffic: traffic to the pod's own address goes straight to it` });
      return;
    }
    // A missing waypoint's traffic type is unknown: the pod's own label says its traffic needs one; its namespace's says so for services only (the default).
    if (!waypoint && binding.from === 'namespace') return;
    const use = this.#use(binding, w.ips[0] === undefined ? undefined : isV6(w.ips[0]) ? 'v6' : 'v4');
    this.#workloadUses.set(w.uid, use);
    if (use.problem) this.#problems.push({ object: name, waypoint: waypointKey(binding), problem: use.problem });
    // A workload-addressed request names no service: only the waypoint-, class-, namespace- and mesh-wide targets apply.
    this.#guardEntry(w, 'all', binding, this.#governing(binding, waypoint, w.ips[0] ?? ''));
  }

  #guardEntry(w: Workload, port: number | 'all', binding: WaypointBinding, policy: string | undefined): void {
    let entries = this.#guards.get(w.uid);
    if (!entries) this.#guards.set(w.uid, (entries = new Map()));
    let entry = entries.get(port);
    if (!entry) entries.set(port, (entry = { waypoints: new Map() }));
    entry.waypoints.set(waypointKey(binding), { namespace: binding.namespace, name: binding.name });
    entry.policy ??= policy;
  }

  /** The key of the first waypoint policy that applies to requests for `host` through the waypoint, as the waypoint itself reads its targets. */
  #governing(ref: WaypointRef, waypoint: Waypoint | undefined, host: string): string | undefined {
    if (this.#policies.length === 0) return undefined;
    const key = waypointKey(ref);
    let sets = this.#policySets.get(key);
    if (!sets) {
      const options = { waypoint: { namespace: ref.namespace, name: ref.name, ...(waypoint ? { className: waypoint.className } : {}) } };
      this.#policySets.set(key, (sets = this.#policies.map((p) => new L7AuthzSet([p], options))));
    }
    return sets.find((set) => set.governs(host))?.policies[0]?.key;
  }

  /**
   * Every ServiceAccount a waypoint's pods run as passes for the waypoint
   * (Istio's rule); the controller runs them as the Gateway's name, so any
   * other is worth the operator's look: traffic from it skips no check.
   */
  #checkIdentities(): void {
    for (const [key, accounts] of this.#serviceAccounts) {
      const expected = `${key.split('/')[0]}/${this.#waypoints.get(key)!.name}`;
      const others = [...accounts].filter((a) => a !== expected).sort();
      if (others.length > 0) {
        this.#problems.push({ object: `Gateway ${key}`, waypoint: key, problem: `pods labelled ${WAYPOINT_INSTANCE_LABEL}=${this.#waypoints.get(key)!.name} run as ${others.join(', ')}, not only ${expected}: workloads under its L7 policies take their traffic as the waypoint's` });
      }
    }
  }

  /** A policy that targets a Service no waypoint serves is enforced nowhere (as in Istio): say so. */
  #checkPolicyTargets(services: readonly Service[]): void {
    const known = new Set(services.map(serviceKey));
    for (const p of this.#policies) {
      for (const t of p.targets) {
        if (t.kind !== 'service') continue;
        const key = `${t.namespace}/${t.name}`;
        if (known.has(key) && !this.#serviceUses.has(key)) {
          this.#problems.push({ object: `AuthorizationPolicy ${p.key}`, waypoint: '-', problem: `it targets Service ${key}, which no waypoint serves (no istio.io/use-waypoint on it or its namespace, or the waypoint takes no service traffic): nothing enforces it` });
        }
      }
    }
  }
}

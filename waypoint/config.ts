// The waypoint's view of the cluster, rebuilt whole from the objects a source
// holds, in the two phases every meshlet process uses: each object converted
// and checked alone (lib/cluster's ClusterState for Services, EndpointSlices,
// Pods, Nodes, Namespaces and Gateways; lib/l7's converters for the routing
// and policy resources), then assembled into one read-only snapshot that
// requests are served from: the mesh state view, the route table, the
// DestinationRules, the L7 and L4 authorization sets, and the endpoints of
// each Service port. A rejected object is listed with its reason; a rejected
// route or DestinationRule keeps its last good form in effect (as
// ClusterState keeps its kinds'), a rejected policy its fail-closed stand-in.
import { ClusterState, type Rejection } from '../lib/cluster/cluster-state.ts';
import { objectRef, type KubeObject } from '../lib/cluster/objects.ts';
import type { UnreadableObject } from '../lib/cluster/sources/source.ts';
import { isV6 } from '../lib/core/ip.ts';
import { identityOf } from '../lib/identity/mesh-identity.ts';
import {
  convertL7Objects, DEFAULT_DOMAIN, DestinationRuleIndex, L7AuthzSet, RouteTable, serviceHost,
  type ConvertedDestinationRule, type ConvertedRoute, type L7Rejection,
} from '../lib/l7/index.ts';
import { keyOf, listOf, mapsOf } from '../lib/mesh/kinds.ts';
import { waypointKey, type Service, type ServicePort, type Waypoint, type WaypointRef, type Workload } from '../lib/mesh/model.ts';
import { StateView } from '../lib/mesh/state.ts';
import { DEFAULT_ROOT_NAMESPACE } from '../lib/policy/types.ts';
import type { PortDeclaration } from './downstream/protocol.ts';
import { l4PolicyView } from './l4-authz.ts';
import type { UpstreamEndpoint } from './upstream/endpoint.ts';

export interface WaypointSelf {
  /** The waypoint's Gateway. */
  gateway: WaypointRef;
  trustDomain: string;
  /** The cluster's DNS domain (Service FQDNs end in `.svc.<domain>`). */
  domain?: string;
  /** Where mesh-wide policies live. */
  rootNamespace?: string;
}

/** An object meshlet could not use, for status. */
export interface ConfigRejection {
  object: string;
  reason: string;
  /** 'invalid', 'unreadable', or the ownership or contradiction rule it broke (cluster-state.ts). */
  rule: string;
  /** A policy's stand-in: what it does in the policy's place. */
  failClosed?: string;
  /** A route or DestinationRule whose last good form stays in effect. */
  lastGoodInEffect?: true;
}

export interface ConfigWarning {
  object: string;
  message: string;
}

/** An endpoint of a Service port with the workload behind it. */
export interface PortEndpoint {
  endpoint: UpstreamEndpoint;
  workload: Workload;
}

const tcpPort = (s: Service, port: number): ServicePort | undefined => s.ports.find((p) => p.protocol === 'TCP' && p.port === port);

const portOf = (e: Service['endpoints'][number], p: ServicePort): number | undefined => {
  const name = p.name ?? '';
  return Object.hasOwn(e.ports, name) ? e.ports[name] : undefined;
};

/** One snapshot: never changed once built, replaced whole on every update. */
export class WaypointConfig {
  readonly version: number;
  readonly self: Required<WaypointSelf>;
  readonly view: StateView;
  /** The waypoint's own Gateway as the state has it; undefined while it is missing or rejected (then nothing is served). */
  readonly gateway: Waypoint | undefined;
  readonly routes: RouteTable;
  readonly authz: L7AuthzSet;
  /** The same policies for connections carried at L4 (l4-authz.ts). */
  readonly l4Authz: L7AuthzSet;
  readonly destinationRules: DestinationRuleIndex;
  readonly rejected: readonly ConfigRejection[];
  readonly warnings: readonly ConfigWarning[];
  readonly #services = new Map<string, Service>();
  /** `podIP|targetPort` → the Service port it serves: pod-IP traffic is served as that port is declared. */
  readonly #workloadPorts = new Map<string, PortDeclaration>();
  readonly #endpoints = new Map<string, PortEndpoint[]>();

  constructor(parts: {
    version: number;
    self: Required<WaypointSelf>;
    view: StateView;
    routes: readonly ConvertedRoute[];
    destinationRules: readonly ConvertedDestinationRule[];
    policies: ConstructorParameters<typeof L7AuthzSet>[0];
    rejected: readonly ConfigRejection[];
    warnings: readonly ConfigWarning[];
  }) {
    const { self, view } = parts;
    this.version = parts.version;
    this.self = self;
    this.view = view;
    this.gateway = view.waypointIndex.waypoint(waypointKey(self.gateway));
    for (const s of view.services.values()) this.#services.set(serviceHost(s.name, s.namespace, self.domain), s);
    for (const s of view.services.values()) {
      for (const e of s.endpoints) {
        for (const p of s.ports) {
          const target = p.protocol === 'TCP' ? portOf(e, p) : undefined;
          const key = `${e.ip}|${target}`;
          if (target !== undefined && !this.#workloadPorts.has(key)) this.#workloadPorts.set(key, { ...(p.name ? { name: p.name } : {}), ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) });
        }
      }
    }
    const waypoint = { namespace: self.gateway.namespace, name: self.gateway.name, ...(this.gateway ? { className: this.gateway.className } : {}) };
    this.routes = new RouteTable(parts.routes, {
      waypoint: self.gateway,
      domain: self.domain,
      servicePorts: (host) => this.#services.get(host)?.ports.filter((p) => p.protocol === 'TCP').map((p) => p.port),
    });
    this.authz = new L7AuthzSet(parts.policies, { waypoint, domain: self.domain });
    const l4 = l4PolicyView(this.authz.policies);
    this.l4Authz = new L7AuthzSet(l4.policies, { waypoint, domain: self.domain });
    this.destinationRules = new DestinationRuleIndex(parts.destinationRules, { waypointNamespace: self.gateway.namespace, rootNamespace: self.rootNamespace, domain: self.domain });
    this.rejected = parts.rejected;
    this.warnings = [...parts.warnings, ...this.routes.notes, ...l4.warnings];
  }

  /** The Service a FQDN names. */
  serviceByHost(host: string): Service | undefined {
    return this.#services.get(host);
  }

  /** How a pod's port is declared by the Services that send to it; empty when none does. */
  workloadPort(ip: string, port: number): PortDeclaration {
    return this.#workloadPorts.get(`${ip}|${port}`) ?? {};
  }

  /**
   * The endpoints of a Service's TCP port: its ready pods with the port
   * resolved, each reached through its node's ztunnel under its own identity.
   * An endpoint whose node is unknown is left out: there is no ztunnel to
   * reach it through. Of a dual-stack Service, the family of its first VIP.
   */
  endpointsOf(service: Service, port: number): readonly PortEndpoint[] {
    const key = `${service.namespace}/${service.name}|${port}`;
    const cached = this.#endpoints.get(key);
    if (cached) return cached;
    const p = tcpPort(service, port);
    const out: PortEndpoint[] = [];
    if (p) {
      const family = service.vips[0] === undefined ? undefined : isV6(service.vips[0]);
      for (const e of service.endpoints) {
        const target = portOf(e, p);
        const workload = this.view.workloadByIp(e.ip);
        const node = workload && this.view.node(workload.node);
        if (target === undefined || !workload || !node) continue;
        if (family !== undefined && isV6(e.ip) !== family) continue;
        out.push({ workload, endpoint: this.#endpoint(workload, e.ip, target, node) });
      }
    }
    this.#endpoints.set(key, out);
    return out;
  }

  /** A pod's own port as an endpoint (pod-IP traffic); undefined when its node is unknown. */
  workloadEndpoint(workload: Workload, ip: string, port: number): PortEndpoint | undefined {
    const node = this.view.node(workload.node);
    return node ? { workload, endpoint: this.#endpoint(workload, ip, port, node) } : undefined;
  }

  #endpoint(workload: Workload, ip: string, port: number, node: NonNullable<ReturnType<StateView['node']>>): UpstreamEndpoint {
    return { ip, port, node, identity: identityOf(workload, this.self.trustDomain), labels: workload.labels };
  }
}

type LastGood = ConvertedRoute | ConvertedDestinationRule;

const refOfConverted = (v: LastGood): string => `${v.kind} ${v.key}`;

/** Phase one and two over every update, keeping what must outlive a bad update. */
export class WaypointConfigBuilder {
  readonly #self: Required<WaypointSelf>;
  readonly #state: ClusterState;
  #lastGood = new Map<string, LastGood>();
  #version = 0;

  constructor(self: WaypointSelf) {
    this.#self = { domain: DEFAULT_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, ...self };
    this.#state = new ClusterState({ rootNamespace: this.#self.rootNamespace });
  }

  build(objects: readonly KubeObject[], unreadable: readonly UnreadableObject[] = []): WaypointConfig {
    const self = this.#self;
    const { state, rejected: stateRejected, endpointWarnings } = this.#state.update(objects);
    const l7 = convertL7Objects(objects, { rootNamespace: self.rootNamespace, domain: self.domain });
    const { routes, destinationRules, kept } = this.#withLastGood(l7.config.routes, l7.config.destinationRules, l7.rejected, objects);
    const rejected = mergeRejections(l7.rejected, stateRejected, unreadable, kept);
    const warnings: ConfigWarning[] = [
      ...endpointWarnings.map((w) => ({ object: w.object, message: w.warning })),
      ...[...routes, ...destinationRules].flatMap((o) => o.warnings.map((message) => ({ object: `${o.kind} ${o.key}`, message }))),
      ...l7.config.authorizationPolicies.flatMap((p) => p.warnings.map((message) => ({ object: `AuthorizationPolicy ${p.key}`, message }))),
    ];
    const view = new StateView(++this.#version, mapsOf((kind) => new Map(listOf(state, kind).map((v) => [keyOf(kind, v), v]))));
    return new WaypointConfig({ version: this.#version, self, view, routes, destinationRules, policies: l7.config.authorizationPolicies, rejected, warnings });
  }

  /** The converted routes and rules, with the last good form of each one rejected this time. */
  #withLastGood(routes: ConvertedRoute[], rules: ConvertedDestinationRule[], rejected: readonly L7Rejection[], objects: readonly KubeObject[]): { routes: ConvertedRoute[]; destinationRules: ConvertedDestinationRule[]; kept: ReadonlySet<string> } {
    const next = new Map<string, LastGood>();
    for (const v of [...routes, ...rules]) next.set(refOfConverted(v), v);
    const present = new Set(objects.map(objectRef));
    const kept = new Set<string>();
    for (const r of rejected) {
      const last = this.#lastGood.get(r.object);
      if (!last || r.failClosed !== undefined || !present.has(r.object) || next.has(r.object)) continue;
      next.set(r.object, last);
      kept.add(r.object);
    }
    this.#lastGood = next;
    const all = [...next.values()];
    return {
      routes: all.filter((v): v is ConvertedRoute => v.kind !== 'DestinationRule'),
      destinationRules: all.filter((v): v is ConvertedDestinationRule => v.kind === 'DestinationRule'),
      kept,
    };
  }
}

/** One row per object: the route side's reading of its kinds first, then the state's, then what the source could not read. */
function mergeRejections(l7: readonly L7Rejection[], state: readonly Rejection[], unreadable: readonly UnreadableObject[], kept: ReadonlySet<string>): ConfigRejection[] {
  const rows = new Map<string, ConfigRejection>();
  for (const r of l7) {
    rows.set(r.object, { object: r.object, reason: r.reason, rule: r.rule, ...(r.failClosed ? { failClosed: r.failClosed } : {}), ...(kept.has(r.object) ? { lastGoodInEffect: true as const } : {}) });
  }
  for (const r of state) if (!rows.has(r.object)) rows.set(r.object, { object: r.object, reason: r.reason, rule: r.rule, ...(r.failClosed ? { failClosed: r.failClosed } : {}) });
  for (const u of unreadable) if (!rows.has(u.object)) rows.set(u.object, { object: u.object, reason: u.reason, rule: 'unreadable' });
  return [...rows.values()];
}

// Phase two of a state update: assemble the converted objects into one
// MeshState that the ztunnel will accept as it is. Every object is judged
// alone and refused alone, with the rule it broke: conversion (convert.ts),
// address ownership (ownership.ts), the ztunnel's own per-object validation
// (mesh/validate.ts) and its contradictions (mesh/consistency.ts), where of
// two claimants the newer is refused. An object that fails conversion keeps
// its last good form in effect, except a security policy, whose place a
// fail-closed stand-in takes (policy/fail-closed.ts).
import type { Cidr } from '../core/cidr.ts';
import { ControlProtocolError, InvalidObjectError } from '../core/errors.ts';
import { convertObject, isEnrolled, waypointPolicyOf, type Converted, type DataplaneMode, type NodeInfo, type PodInfo, type ServiceInfo, type UseWaypoint } from './convert.ts';
import { serviceEndpoints, type EndpointSliceInfo, type EndpointWarning } from './endpoint-slices.ts';
import { failClosedEffect, failClosedPolicy, isSecurityPolicy, type ConvertedPolicy } from '../policy/index.ts';
import type { PolicyOptions } from '../policy/types.ts';
import { l7FailClosedEffect, l7FailClosedPolicy } from '../l7/authz-fail-closed.ts';
import { findContradictions } from '../mesh/consistency.ts';
import { emptyMeshState, keyOf, MESH_KIND_NAMES, MESH_KINDS, type KindValue, type MeshKind, type MeshState } from '../mesh/kinds.ts';
import type { Service, Waypoint, WaypointBinding, WaypointPolicy, Workload } from '../mesh/model.ts';
import { objectRef, type KubeObject } from './objects.ts';
import { addressOwners, podAddressProblem, vipProblem, type AddressOwners } from './ownership.ts';

export interface Rejection {
  object: string;
  reason: string;
  /**
   * The rule it broke: 'invalid' (the object alone, the reason names the
   * field), 'unreadable' (the source could not read it), an ownership rule
   * (ownership.ts) or a contradiction (mesh/consistency.ts, 'duplicate-uid');
   * from the node agent, 'no-room' (its BPF tables cannot hold the pod).
   */
  rule: string;
  /** When this reason was first seen. */
  since: string;
  /** A security policy's stand-in: what it does in the policy's place. */
  failClosed?: string;
}

export interface StateUpdate {
  state: MeshState;
  rejected: Rejection[];
  /** Accepted objects that list what the mesh cannot use: Service endpoints that are no pod's. */
  endpointWarnings: EndpointWarning[];
}

export interface ClusterStateOptions extends PolicyOptions {
  /** The cluster's Service ranges (the agent's --service-cidrs): every ClusterIP lies in one. Absent: not checked. */
  serviceCidrs?: readonly Cidr[];
  /** This node's mesh addresses (capture, inbound source, probe source): no pod may claim them. */
  meshAddresses?: readonly string[];
}

/** One object of the update after phase one: what it became, or the stand-in or last good form that stays in its place. */
interface Entry {
  ref: string;
  obj: KubeObject;
  value: Converted;
}

type Refused = Omit<Rejection, 'since'>;

/** A security policy as it goes to the ztunnel: the L4 engine's, or what the ztunnel keeps of a waypoint's. */
type PolicyValue = ConvertedPolicy | { kind: 'waypointPolicies'; value: WaypointPolicy };

/** A rejected policy's stand-in, and what it does in the policy's place, for status. */
interface StandIn {
  policy: PolicyValue;
  effect: string;
}

/**
 * The binding an object's traffic has: its own label wins over its
 * namespace's, `none` on the object opts it out; `none` on the namespace
 * binds nothing either.
 */
function bindingOf(own: UseWaypoint, namespace: UseWaypoint): { waypoint?: WaypointBinding } {
  if (own === 'none') return {};
  if (own !== undefined) return { waypoint: { ...own, from: 'object' } };
  return namespace === undefined || namespace === 'none' ? {} : { waypoint: { ...namespace, from: 'namespace' } };
}

export class ClusterState {
  #lastGood = new Map<string, Converted>();
  #since = new Map<string, { reason: string; since: string }>();
  #options: ClusterStateOptions;

  constructor(options: ClusterStateOptions = {}) {
    this.#options = options;
  }

  update(objects: readonly KubeObject[]): StateUpdate {
    const entries: Entry[] = [];
    const seen = new Set<string>();
    const refused = new Map<string, Refused>();
    const refuse = (r: Refused): void => void (refused.has(r.object) || refused.set(r.object, r));
    for (const obj of objects) {
      const ref = objectRef(obj);
      // A source holds one object per kind, namespace and name; a second is refused rather than merged.
      if (seen.has(ref)) {
        refuse({ object: ref, reason: 'the update holds two objects of this kind, namespace and name; only the first counts', rule: 'duplicate-key' });
        continue;
      }
      seen.add(ref);
      const value = this.#convertAlone(obj, ref, refuse);
      if (value) entries.push({ ref, obj, value });
    }
    for (const ref of this.#lastGood.keys()) if (!seen.has(ref)) this.#lastGood.delete(ref);
    const endpointWarnings: EndpointWarning[] = [];
    const state = assemble(entries, this.#options, refuse, (w) => endpointWarnings.push(w));
    return { state, rejected: this.#stamp([...refused.values()]), endpointWarnings };
  }

  /** Phase one for one object: never throws, whatever the object holds. */
  #convertAlone(obj: KubeObject, ref: string, refuse: (r: Refused) => void): Converted | undefined {
    let reason: string;
    try {
      const value = convertObject(obj, this.#options);
      this.#lastGood.set(ref, value);
      return value;
    } catch (err) {
      reason = err instanceof InvalidObjectError ? err.reason : `meshlet could not convert it: ${err instanceof Error ? err.message : String(err)}`;
    }
    const standIn = standInFor(obj, reason, this.#options);
    if (standIn) {
      refuse({ object: ref, reason, rule: 'invalid', failClosed: standIn.effect });
      return standIn.policy;
    }
    refuse({ object: ref, reason, rule: 'invalid' });
    // A policy without a stand-in (AUDIT) decides no access, so no earlier form of it stays either.
    return isSecurityPolicy(obj) ? undefined : this.#lastGood.get(ref);
  }

  /** Keeps each refusal's first sighting while its reason stays the same. */
  #stamp(refusals: Refused[]): Rejection[] {
    const now = new Date().toISOString();
    const since = new Map<string, { reason: string; since: string }>();
    const stamped = refusals.map((r) => {
      const previous = this.#since.get(r.object);
      const at = previous?.reason === r.reason ? previous.since : now;
      since.set(r.object, { reason: r.reason, since: at });
      return { ...r, since: at };
    });
    this.#since = since;
    return stamped;
  }
}

/**
 * A rejected security policy's fail-closed stand-in; undefined for other
 * objects. A policy bound by targetRefs gets the waypoint's (lib/l7), which
 * the ztunnels keep as a waypoint policy: why that never widens access is
 * told at failClosedPolicy (lib/policy/fail-closed.ts).
 */
function standInFor(obj: KubeObject, reason: string, options: PolicyOptions): StandIn | undefined {
  try {
    const l4 = failClosedPolicy(obj, reason, options);
    if (l4) return { policy: l4, effect: failClosedEffect(l4) };
    const l7 = l7FailClosedPolicy(obj, reason, options);
    if (l7) return { policy: { kind: 'waypointPolicies', value: waypointPolicyOf(l7) }, effect: `${l7FailClosedEffect(l7)}; the ztunnels refuse traffic that goes around the waypoints` };
    return undefined;
  } catch {
    // Both read defensively; should one still fail, the object is refused without one.
    return undefined;
  }
}

/**
 * The ztunnel's own check of one object (mesh/validate.ts); the problem, or
 * undefined. Converted values are plain JSON data, so the check sees what the
 * ztunnel will see once they cross the socket (fuzz-objects.test.ts sends them).
 */
function ztunnelProblem(kind: MeshKind, value: unknown): string | undefined {
  try {
    MESH_KINDS[kind].validate(value, MESH_KINDS[kind].label);
    return undefined;
  } catch (err) {
    if (err instanceof ControlProtocolError) return `the ztunnel would refuse it: ${err.message}`;
    return `the ztunnel would fail on it: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** Oldest first, then by object name: the order in which claims on one address or key are honoured. */
const byAge = (a: { createdAt: number; ref: string }, b: { createdAt: number; ref: string }): number =>
  (a.createdAt === b.createdAt ? 0 : a.createdAt < b.createdAt ? -1 : 1) || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0);

const older = (createdAt: number): string => (Number.isFinite(createdAt) ? `created ${new Date(createdAt).toISOString()}` : 'of unknown age');

function assemble(entries: readonly Entry[], options: ClusterStateOptions, refuse: (r: Refused) => void, warn: (warning: EndpointWarning) => void): MeshState {
  const namespaceMode = new Map<string, DataplaneMode>();
  const namespaceWaypoint = new Map<string, UseWaypoint>();
  const nodes: NodeInfo[] = [];
  const pods: { ref: string; info: PodInfo }[] = [];
  const services: { ref: string; info: ServiceInfo }[] = [];
  const slices = new Map<string, EndpointSliceInfo[]>();
  const policies: { ref: string; obj: KubeObject; policy: PolicyValue }[] = [];
  const waypoints: { ref: string; waypoint: Waypoint }[] = [];
  for (const { ref, obj, value: o } of entries) {
    if (o.kind === 'Namespace') {
      namespaceMode.set(o.value.name, o.value.mode);
      namespaceWaypoint.set(o.value.name, o.value.waypoint);
    } else if (o.kind === 'Node') nodes.push(o.value);
    else if (o.kind === 'Pod') {
      if (o.value !== null) pods.push({ ref, info: o.value });
    } else if (o.kind === 'Service') services.push({ ref, info: o.value });
    else if (o.kind === 'EndpointSlice') {
      if (o.value === null) continue;
      const key = `${o.value.namespace}/${o.value.service}`;
      const list = slices.get(key);
      if (list) list.push(o.value);
      else slices.set(key, [o.value]);
    } else if (o.kind === 'authorizationPolicies' || o.kind === 'peerAuthentications' || o.kind === 'waypointPolicies') policies.push({ ref, obj, policy: o });
    else if (o.kind === 'waypoints') waypoints.push({ ref, waypoint: o.value });
  }
  const owners = addressOwners(nodes.map((n) => ({ name: n.node.name, addresses: n.addresses, podCidrs: n.podCidrs })), options.serviceCidrs, options.meshAddresses ?? []);
  const state = emptyMeshState();
  state.nodes = nodes.map((n) => n.node).filter((n) => {
    const problem = ztunnelProblem('nodes', n);
    if (problem) refuse({ object: `Node ${n.name}`, reason: problem, rule: 'invalid' });
    return problem === undefined;
  });
  state.workloads = acceptedWorkloads(pods, namespaceMode, namespaceWaypoint, owners, refuse);
  state.services = acceptedServices(services, slices, namespaceWaypoint, state.workloads, owners, refuse, warn);
  state.waypoints = waypoints.filter(({ ref, waypoint }) => {
    const problem = ztunnelProblem('waypoints', waypoint);
    if (problem) refuse({ object: ref, reason: problem, rule: 'invalid' });
    return problem === undefined;
  }).map((w) => w.waypoint);
  const byKey = new Map<string, { ref: string; policy: PolicyValue }>();
  for (const { ref, obj, policy } of policies) {
    const accepted = acceptedPolicy(ref, obj, policy, options, refuse);
    if (!accepted) continue;
    const key = `${accepted.kind}/${accepted.value.key}`;
    const other = byKey.get(key);
    // Two objects under one key (a stand-in without a usable name): the stand-in wins, so the collision never widens access.
    const keepOther = other !== undefined && (other.policy.value.failClosed !== undefined || accepted.value.failClosed === undefined);
    if (other) refuse({ object: keepOther ? ref : other.ref, reason: `its key ${accepted.value.key} is also ${keepOther ? other.ref : ref}'s`, rule: 'duplicate-key' });
    if (!keepOther) byKey.set(key, { ref, policy: accepted });
  }
  for (const { policy } of byKey.values()) {
    if (policy.kind === 'authorizationPolicies') state.authorizationPolicies.push(policy.value);
    else if (policy.kind === 'peerAuthentications') state.peerAuthentications.push(policy.value);
    else state.waypointPolicies.push(policy.value);
  }
  for (const kind of MESH_KIND_NAMES) sortKind(kind, state[kind]);
  return state;
}

/** Pods whose addresses are theirs, that the ztunnel would accept, and that lose no claim to an older pod. */
function acceptedWorkloads(
  pods: readonly { ref: string; info: PodInfo }[],
  namespaceMode: ReadonlyMap<string, DataplaneMode>,
  namespaceWaypoint: ReadonlyMap<string, UseWaypoint>,
  owners: AddressOwners,
  refuse: (r: Refused) => void,
): Workload[] {
  const candidates: { ref: string; createdAt: number; workload: Workload }[] = [];
  for (const { ref, info } of pods) {
    const { workload, mode } = info;
    const owned = workload.ips.map((ip) => podAddressProblem(ip, workload.node, owners)).find((p) => p !== undefined);
    if (owned) {
      refuse({ object: ref, reason: owned.reason, rule: owned.rule });
      continue;
    }
    const w: Workload = { ...workload, enrolled: isEnrolled(mode, namespaceMode.get(workload.namespace)), ...bindingOf(info.waypoint, namespaceWaypoint.get(workload.namespace)) };
    const problem = ztunnelProblem('workloads', w);
    if (problem) refuse({ object: ref, reason: problem, rule: 'invalid' });
    else candidates.push({ ref, createdAt: info.createdAt, workload: w });
  }
  candidates.sort(byAge);
  const byUid = new Map<string, { ref: string; createdAt: number }>();
  const unique = candidates.filter((c) => {
    const first = byUid.get(c.workload.uid);
    if (first) refuse({ object: c.ref, reason: `metadata.uid ${c.workload.uid} is already ${first.ref}'s (${older(first.createdAt)}); the newer object is refused`, rule: 'duplicate-uid' });
    else byUid.set(c.workload.uid, c);
    return first === undefined;
  });
  const losers = new Map(findContradictions({ ...emptyMeshState(), workloads: unique.map((c) => c.workload) }).map((c) => [c.key, c]));
  return unique.filter((c) => {
    const lost = losers.get(c.workload.uid);
    if (lost) refuse({ object: c.ref, reason: `${lost.problem}; the newer pod is refused`, rule: lost.rule });
    return !lost;
  }).map((c) => c.workload);
}

/** Services whose VIPs are theirs, with their endpoints among the accepted pods, that lose no claim to an older Service. */
function acceptedServices(
  services: readonly { ref: string; info: ServiceInfo }[],
  slices: ReadonlyMap<string, EndpointSliceInfo[]>,
  namespaceWaypoint: ReadonlyMap<string, UseWaypoint>,
  workloads: readonly Workload[],
  owners: AddressOwners,
  refuse: (r: Refused) => void,
  warn: (warning: EndpointWarning) => void,
): Service[] {
  const podIps = new Set(workloads.flatMap((w) => w.ips));
  const candidates: { ref: string; createdAt: number; service: Service }[] = [];
  for (const { ref, info } of services) {
    const s = info.service;
    const owned = s.vips.map((vip) => vipProblem(vip, owners)).find((p) => p !== undefined);
    if (owned) {
      refuse({ object: ref, reason: owned.reason, rule: owned.rule });
      continue;
    }
    const service: Service = {
      ...s,
      endpoints: serviceEndpoints(s, slices.get(`${s.namespace}/${s.name}`) ?? [], (ip) => podIps.has(ip), warn),
      ...bindingOf(info.waypoint, namespaceWaypoint.get(s.namespace)),
    };
    const problem = ztunnelProblem('services', service);
    if (problem) refuse({ object: ref, reason: problem, rule: 'invalid' });
    else candidates.push({ ref, createdAt: info.createdAt, service });
  }
  candidates.sort(byAge);
  const losers = new Map(findContradictions({ ...emptyMeshState(), workloads: [...workloads], services: candidates.map((c) => c.service) })
    .filter((c) => c.kind === 'services')
    .map((c) => [c.key, c]));
  return candidates.filter((c) => {
    const lost = losers.get(keyOf('services', c.service));
    if (lost) refuse({ object: c.ref, reason: lost.rule === 'vip-claimed' ? `${lost.problem}; the newer Service is refused` : lost.problem, rule: lost.rule });
    return !lost;
  }).map((c) => c.service);
}

/** The policy if the ztunnel would take it, else its fail-closed stand-in (which it always takes). */
function acceptedPolicy(ref: string, obj: KubeObject, policy: PolicyValue, options: PolicyOptions, refuse: (r: Refused) => void): PolicyValue | undefined {
  const problem = ztunnelProblem(policy.kind, policy.value);
  if (problem === undefined) return policy;
  const standIn = standInFor(obj, problem, options);
  refuse({ object: ref, reason: problem, rule: 'invalid', ...(standIn ? { failClosed: standIn.effect } : {}) });
  return standIn?.policy;
}

function sortKind<K extends MeshKind>(kind: K, values: KindValue<K>[]): void {
  const order = MESH_KINDS[kind].order as (a: KindValue<K>, b: KindValue<K>) => number;
  values.sort(order);
}

// The kinds of mesh state in one table: each kind's key (what deltas and
// indexes name an object by), its validation (phase one on the ztunnel's side
// of the control channel, run by the agent too before it sends), its order
// and how errors name it. MeshState, the control protocol's snapshot and
// delta, the agent's diff and the ztunnel's StateView all derive from it, so a
// new kind is its model type in MeshKindValues, one entry in MESH_KINDS, and
// its converter from Kubernetes objects (lib/cluster/convert.ts).
import type { AuthzPolicy, PeerAuthPolicy } from '../policy/types.ts';
import { serviceKey, waypointKey, type MeshNode, type Service, type Waypoint, type WaypointPolicy, type Workload } from './model.ts';
import { validateNode, validateService, validateWaypoint, validateWorkload } from './validate.ts';
import { validateAuthzPolicy, validatePeerAuthentication, validateWaypointPolicy } from './validate-policy.ts';

/** Each kind's model type (model.ts, policy/types.ts). */
interface MeshKindValues {
  nodes: MeshNode;
  workloads: Workload;
  services: Service;
  authorizationPolicies: AuthzPolicy;
  peerAuthentications: PeerAuthPolicy;
  waypoints: Waypoint;
  waypointPolicies: WaypointPolicy;
}

interface KindSpec<T> {
  /** How operators and errors call one object of the kind. */
  label: string;
  /** Unique within the kind: node name, pod UID, "namespace/name". */
  key(value: T): string;
  /** Checks a value that crossed a process boundary; throws ControlProtocolError naming it. */
  validate(raw: unknown, where: string): T;
  /** The order the agent lists the kind in. */
  order(a: T, b: T): number;
}

const byName = (a: { name: string }, b: { name: string }): number => a.name.localeCompare(b.name);
const byKey = (a: { key: string }, b: { key: string }): number => a.key.localeCompare(b.key);

export type MeshKind = keyof MeshKindValues;
export type KindValue<K extends MeshKind> = MeshKindValues[K];

export const MESH_KINDS: { readonly [K in MeshKind]: KindSpec<KindValue<K>> } = {
  nodes: { label: 'node', key: (n) => n.name, validate: validateNode, order: byName },
  workloads: { label: 'workload', key: (w) => w.uid, validate: validateWorkload, order: byName },
  services: { label: 'service', key: serviceKey, validate: validateService, order: byName },
  authorizationPolicies: { label: 'AuthorizationPolicy', key: (p) => p.key, validate: validateAuthzPolicy, order: byKey },
  peerAuthentications: { label: 'PeerAuthentication', key: (p) => p.key, validate: validatePeerAuthentication, order: byKey },
  waypoints: { label: 'waypoint', key: waypointKey, validate: validateWaypoint, order: (a, b) => waypointKey(a).localeCompare(waypointKey(b)) },
  waypointPolicies: { label: 'waypoint AuthorizationPolicy', key: (p) => p.key, validate: validateWaypointPolicy, order: byKey },
};

export const MESH_KIND_NAMES = Object.keys(MESH_KINDS) as MeshKind[];

/** The whole mesh state, a list per kind, as the agent derives it and the snapshot carries it. */
export type MeshState = { [K in MeshKind]: KindValue<K>[] };

/** Mesh state by key, a map per kind: the ztunnel's view and a delta's base. */
export type MeshMaps = { readonly [K in MeshKind]: ReadonlyMap<string, KindValue<K>> };

/** Keys removed, per kind. */
export type MeshKeys = { [K in MeshKind]: string[] };

// TypeScript cannot tie a generic kind K to MeshState[K] (microsoft/TypeScript#30581),
// so the builders and readers below hold the casts, once, for everyone.
const build = <R>(make: (kind: MeshKind) => unknown): R => Object.fromEntries(MESH_KIND_NAMES.map((k) => [k, make(k)])) as R;

/** A MeshState from one list per kind. */
export const stateOf = (make: <K extends MeshKind>(kind: K) => KindValue<K>[]): MeshState => build(make);
/** MeshMaps from one map per kind. */
export const mapsOf = (make: <K extends MeshKind>(kind: K) => ReadonlyMap<string, KindValue<K>>): MeshMaps => build(make);
/** Removed keys from one list per kind. */
export const keysOf = (make: (kind: MeshKind) => string[]): MeshKeys => build(make);

/** Kind `kind`'s list in `state`. */
export const listOf = <K extends MeshKind>(state: MeshState, kind: K): KindValue<K>[] => state[kind] as KindValue<K>[];
/** Kind `kind`'s map in `maps`. */
export const mapOf = <K extends MeshKind>(maps: MeshMaps, kind: K): ReadonlyMap<string, KindValue<K>> => maps[kind] as ReadonlyMap<string, KindValue<K>>;

export const emptyMeshState = (): MeshState => stateOf(() => []);

/** The key of `value` as kind `kind` names it. */
export const keyOf = <K extends MeshKind>(kind: K, value: KindValue<K>): string => (MESH_KINDS[kind] as KindSpec<KindValue<K>>).key(value);

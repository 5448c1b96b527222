// Phase two of a state update: assemble the converted objects into one
// MeshState. An object that fails conversion is reported and, if it was valid
// before, its last good form stays in effect.
import { InvalidObjectError } from '../core/errors.ts';
import { canonicalIp } from '../core/ip.ts';
import { convertObject, isEnrolled, type Converted, type DataplaneMode, type ServiceInfo } from './convert.ts';
import { serviceEndpoints, type EndpointSliceInfo, type EndpointWarning } from './endpoint-slices.ts';
import type { PolicyOptions } from '../policy/types.ts';
import { emptyMeshState, MESH_KIND_NAMES, MESH_KINDS, type KindValue, type MeshKind, type MeshState } from '../mesh/kinds.ts';
import { objectRef, type KubeObject } from './objects.ts';

export interface Rejection {
  object: string;
  reason: string;
  /** When this reason was first seen. */
  since: string;
}

export interface StateUpdate {
  state: MeshState;
  rejected: Rejection[];
  /** Accepted objects that list what the mesh cannot use: Service endpoints that are no pod's. */
  endpointWarnings: EndpointWarning[];
}

export class ClusterState {
  #lastGood = new Map<string, Converted>();
  #rejections = new Map<string, Rejection>();
  #policyOptions: PolicyOptions;

  constructor(policyOptions: PolicyOptions = {}) {
    this.#policyOptions = policyOptions;
  }

  update(objects: readonly KubeObject[]): StateUpdate {
    const converted: Converted[] = [];
    const seen = new Set<string>();
    const rejections = new Map<string, Rejection>();
    for (const obj of objects) {
      const ref = objectRef(obj);
      seen.add(ref);
      try {
        const value = convertObject(obj, this.#policyOptions);
        this.#lastGood.set(ref, value);
        converted.push(value);
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        const previous = this.#rejections.get(ref);
        const since = previous?.reason === err.reason ? previous.since : new Date().toISOString();
        rejections.set(ref, { object: ref, reason: err.reason, since });
        const good = this.#lastGood.get(ref);
        if (good) converted.push(good);
      }
    }
    for (const ref of this.#lastGood.keys()) if (!seen.has(ref)) this.#lastGood.delete(ref);
    this.#rejections = rejections;
    const endpointWarnings: EndpointWarning[] = [];
    const state = assemble(converted, (w) => endpointWarnings.push(w));
    return { state, rejected: [...rejections.values()], endpointWarnings };
  }
}

function assemble(objects: readonly Converted[], warn: (warning: EndpointWarning) => void): MeshState {
  const namespaceMode = new Map<string, DataplaneMode>();
  const services: ServiceInfo[] = [];
  const slices = new Map<string, EndpointSliceInfo[]>();
  const state = emptyMeshState();
  const add = <K extends MeshKind>(kind: K, value: KindValue<K>): void => void (state[kind] as KindValue<K>[]).push(value);
  for (const o of objects) {
    if (o.kind === 'Namespace') namespaceMode.set(o.value.name, o.value.mode);
    else if (o.kind === 'Service') services.push(o.value);
    else if (o.kind === 'EndpointSlice') {
      if (o.value === null) continue;
      const key = `${o.value.namespace}/${o.value.service}`;
      const list = slices.get(key);
      if (list) list.push(o.value);
      else slices.set(key, [o.value]);
    } else if (o.kind !== 'Pod' && o.kind !== 'Ignored') add(o.kind, o.value);
  }
  const podIps = new Set<string>();
  for (const o of objects) {
    if (o.kind !== 'Pod' || o.value === null) continue;
    const { workload, mode } = o.value;
    add('workloads', { ...workload, enrolled: isEnrolled(mode, namespaceMode.get(workload.namespace)) });
    for (const ip of workload.ips) podIps.add(canonicalIp(ip) ?? ip);
  }
  for (const s of services) {
    add('services', { ...s, endpoints: serviceEndpoints(s, slices.get(`${s.namespace}/${s.name}`) ?? [], (ip) => podIps.has(ip), warn) });
  }
  for (const kind of MESH_KIND_NAMES) sortKind(kind, state[kind]);
  return state;
}

function sortKind<K extends MeshKind>(kind: K, values: KindValue<K>[]): void {
  const order = MESH_KINDS[kind].order as (a: KindValue<K>, b: KindValue<K>) => number;
  values.sort(order);
}

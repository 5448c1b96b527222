// Phase two of a state update: assemble the converted objects into one
// MeshState. An object that fails conversion is reported and, if it was valid
// before, its last good form stays in effect.
import { InvalidObjectError } from '../core/errors.ts';
import { convertObject, isEnrolled, type Converted, type DataplaneMode } from './convert.ts';
import type { AuthzPolicy, PeerAuthPolicy, PolicyOptions } from '../policy/types.ts';
import type { MeshNode, MeshState, Service, Workload } from '../mesh/model.ts';
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
    return { state: assemble(converted), rejected: [...rejections.values()] };
  }
}

function assemble(objects: readonly Converted[]): MeshState {
  const namespaceMode = new Map<string, DataplaneMode>();
  const nodes: MeshNode[] = [];
  const services: Service[] = [];
  const workloads: Workload[] = [];
  const authorizationPolicies: AuthzPolicy[] = [];
  const peerAuthentications: PeerAuthPolicy[] = [];
  for (const o of objects) {
    if (o.kind === 'Namespace') namespaceMode.set(o.value.name, o.value.mode);
    else if (o.kind === 'Node') nodes.push(o.value);
    else if (o.kind === 'Service') services.push(o.value);
    else if (o.kind === 'AuthorizationPolicy') authorizationPolicies.push(o.value);
    else if (o.kind === 'PeerAuthentication') peerAuthentications.push(o.value);
  }
  for (const o of objects) {
    if (o.kind !== 'Pod' || o.value === null) continue;
    const { workload, mode } = o.value;
    const enrolled = isEnrolled(mode, namespaceMode.get(workload.namespace));
    workloads.push({ ...workload, enrolled });
  }
  const byName = <T extends { name: string }>(a: T, b: T) => a.name.localeCompare(b.name);
  const byKey = <T extends { key: string }>(a: T, b: T) => a.key.localeCompare(b.key);
  return {
    nodes: nodes.sort(byName),
    services: services.sort(byName),
    workloads: workloads.sort(byName),
    authorizationPolicies: authorizationPolicies.sort(byKey),
    peerAuthentications: peerAuthentications.sort(byKey),
  };
}

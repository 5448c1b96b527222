// Contradictions between objects that are each valid alone: one key twice,
// two workloads at one address, two Services at one VIP, a VIP that is a
// workload's address. The ztunnel refuses a state that has any (its view
// could not say which object an address means); the agent runs the same
// check on what it is about to send, with each kind listed oldest first, and
// refuses each later claimant alone, so the ztunnel never sees one.
import { keyOf, listOf, MESH_KIND_NAMES, MESH_KINDS, type KindValue, type MeshKind, type MeshState } from './kinds.ts';
import { serviceKey } from './model.ts';

/** The first object of each key: later ones are refused as duplicates and take no part in the other checks. */
function firstOfEachKey<K extends MeshKind>(kind: K, values: readonly KindValue<K>[]): KindValue<K>[] {
  const seen = new Set<string>();
  return values.filter((v) => {
    const key = keyOf(kind, v);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export interface Contradiction {
  kind: MeshKind;
  /** The later object's key (MESH_KINDS[kind].key): the one refused. */
  key: string;
  /** Stable name of the rule, for status and tests. */
  rule: 'duplicate-key' | 'ip-claimed' | 'vip-claimed' | 'vip-is-workload-ip';
  /** Names both objects and what they contradict on. */
  problem: string;
}

/**
 * Every contradiction in `state`; in each, the object listed later is the
 * one named. Objects already named are left out of later checks, so a
 * refused workload's addresses do not also count against the Services.
 */
export function findContradictions(state: MeshState): Contradiction[] {
  const found: Contradiction[] = [];
  for (const kind of MESH_KIND_NAMES) {
    const seen = new Set<string>();
    for (const v of listOf(state, kind)) {
      const key = keyOf(kind, v);
      if (seen.has(key)) found.push({ kind, key, rule: 'duplicate-key', problem: `duplicate ${MESH_KINDS[kind].label} ${key}` });
      seen.add(key);
    }
  }
  const workloads = firstOfEachKey('workloads', listOf(state, 'workloads'));
  const services = firstOfEachKey('services', listOf(state, 'services'));

  const owners = new Map<string, { namespace: string; name: string }>();
  for (const w of workloads) {
    const taken = w.ips.find((ip) => owners.has(ip));
    if (taken !== undefined) {
      const other = owners.get(taken)!;
      found.push({ kind: 'workloads', key: w.uid, rule: 'ip-claimed', problem: `workloads ${other.namespace}/${other.name} and ${w.namespace}/${w.name} both have IP ${taken}` });
      continue;
    }
    for (const ip of w.ips) owners.set(ip, w);
  }

  const vips = new Map<string, string>();
  for (const s of services) {
    const key = serviceKey(s);
    const pod = s.vips.find((vip) => owners.has(vip));
    if (pod !== undefined) {
      const w = owners.get(pod)!;
      found.push({ kind: 'services', key, rule: 'vip-is-workload-ip', problem: `service ${key} claims VIP ${pod}, which is workload ${w.namespace}/${w.name}'s IP` });
      continue;
    }
    const taken = s.vips.find((vip) => vips.has(vip));
    if (taken !== undefined) {
      found.push({ kind: 'services', key, rule: 'vip-claimed', problem: `services ${vips.get(taken)} and ${key} both claim VIP ${taken}` });
      continue;
    }
    for (const vip of s.vips) vips.set(vip, key);
  }
  return found;
}

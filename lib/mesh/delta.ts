// The difference between two MeshStates, as the control channel carries it.
import { isDeepStrictEqual } from 'node:util';
import type { DeltaMessage } from './control-protocol.ts';
import { serviceKey, type MeshState } from './model.ts';

type Changes = Pick<DeltaMessage, 'upsert' | 'remove'>;

function diff<T>(before: readonly T[], after: readonly T[], key: (t: T) => string): { upsert: T[]; remove: string[] } {
  const old = new Map(before.map((t) => [key(t), t]));
  const upsert = after.filter((t) => !isDeepStrictEqual(old.get(key(t)), t));
  const kept = new Set(after.map(key));
  const remove = [...old.keys()].filter((k) => !kept.has(k));
  return { upsert, remove };
}

export function stateDelta(before: MeshState, after: MeshState): Changes | null {
  const nodes = diff(before.nodes, after.nodes, (n) => n.name);
  const workloads = diff(before.workloads, after.workloads, (w) => w.uid);
  const services = diff(before.services, after.services, serviceKey);
  const authz = diff(before.authorizationPolicies, after.authorizationPolicies, (p) => p.key);
  const peerAuth = diff(before.peerAuthentications, after.peerAuthentications, (p) => p.key);
  const empty = [nodes, workloads, services, authz, peerAuth].every((d) => d.upsert.length === 0 && d.remove.length === 0);
  if (empty) return null;
  return {
    upsert: { nodes: nodes.upsert, workloads: workloads.upsert, services: services.upsert, authorizationPolicies: authz.upsert, peerAuthentications: peerAuth.upsert },
    remove: { nodes: nodes.remove, workloads: workloads.remove, services: services.remove, authorizationPolicies: authz.remove, peerAuthentications: peerAuth.remove },
  };
}

// The difference between two MeshStates, as the control channel carries it.
import { isDeepStrictEqual } from 'node:util';
import type { DeltaMessage } from './control-protocol.ts';
import { keyOf, keysOf, listOf, MESH_KIND_NAMES, stateOf, type KindValue, type MeshKind, type MeshState } from './kinds.ts';

type Changes = Pick<DeltaMessage, 'upsert' | 'remove'>;

function diff<K extends MeshKind>(kind: K, before: readonly KindValue<K>[], after: readonly KindValue<K>[]): { upsert: KindValue<K>[]; remove: string[] } {
  const key = (v: KindValue<K>) => keyOf(kind, v);
  const old = new Map(before.map((t) => [key(t), t]));
  const upsert = after.filter((t) => !isDeepStrictEqual(old.get(key(t)), t));
  const kept = new Set(after.map(key));
  const remove = [...old.keys()].filter((k) => !kept.has(k));
  return { upsert, remove };
}

export function stateDelta(before: MeshState, after: MeshState): Changes | null {
  const upsert = stateOf((kind) => diff(kind, listOf(before, kind), listOf(after, kind)).upsert);
  const remove = keysOf((kind) => diff(kind, listOf(before, kind), listOf(after, kind)).remove);
  if (MESH_KIND_NAMES.every((k) => upsert[k].length === 0 && remove[k].length === 0)) return null;
  return { upsert, remove };
}

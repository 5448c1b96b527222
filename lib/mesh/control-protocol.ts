// Agent → ztunnel control channel: newline-delimited JSON over a Unix socket
// the ztunnel listens on. The agent sends a full snapshot on connect, then
// deltas; the ztunnel answers each with ack or nack. A ztunnel that loses the
// agent keeps serving its last state (fail static). Messages are shaped by
// the kind table (kinds.ts).
import { fail, int, list, obj } from './validate.ts';
import { keysOf, MESH_KINDS, stateOf, type KindValue, type MeshKeys, type MeshKind, type MeshState } from './kinds.ts';

export interface SnapshotMessage {
  type: 'snapshot';
  version: number;
  state: MeshState;
}

export interface DeltaMessage {
  type: 'delta';
  version: number;
  upsert: MeshState;
  /** Keys per kind (MESH_KINDS[kind].key): node name, workload uid, service and policy "namespace/name". */
  remove: MeshKeys;
}

export type ControlMessage = SnapshotMessage | DeltaMessage;

export type ControlReply =
  | { type: 'ack'; version: number }
  | { type: 'nack'; version: number; error: string };

type Obj = Record<string, unknown>;

/** Every kind's list, each object validated by its kind; a snapshot must carry every list, a delta may leave empty ones out. */
function objects(o: Obj, where: string, optional: boolean): MeshState {
  return stateOf(<K extends MeshKind>(kind: K): KindValue<K>[] => {
    const { validate } = MESH_KINDS[kind];
    return list(o, kind, where, { optional }).map((v, i) => validate(v, `${where}.${kind}[${i}]`) as KindValue<K>);
  });
}

function keys(o: Obj, where: string): MeshKeys {
  return keysOf((kind) => list(o, kind, where, { optional: true }).map((k, i) => {
    if (typeof k !== 'string' || k === '') fail(`${where}.${kind}[${i}]`, 'must be a non-empty string');
    return k;
  }));
}

/** Validates one decoded control line; throws ControlProtocolError with the first problem found. */
export function parseControlMessage(raw: unknown): ControlMessage {
  const o = obj(raw, 'message');
  const version = int(o.version, 'message.version', 0, Number.MAX_SAFE_INTEGER);
  if (o.type === 'snapshot') return { type: 'snapshot', version, state: objects(obj(o.state, 'snapshot.state'), 'snapshot.state', false) };
  if (o.type === 'delta') {
    return {
      type: 'delta',
      version,
      upsert: objects(obj(o.upsert ?? {}, 'delta.upsert'), 'delta.upsert', true),
      remove: keys(obj(o.remove ?? {}, 'delta.remove'), 'delta.remove'),
    };
  }
  return fail('message.type', `expected "snapshot" or "delta", got ${JSON.stringify(o.type)}`);
}

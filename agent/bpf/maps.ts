// Typed access to the pinned maps: bpftool commands that update or delete one
// entry (to run in a batch), and dumps decoded with the map's codec.
import { BpfError } from '../../lib/core/errors.ts';
import { batch, isRecord } from './bpftool.ts';
import { type Codec, fromHexTokens, MAP_CODECS, type MapName, toHexArgs } from './codec.ts';
import { mapPin } from './objects.ts';

type CodecValue<C> = C extends Codec<infer T> ? T : never;
export type KeyOf<N extends MapName> = CodecValue<(typeof MAP_CODECS)[N]['key']>;
export type ValueOf<N extends MapName> = CodecValue<(typeof MAP_CODECS)[N]['value']>;
export interface Entry<N extends MapName> {
  key: KeyOf<N>;
  value: ValueOf<N>;
}

function codecs<N extends MapName>(name: N): { key: Codec<KeyOf<N>>; value: Codec<ValueOf<N>> } {
  return MAP_CODECS[name] as unknown as { key: Codec<KeyOf<N>>; value: Codec<ValueOf<N>> };
}

export function updateCommand<N extends MapName>(pinDir: string, name: N, key: KeyOf<N>, value: ValueOf<N>): string[] {
  const c = codecs(name);
  return ['map', 'update', 'pinned', mapPin(pinDir, name), 'key', 'hex', ...toHexArgs(c.key.encode(key)), 'value', 'hex', ...toHexArgs(c.value.encode(value))];
}

/** Deleting a missing key fails the batch: only delete what a dump showed. */
export function deleteCommand<N extends MapName>(pinDir: string, name: N, key: KeyOf<N>): string[] {
  return ['map', 'delete', 'pinned', mapPin(pinDir, name), 'key', 'hex', ...toHexArgs(codecs(name).key.encode(key))];
}

export function dumpCommand(pinDir: string, name: MapName): string[] {
  return ['map', 'dump', 'pinned', mapPin(pinDir, name)];
}

/** Decodes the JSON bpftool prints for `map dump`. */
export function decodeDump<N extends MapName>(name: N, output: unknown): Entry<N>[] {
  if (output === null) return [];
  if (!Array.isArray(output)) throw new BpfError(`map dump ${name}: expected a list from bpftool`);
  const c = codecs(name);
  return output.map((entry: unknown) => {
    if (!isRecord(entry) || !isHexList(entry.key) || !isHexList(entry.value)) {
      throw new BpfError(`map dump ${name}: unexpected entry ${JSON.stringify(entry).slice(0, 200)}`);
    }
    return { key: c.key.decode(fromHexTokens(entry.key)), value: c.value.decode(fromHexTokens(entry.value)) };
  });
}

export async function dumpMap<N extends MapName>(pinDir: string, name: N): Promise<Entry<N>[]> {
  const [output] = await batch([dumpCommand(pinDir, name)]);
  return decodeDump(name, output);
}

function isHexList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

// Which programs are attached directly to which cgroups, from one
// `bpftool cgroup tree` walk below a root or the paths' common ancestor. (`cgroup show`
// prints invalid JSON for an empty cgroup inside a batch.)
import { resolve, sep } from 'node:path';
import { BpfError } from '../../lib/core/errors.ts';
import { bpftoolJson, isRecord } from './bpftool.ts';

/** Program ids attached to each of paths (resolved absolute paths as keys). */
export async function attachedProgramIds(paths: readonly string[]): Promise<Map<string, Set<number>>> {
  const wanted = paths.map((p) => resolve(p));
  const result = new Map(wanted.map((p) => [p, new Set<number>()]));
  if (wanted.length === 0) return result;
  for (const [path, ids] of await attachedUnder(commonAncestor(wanted))) {
    const want = result.get(path);
    if (want) for (const id of ids) want.add(id);
  }
  return result;
}

/** Every cgroup at or below root that has programs attached directly, with their ids (resolved paths as keys). */
export async function attachedUnder(root: string): Promise<Map<string, Set<number>>> {
  const tree = await bpftoolJson(['cgroup', 'tree', resolve(root)]);
  const result = new Map<string, Set<number>>();
  for (const cgroup of Array.isArray(tree) ? tree : []) {
    if (!isRecord(cgroup) || typeof cgroup.cgroup !== 'string' || !Array.isArray(cgroup.programs)) {
      throw new BpfError(`bpftool cgroup tree: unexpected entry ${JSON.stringify(cgroup).slice(0, 200)}`);
    }
    const path = resolve(cgroup.cgroup);
    const ids = result.get(path) ?? new Set<number>();
    for (const prog of cgroup.programs) if (isRecord(prog) && typeof prog.id === 'number') ids.add(prog.id);
    result.set(path, ids);
  }
  return result;
}

export function commonAncestor(paths: readonly string[]): string {
  const split = paths.map((p) => resolve(p).split(sep));
  const first = split[0] ?? [''];
  let n = 0;
  while (n < first.length && split.every((parts) => parts[n] === first[n])) n++;
  return first.slice(0, n).join(sep) || sep;
}

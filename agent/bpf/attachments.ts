// Which programs are attached directly to which cgroups, from one
// `bpftool cgroup tree` walk below the paths' common ancestor. (`cgroup show`
// prints invalid JSON for an empty cgroup inside a batch.)
import { resolve, sep } from 'node:path';
import { BpfError } from '../errors.ts';
import { bpftoolJson, isRecord } from './bpftool.ts';

/** Program ids attached to each of paths (resolved absolute paths as keys). */
export async function attachedProgramIds(paths: readonly string[]): Promise<Map<string, Set<number>>> {
  const wanted = paths.map((p) => resolve(p));
  const result = new Map(wanted.map((p) => [p, new Set<number>()]));
  if (wanted.length === 0) return result;
  const tree = await bpftoolJson(['cgroup', 'tree', commonAncestor(wanted)]);
  for (const cgroup of Array.isArray(tree) ? tree : []) {
    if (!isRecord(cgroup) || typeof cgroup.cgroup !== 'string' || !Array.isArray(cgroup.programs)) {
      throw new BpfError(`bpftool cgroup tree: unexpected entry ${JSON.stringify(cgroup).slice(0, 200)}`);
    }
    const ids = result.get(resolve(cgroup.cgroup));
    if (!ids) continue;
    for (const prog of cgroup.programs) if (isRecord(prog) && typeof prog.id === 'number') ids.add(prog.id);
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

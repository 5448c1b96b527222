// Where the meshlet checkout is, whether a module runs from source or from
// its compiled copy under build/js/<key>/ (see sandbox/compiled.ts): the
// nearest directory above this module that holds meshlet's package.json.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'meshlet') return `${dir}/`;
    if (dirname(dir) === dir) throw new Error(`no meshlet package.json above ${from}`);
  }
}

export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

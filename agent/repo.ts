// Where the meshlet checkout is, whether this module runs from source
// (agent/repo.ts) or from its compiled copy (build/js/<key>/agent/repo.js,
// see sandbox/compiled.ts).
import { fileURLToPath } from 'node:url';

const compiled = import.meta.url.endsWith('.js');

export const REPO_ROOT = fileURLToPath(new URL(compiled ? '../../../../' : '../', import.meta.url));

// Builds build/bpf/meshlet.bpf.o for the tests (a no-op when up to date).
import { fileURLToPath } from 'node:url';
import { run } from '../../lib/core/exec.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const OBJECT = `${REPO}build/bpf/meshlet.bpf.o`;

/** Why the BPF toolchain cannot run here, or null when it can. */
export async function toolchainMissing(): Promise<string | null> {
  for (const tool of ['clang', 'bpftool']) {
    const found = await run('sh', ['-c', `command -v ${tool}`], { allowFailure: true });
    if (found.exitCode !== 0) return `${tool} not installed`;
  }
  return null;
}

export async function buildBpf(): Promise<void> {
  await run('bash', [`${REPO}scripts/build-bpf.sh`]);
}

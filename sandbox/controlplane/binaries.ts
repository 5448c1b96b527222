// Where the control plane's binaries and CRDs are: the cache that
// scripts/controlplane/build.sh keeps outside the repository (it checks the
// cache and, on a machine without one, builds it first, showing progress).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { SandboxError } from '../../lib/core/errors.ts';
import { REPO_ROOT } from '../../lib/core/repo.ts';

export interface ControlPlaneBinaries {
  bin: string;
  /** istio.yaml and gateway-api/*.yaml. */
  crds: string;
  path(name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl'): string;
}

const BUILD = join(REPO_ROOT, 'scripts', 'controlplane', 'build.sh');
let found: Promise<ControlPlaneBinaries> | undefined;

/** The built binaries, building them first if the cache is missing or corrupt (its progress goes to this process's stderr). */
export function controlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  found ??= new Promise<ControlPlaneBinaries>((resolve, reject) => {
    const child = spawn('bash', [BUILD], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', (cause) => reject(new SandboxError(`cannot run ${BUILD}: ${cause.message}`, { cause })));
    child.on('close', (code) => {
      const bin = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || bin === '') return reject(new SandboxError(`building the control plane failed (exit ${code}); run \`bash ${BUILD}\` to see why`));
      resolve({ bin, crds: join(bin, '..', 'crds'), path: (name) => join(bin, name) });
    });
  });
  return found;
}

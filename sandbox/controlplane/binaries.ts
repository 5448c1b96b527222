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
  path(name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kube-proxy' | 'kubectl'): string;
}

const BUILD = join(REPO_ROOT, 'scripts', 'controlplane', 'build.sh');
/** Set by scripts/test.sh to the bin dir it has just checked, so each test process does not hash the cache again. */
const CHECKED_BIN_ENV = 'MESHLET_CONTROLPLANE_BIN';
let found: Promise<ControlPlaneBinaries> | undefined;

const binariesIn = (bin: string): ControlPlaneBinaries => ({ bin, crds: join(bin, '..', 'crds'), path: (name) => join(bin, name) });

/** The built binaries, building them first if the cache is missing or corrupt (its progress goes to this process's stderr). */
export function controlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  const checked = process.env[CHECKED_BIN_ENV];
  if (checked) return Promise.resolve(binariesIn(checked));
  found ??= new Promise<ControlPlaneBinaries>((resolve, reject) => {
    const child = spawn('bash', [BUILD], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', (cause) => reject(new SandboxError(`cannot run ${BUILD}: ${cause.message}`, { cause })));
    child.on('close', (code) => {
      const bin = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || bin === '') return reject(new SandboxError(`building the control plane failed (exit ${code}); run \`bash ${BUILD}\` to see why`));
      resolve(binariesIn(bin));
    });
  });
  return found;
}

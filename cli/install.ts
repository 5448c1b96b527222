// `meshlet install`: the manifests that run meshlet on a cluster, printed for
// kubectl as Linkerd's CLI prints its own (`meshlet install | kubectl apply
// -f -`). Rendering lives in lib/install/, where the sandbox renders them too.
import { Command } from 'commander';
import { addFlags } from '../lib/config/flags.ts';
import { INSTALL_FLAGS, type InstallOptions } from '../lib/install/options.ts';
import { renderInstall } from '../lib/install/render.ts';

export function installCommand(): Command {
  const command = new Command('install')
    .description('print the manifests that install meshlet (namespace, accounts, RBAC, the CA, the node DaemonSet): meshlet install | kubectl apply -f -');
  return addFlags(command, INSTALL_FLAGS).action((opts: InstallOptions) => {
    process.stdout.write(renderInstall(opts));
  });
}

// `meshlet uninstall`: what `meshlet install` made, named for kubectl in the
// order to delete it (`meshlet uninstall | kubectl delete --ignore-not-found
// -f -`): the node pods first, the namespace last.
import { Command } from 'commander';
import { addFlags, type FlagTable } from '../lib/config/flags.ts';
import { INSTALL_FLAGS, type InstallOptions } from '../lib/install/options.ts';
import { renderUninstall } from '../lib/install/render.ts';

type UninstallOptions = Pick<InstallOptions, 'namespace'>;
const UNINSTALL_FLAGS: FlagTable<UninstallOptions> = { namespace: INSTALL_FLAGS.namespace };

export function uninstallCommand(): Command {
  const command = new Command('uninstall')
    .description('print what meshlet install made, node pods first: meshlet uninstall | kubectl delete --ignore-not-found -f -');
  return addFlags(command, UNINSTALL_FLAGS).action((opts: UninstallOptions) => {
    process.stdout.write(renderUninstall(opts.namespace));
  });
}

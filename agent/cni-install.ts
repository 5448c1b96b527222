// Puts the meshlet CNI plugin on the node and chains it into the node's
// primary CNI config, as Istio's install-cni does, and takes both away on
// uninstall. The plugin is one file run by a copy of this Node binary (nodes
// have no Node of their own), behind a two-line sh launcher the runtime
// executes by the plugin's type name. The agent also keeps the list of
// ambient namespaces beside the config, on the node's disk, so after a reboot
// the plugin holds those namespaces' pods until the agent runs again and lets
// every other pod start.
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { conflistPath, findPrimaryConfig, withMeshletPlugin, withoutMeshletPlugin } from '../lib/cni/conflist.ts';
import type { Logger } from '../lib/core/log.ts';
import { writeFileAtomic } from '../lib/core/write-atomic.ts';

/** The plugin's type in the CNI config, which names its executable in the CNI bin dir. */
export const CNI_PLUGIN_TYPE = 'meshlet-cni';
const PLUGIN_DIR = `${CNI_PLUGIN_TYPE}.d`;
/** Beside the configs, in a directory: runtimes read every .conf/.conflist/.json file of the config dir itself. */
const STATE_DIR = 'meshlet.d';
const AMBIENT_FILE = 'ambient-namespaces.json';
const RETRY_MS = 2000;
/** How often the config is checked for the entry again: a CNI that rewrites its config (its upgrade) drops it. */
const RECHECK_MS = 5000;

export interface CniInstallOptions {
  /** The node's CNI config dir (containerd's conf_dir), as the agent sees it. */
  confDir: string;
  /** The node's CNI plugin dir (containerd's bin_dir), as the agent sees it. */
  binDir: string;
  /** The agent's socket as the plugin sees it: the node's path. */
  agentSocket: string;
  /** Namespaces whose pods never wait for the agent (meshlet's own, kube-system). */
  excludeNamespaces: readonly string[];
  log: Logger;
}

/** The plugin's source beside this module: .ts run from the tree, .js in the image. */
const pluginSource = (): string => {
  const here = fileURLToPath(import.meta.url);
  return join(dirname(here), '..', 'cni', `plugin${extname(here)}`);
};


/** Copies unless the target has the source's size and modification time already (the Node binary is ~100 MB). */
async function copyIfChanged(from: string, to: string, mode: number): Promise<void> {
  const [src, dst] = await Promise.all([stat(from), stat(to).catch(() => undefined)]);
  if (dst && dst.size === src.size && dst.mtimeMs === src.mtimeMs) return;
  const temp = `${to}.${process.pid}.tmp`;
  await copyFile(from, temp);
  await utimes(temp, src.atime, src.mtime);
  await chmod(temp, mode);
  await rename(temp, to);
}

export class CniInstall {
  readonly #o: CniInstallOptions;
  #ambient: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: CniInstallOptions) {
    this.#o = options;
  }

  get ambientFile(): string {
    return join(this.#o.confDir, STATE_DIR, AMBIENT_FILE);
  }

  /** Puts the plugin in place, then chains it into the primary config, retrying until the node's CNI wrote one. */
  async start(): Promise<void> {
    const { binDir, confDir } = this.#o;
    const dir = join(binDir, PLUGIN_DIR);
    await mkdir(dir, { recursive: true });
    await mkdir(join(confDir, STATE_DIR), { recursive: true });
    await copyIfChanged(process.execPath, join(dir, 'node'), 0o755);
    // .mts/.mjs: an ES module wherever it lands, without a package.json beside it.
    const plugin = `plugin.m${extname(pluginSource()).slice(1)}`;
    await writeFileAtomic(join(dir, plugin), await readFile(pluginSource(), 'utf8'), 0o644);
    await writeFileAtomic(join(binDir, CNI_PLUGIN_TYPE), `#!/bin/sh\nd="$(dirname "$0")/${PLUGIN_DIR}"\nexec "$d/node" "$d/${plugin}"\n`, 0o755);
    await this.#chain();
  }

  async #chain(): Promise<void> {
    if (this.#stopped) return;
    const { confDir, log } = this.#o;
    let next = RECHECK_MS;
    try {
      const primary = await findPrimaryConfig(confDir);
      if (!primary) {
        log.warn('no CNI config on this node yet; the meshlet CNI plugin is chained once the network plugin writes one', { confDir });
        next = RETRY_MS;
      } else {
        const entry = { type: CNI_PLUGIN_TYPE, agentSocket: this.#o.agentSocket, ambientNamespacesFile: this.ambientFile, excludeNamespaces: [...this.#o.excludeNamespaces] };
        const { text, changed } = withMeshletPlugin(await readFile(primary, 'utf8'), basename(primary), entry);
        if (changed) {
          const target = conflistPath(primary);
          await writeFileAtomic(target, text, 0o644);
          if (target !== primary) await rm(primary, { force: true });
          log.info('meshlet CNI plugin chained into the node\'s CNI config', { config: target });
        }
      }
    } catch (err) {
      log.error('cannot chain the meshlet CNI plugin; retrying', { confDir, error: (err as Error).message });
      next = RETRY_MS;
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#chain(), next).unref();
  }

  /** Records which namespaces' pods the plugin holds for the agent; written only when it changes. */
  async setAmbientNamespaces(namespaces: readonly string[]): Promise<void> {
    const text = `${JSON.stringify({ namespaces })}\n`;
    if (text === this.#ambient) return;
    await writeFileAtomic(this.ambientFile, text, 0o644);
    this.#ambient = text;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Uninstall: the plugin out of the config first (no pod waits for an agent that is going), then its files. */
  async remove(): Promise<void> {
    this.stop();
    const { confDir, binDir } = this.#o;
    const primary = await findPrimaryConfig(confDir);
    if (primary) {
      const { text, changed } = withoutMeshletPlugin(await readFile(primary, 'utf8'), CNI_PLUGIN_TYPE);
      if (changed) await writeFileAtomic(primary, text, 0o644);
    }
    await rm(join(binDir, CNI_PLUGIN_TYPE), { force: true });
    await rm(join(binDir, PLUGIN_DIR), { recursive: true, force: true });
    await rm(join(confDir, STATE_DIR), { recursive: true, force: true });
  }
}

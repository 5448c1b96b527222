// The agent's edits of the node's primary CNI config: chaining the meshlet
// plugin in as the last plugin of the network the runtime uses, and taking it
// out again. The file belongs to the node's network plugin, so everything else
// in it is kept as it is, and an edit that changes nothing rewrites nothing.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isRecord } from '../cluster/objects.ts';
import { ConfigError } from '../core/errors.ts';

/** What the container runtime reads from its CNI config dir (libcni ConfFiles). */
const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'];
const FIX = 'fix it or reinstall the node\'s network plugin, and the meshlet agent chains its plugin into it again';

/** The node's CNI config cannot be edited. */
export class CniConfigError extends ConfigError {
  // Its own code: a node's file is wrong, not a meshlet flag.
  override readonly code = 'MESHLET_CNI_CONFIG';
  readonly file: string;

  constructor(file: string, problem: string) {
    super(`CNI config ${file}: ${problem}; ${FIX}`);
    this.file = file;
  }
}

/** The meshlet plugin's entry in a plugin list; `type` names its executable. */
export interface CniPluginEntry extends Record<string, unknown> {
  type: string;
}

export interface ConfigEdit {
  text: string;
  changed: boolean;
}

/**
 * The config the runtime uses: the first of its config files in byte order
 * (containerd and CRI-O sort them as Go's sort.Strings does), not recursive.
 */
export async function findPrimaryConfig(confDir: string): Promise<string | undefined> {
  const entries = await readdir(confDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    // As libcni: no directory yet is no config yet.
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const names = entries
    .filter((e) => !e.isDirectory() && CONFIG_EXTENSIONS.some((ext) => e.name.endsWith(ext)))
    .map((e) => e.name)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return names.length === 0 ? undefined : join(confDir, names[0]);
}

/** Where a config is written once it is a plugin list: a .conf or .json file becomes .conflist. */
export function conflistPath(path: string): string {
  return path.replace(/\.(conf|json)$/, '.conflist');
}

const serialize = (config: unknown): string => `${JSON.stringify(config, null, 2)}\n`;

/** The edited config; the original text when nothing in it changed, whatever its formatting. */
function edit(text: string, before: unknown, after: unknown): ConfigEdit {
  const changed = JSON.stringify(before) !== JSON.stringify(after);
  return { text: changed ? serialize(after) : text, changed };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parse(text: string, file: string): Record<string, unknown> {
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(file, `not JSON (${(err as Error).message})`);
  }
  if (!isRecord(config)) throw new CniConfigError(file, 'not a JSON object');
  return config;
}

/** The config's plugin list, or undefined for a single-plugin config. */
function pluginsOf(config: Record<string, unknown>, file: string): Record<string, unknown>[] | undefined {
  if (!('plugins' in config) && !file.endsWith('.conflist')) {
    if (typeof config.type !== 'string') throw new CniConfigError(file, 'neither a plugin list ("plugins") nor a plugin ("type")');
    return undefined;
  }
  const { plugins } = config;
  if (!Array.isArray(plugins) || !plugins.every(isRecord)) {
    throw new CniConfigError(file, '"plugins" is not a list of plugin objects');
  }
  return plugins;
}

/**
 * The config with `entry` chained in: in place of an entry of its type (so a
 * changed entry applies), else last. A single-plugin config (.conf, .json)
 * becomes a plugin list, to be written at conflistPath() in place of the
 * original, as Istio's install-cni does.
 */
export function withMeshletPlugin(text: string, fileName: string, entry: CniPluginEntry): ConfigEdit {
  const config = parse(text, fileName);
  const plugins = pluginsOf(config, fileName);
  if (!plugins) {
    const { cniVersion, name, ...plugin } = config;
    return { text: serialize({ cniVersion, name, plugins: [plugin, entry] }), changed: true };
  }
  const at = plugins.findIndex((p) => p.type === entry.type);
  const next = at === -1
    ? [...plugins, entry]
    : plugins.flatMap((p, i) => (i === at ? [entry] : p.type === entry.type ? [] : [p]));
  return edit(text, config, { ...config, plugins: next });
}

/**
 * The config without plugins of `type`. Anything but a plugin list is left
 * alone: it holds no meshlet entry the runtime could run, and an uninstall
 * must not stop at a file the network plugin broke.
 */
export function withoutMeshletPlugin(text: string, type: string): ConfigEdit {
  const config = parseJson(text);
  if (!isRecord(config) || !Array.isArray(config.plugins)) return { text, changed: false };
  const plugins: unknown[] = config.plugins;
  return edit(text, config, { ...config, plugins: plugins.filter((p) => !isRecord(p) || p.type !== type) });
}

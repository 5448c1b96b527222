// Node bootstrap credentials: a JSON file {"node-1": "<token>", …} the sandbox
// writes, watched and re-read on change. A bad file is logged and the last
// good tokens stay. Lookups hash both sides and compare in constant time
// against every entry, so timing reveals neither a token nor which matched.
import { createHash, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { ConfigError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { refusal, type Caller, type CallerAuthenticator, type Refusal } from './caller.ts';

const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

/** The node → token map in `text`, or why it is unusable. */
export function parseNodeTokens(text: string): Map<string, string> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  if (!isRecord(value)) return 'not a JSON object of node name to token';
  const tokens = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const [node, token] of Object.entries(value)) {
    if (typeof token !== 'string' || token.trim() === '') return `the token of node ${JSON.stringify(node)} is not a non-empty string`;
    const other = owners.get(token);
    if (other !== undefined) return `nodes ${other} and ${node} share a token; each node needs its own`;
    owners.set(token, node);
    tokens.set(node, token);
  }
  return tokens;
}

export class NodeTokens implements CallerAuthenticator {
  readonly path: string;
  readonly #log: Logger | undefined;
  #entries: { node: string; hash: Buffer }[] = [];
  #stamp = '';
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;

  constructor(path: string, log?: Logger) {
    this.path = path;
    this.#log = log;
  }

  async start(): Promise<void> {
    const name = basename(this.path);
    // Writers replace the file by rename, so watch the directory; poll as a backstop.
    try {
      this.#watcher = watch(dirname(this.path), (_event, file) => {
        if (file === null || file === name) void this.reload();
      });
    } catch (err) {
      throw new ConfigError(`cannot watch the directory of --node-tokens ${this.path}: ${(err as Error).message}`);
    }
    this.#poll = setInterval(() => void this.reload(), 1000).unref();
    await this.reload();
  }

  stop(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
  }

  /** Re-reads the file if it changed. */
  async reload(): Promise<void> {
    let text: string;
    try {
      const st = await stat(this.path);
      const stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
      if (stamp === this.#stamp) return;
      this.#stamp = stamp;
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (this.#stamp !== code) this.#log?.warn('node token file unreadable; keeping the last good tokens', { file: this.path, error: (err as Error).message });
      this.#stamp = code ?? 'error';
      return;
    }
    const parsed = parseNodeTokens(text);
    if (typeof parsed === 'string') {
      this.#log?.error('node token file rejected; keeping the last good tokens', { file: this.path, reason: parsed });
      return;
    }
    this.#entries = [...parsed].map(([node, token]) => ({ node, hash: digest(token) }));
    this.#log?.info('node tokens loaded', { file: this.path, nodes: [...parsed.keys()] });
  }

  /** The node a bearer token belongs to, or undefined. */
  nodeFor(token: string): string | undefined {
    const hash = digest(token);
    let found: string | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(hash, entry.hash) && found === undefined) found = entry.node;
    }
    return found;
  }

  async authenticate(bearer: string): Promise<Caller | Refusal> {
    const node = this.nodeFor(bearer);
    return node === undefined
      ? refusal('unauthenticated', 'the bearer token belongs to no node; check the ztunnel\'s token file against the CA\'s --node-tokens file')
      : { node };
  }
}

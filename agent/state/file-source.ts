// Cluster state from a YAML file of ordinary Kubernetes objects (the
// sandbox's "API server"). Watches the directory, since writers replace the
// file by rename, and polls as a backstop, so changes land within a second.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isRecord, type KubeObject } from './objects.ts';

export interface StateFileRead {
  objects: KubeObject[];
  /** Documents that are not YAML mappings, with the parser's reason. */
  unreadable: { document: number; reason: string }[];
}

/**
 * The sandbox writes each object as one JSON document (JSON is YAML), so the
 * common case skips the YAML parser, which costs tens of milliseconds per
 * change on a hundred pods: enrollment latency. Anything else is parsed as YAML.
 */
export function parseJsonDocuments(text: string): unknown[] | undefined {
  const values: unknown[] = [];
  for (const doc of text.split(/^---$/m)) {
    const body = doc.replace(/^#.*$/gm, '').trim();
    if (body === '') continue;
    if (body[0] !== '{') return undefined;
    try {
      values.push(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  return values;
}

export function parseStateYaml(text: string): StateFileRead {
  const fast = parseJsonDocuments(text);
  if (fast) return { objects: fast.filter(isRecord), unreadable: [] };
  const objects: KubeObject[] = [];
  const unreadable: StateFileRead['unreadable'] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    if (doc.errors.length > 0) {
      unreadable.push({ document: i + 1, reason: doc.errors[0]!.message });
      return;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (isRecord(value)) objects.push(value);
    else unreadable.push({ document: i + 1, reason: 'not a YAML mapping' });
  });
  return { objects, unreadable };
}

export class StateFileSource {
  readonly path: string;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #lastStamp = '';
  #pending: NodeJS.Timeout | undefined;
  #onChange: (read: StateFileRead) => void;

  constructor(path: string, onChange: (read: StateFileRead) => void) {
    this.path = path;
    this.#onChange = onChange;
  }

  async start(): Promise<void> {
    const name = basename(this.path);
    this.#watcher = watch(dirname(this.path), (_event, file) => {
      if (file === null || file === name) this.#schedule();
    });
    this.#poll = setInterval(() => this.#schedule(), 500);
    await this.#check();
  }

  stop(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
    clearTimeout(this.#pending);
  }

  #schedule(): void {
    if (this.#pending) return;
    // Coalesce the events of one write (the rename, the directory): they arrive within a tick or two.
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      void this.#check();
    }, 2);
  }

  async #check(): Promise<void> {
    let text: string;
    try {
      const st = await stat(this.path);
      const stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
      if (stamp === this.#lastStamp) return;
      this.#lastStamp = stamp;
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    this.#onChange(parseStateYaml(text));
  }
}

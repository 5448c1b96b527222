// Cluster state from a YAML file of ordinary Kubernetes objects (the
// sandbox's "API server"). Watches the directory, since writers replace the
// file by rename, and polls as a backstop, so changes land within a second.
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isRecord, type KubeObject } from '../objects.ts';
import type { ClusterSource, ClusterSourceStatus, ClusterUpdate } from './source.ts';

export interface ParsedStateFile {
  objects: KubeObject[];
  /** Documents that are not YAML mappings (1-based), with the parser's reason. */
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

export function parseStateYaml(text: string): ParsedStateFile {
  const fast = parseJsonDocuments(text);
  if (fast) return { objects: fast.filter(isRecord), unreadable: [] };
  const objects: KubeObject[] = [];
  const unreadable: ParsedStateFile['unreadable'] = [];
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

export class StateFileSource implements ClusterSource {
  readonly path: string;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #lastStamp = '';
  #pending: NodeJS.Immediate | undefined;
  #onUpdate: ((update: ClusterUpdate) => void) | undefined;
  #synced = false;

  constructor(path: string) {
    this.path = path;
  }

  get synced(): boolean {
    return this.#synced;
  }

  status(): ClusterSourceStatus {
    return { name: `file ${this.path}`, synced: this.#synced };
  }

  /** Reads the file in this same call, so an existing file's snapshot is delivered before it returns. */
  async start(onUpdate: (update: ClusterUpdate) => void): Promise<void> {
    this.#onUpdate = onUpdate;
    const name = basename(this.path);
    this.#watcher = watch(dirname(this.path), (_event, file) => {
      if (file === null || file === name) this.#schedule();
    });
    this.#poll = setInterval(() => this.#schedule(), 500);
    this.#check();
  }

  stop(): void {
    this.#onUpdate = undefined;
    this.#watcher?.close();
    clearInterval(this.#poll);
    clearImmediate(this.#pending);
  }

  #schedule(): void {
    if (this.#pending) return;
    // Coalesce the events of one write (the rename, the directory): they arrive in the same turn of the loop.
    this.#pending = setImmediate(() => {
      this.#pending = undefined;
      this.#check();
    });
  }

  /**
   * Synchronous on purpose: a stat and a read of a small local file take
   * microseconds, while each hop through the thread pool can wait
   * milliseconds on a busy node, and every change is on the enrollment path.
   */
  #check(): void {
    const onUpdate = this.#onUpdate;
    if (!onUpdate) return;
    let text: string;
    let changedAtMs: number;
    try {
      const st = statSync(this.path);
      changedAtMs = st.ctimeMs;
      const stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
      if (stamp === this.#lastStamp) return;
      this.#lastStamp = stamp;
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const { objects, unreadable } = parseStateYaml(text);
    this.#synced = true;
    onUpdate({
      objects,
      unreadable: unreadable.map((u) => ({ object: `${this.path} document ${u.document}`, reason: u.reason })),
      changedAtMs,
    });
  }
}

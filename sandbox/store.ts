// The sandbox's "API server" storage: <runDir>/cluster.yaml, a multi-document
// YAML of ordinary Kubernetes objects. Writers hold a lock file and replace
// the file by rename, so agents watching it never read a half-written file.
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { parseJsonDocuments, StateFileSource } from '../lib/cluster/sources/file.ts';
import type { ClusterSource } from '../lib/cluster/sources/source.ts';
import { ConfigError, SandboxError } from '../lib/core/errors.ts';
import { pidAlive } from './proc.ts';

/** A stored object: typed metadata, everything else kept as written. */
export interface StoredObject extends KubernetesObject {
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

// Kinds without a namespace; every other kind defaults to "default".
const CLUSTER_SCOPED = new Set([
  'Namespace', 'Node', 'PersistentVolume', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition',
  'StorageClass', 'PriorityClass', 'GatewayClass', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration',
  'APIService', 'RuntimeClass', 'IngressClass',
]);

export const isClusterScoped = (kind: string): boolean => CLUSTER_SCOPED.has(kind);

/** API group of an apiVersion ("" for the core group): kinds like Gateway exist in several groups. */
export const groupOf = (apiVersion: string | undefined): string => (apiVersion?.includes('/') ? apiVersion.split('/')[0]! : '');

export const objectKey = (o: StoredObject): string =>
  `${groupOf(o.apiVersion)}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** kubectl's way of naming an object: "pod/web" or "authorizationpolicy.security.istio.io/deny". */
export function objectRef(o: StoredObject): string {
  const group = groupOf(o.apiVersion);
  const kind = (o.kind ?? 'object').toLowerCase();
  return `${group ? `${kind}.${group}` : kind}/${o.metadata?.name ?? '<no name>'}`;
}

/** Parses a manifest; a syntax error or a non-mapping document fails the whole file, as with kubectl. */
export function parseManifest(text: string, source = 'manifest'): StoredObject[] {
  const objects: StoredObject[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    if (doc.errors.length > 0) throw new ConfigError(`${source}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${source}: document ${i + 1} is not a YAML mapping (a Kubernetes object)`);
    const obj = value as StoredObject;
    // A List (kubectl get -o yaml) holds objects under items.
    if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) {
      for (const item of obj.items as unknown[]) if (typeof item === 'object' && item !== null && !Array.isArray(item)) objects.push(item as StoredObject);
    } else {
      objects.push(obj);
    }
  });
  return objects;
}

/** The sandbox's cluster objects as the agents and the CA read them. */
export const clusterSource = (info: { stateFile: string }): ClusterSource => new StateFileSource(info.stateFile);

export async function readState(file: string): Promise<StoredObject[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return (parseJsonDocuments(text) as StoredObject[] | undefined) ?? parseManifest(text, file);
}

export async function writeState(file: string, objects: readonly StoredObject[]): Promise<void> {
  // One JSON document per object: still YAML to any reader, and fast to parse for the agents (state/file-source.ts).
  const text = `# meshlet sandbox cluster state: one Kubernetes object per document\n${objects.map((o) => JSON.stringify(o)).join('\n---\n')}\n`;
  await writeFileAtomic(file, text);
}

export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** Runs `fn` holding the state lock, a file with the holder's pid; a dead holder's lock is taken over. */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SandboxError(`cannot create ${lockFile}: the sandbox run dir is gone; is the sandbox up?`);
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(lockFile, 'utf8').catch(() => ''));
      if (holder > 0 && !pidAlive(holder)) {
        await unlink(lockFile).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new SandboxError(`cluster state is locked by pid ${holder || '?'} for over ${timeoutMs} ms; if no apply is running, remove ${lockFile}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lockFile).catch(() => undefined);
  }
}

// What each kind of pod volume is on the node, as kubelet's volume plugins
// make them: a directory of files from the API (configMap, secret,
// downwardAPI, and projected, which combines those with ServiceAccount
// tokens), written whole with the atomic writer and kept up to date, or an
// empty directory (emptyDir). The files follow the plugins' rules: `items`
// pick and rename keys (a missing key is an error unless the source is
// optional), an object that is missing is an error unless optional (then the
// volume is empty), modes come from the item or defaultMode. A hostPath is a
// path of the pod's node (PodRuntime.nodeHostPath: a directory of the node's
// own, so two sandbox nodes on one machine share nothing), checked or made
// as its type says. A kind the sandbox does not materialise is refused with
// the reason, never skipped.
import { mkdir, realpath, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, relative } from 'node:path';
import type { V1ConfigMap, V1DownwardAPIVolumeFile, V1HostPathVolumeSource, V1KeyToPath, V1Pod, V1Secret, V1Volume, V1VolumeProjection } from '@kubernetes/client-node';
import { SandboxError } from '../../lib/core/errors.ts';
import type { FileProjection, Payload } from './atomic-writer.ts';
import type { BoundTokenRequest } from './service-account-token.ts';

/** A volume the kubelet cannot set up (an unsupported kind, a missing object or key); the pod waits in ContainerCreating with the message. */
export class VolumeError extends SandboxError {}

/** The API's default for defaultMode. */
const DEFAULT_MODE = 0o644;

/** What a volume's content is read from: the API with the node's credentials, and the pod's tokens (cached and refreshed by the caller). */
export interface SourceReader {
  /** Undefined when it does not exist. */
  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  secret(namespace: string, name: string): Promise<V1Secret | undefined>;
  /** A token for `request`; `key` names the source, so that each keeps its own. */
  token(key: string, request: BoundTokenRequest): Promise<string>;
}

/** How one of the pod's volumes exists on the node. */
export interface VolumePlan {
  name: string;
  /** The directory the containers bind at their mountPaths. */
  hostPath: string;
  /** Kind as the pod spells it (configMap, emptyDir, …). */
  kind: string;
  /** API data volumes are read-only whatever the volumeMount says, as kubelet mounts them. */
  readOnly: boolean;
  /** Writable by every user, as kubelet makes an emptyDir. */
  worldWritable: boolean;
  /** The files it holds now; absent for an emptyDir (the containers own its content). */
  content?: (pod: V1Pod, reader: SourceReader) => Promise<Payload>;
  /** Readies what exists outside the pod (a hostPath), instead of making `hostPath` the pod's own directory. */
  prepare?: () => Promise<void>;
}

/** Where a hostPath of the pod's node is on this machine. */
export interface NodeHostPath {
  path: string;
  /** The node's directory it lies in: what it leads to, symlinks followed, must stay inside. */
  root: string;
}

/** Maps an absolute path of the pod's node to this machine. */
export type NodePaths = (path: string) => NodeHostPath;

const SUPPORTED = 'emptyDir, configMap, secret, downwardAPI, projected (serviceAccountToken, configMap, secret, downwardAPI) and hostPath';

/** hostPath types the sandbox checks or makes, as kubelet's hostPath plugin does; the node's devices are the host's, not the sandbox's to give. */
const HOST_PATH_TYPES = new Set(['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket']);

/** What kind of file `path` leads to (as kubelet's checker, following symlinks), or undefined if nothing. */
async function fileKind(path: string): Promise<'Directory' | 'File' | 'Socket' | 'other' | undefined> {
  try {
    const st = await stat(path);
    return st.isDirectory() ? 'Directory' : st.isFile() ? 'File' : st.isSocket() ? 'Socket' : 'other';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Checks or makes the hostPath as its type says (kubelet's hostPath type
 * checker), then that it leads nowhere outside the node's directory: a
 * symlink a container left in a hostPath would otherwise reach the host.
 */
async function prepareHostPath(where: string, source: V1HostPathVolumeSource, at: NodeHostPath): Promise<void> {
  const type = source.type ?? '';
  const onNode = `${source.path} on the node`;
  await mkdir(at.root, { recursive: true, mode: 0o755 }).catch((err: unknown) => {
    throw new VolumeError(`${where}: the node's directory for ${source.path} (${at.root}) cannot be made: ${(err as Error).message}`, { cause: err });
  });
  const found = await fileKind(at.path);
  if (found === undefined && type === 'DirectoryOrCreate') await mkdir(at.path, { recursive: true, mode: 0o755 });
  else if (found === undefined && type === 'FileOrCreate') await writeFile(at.path, '', { mode: 0o644, flag: 'a' });
  else if (found === undefined) throw new VolumeError(`${where}: hostPath ${onNode} does not exist; create it, or set type DirectoryOrCreate or FileOrCreate`);
  else if (type !== '' && !type.endsWith('OrCreate') && found !== type) throw new VolumeError(`${where}: hostPath ${onNode} is not a ${type} (it is ${found === 'other' ? 'neither a directory, a file nor a socket' : `a ${found}`}); fix the path or its type`);
  else if (type.endsWith('OrCreate') && found !== type.slice(0, -'OrCreate'.length)) throw new VolumeError(`${where}: hostPath ${onNode} exists and is not a ${type.slice(0, -'OrCreate'.length)}; fix the path or its type`);
  const inside = relative(await realpath(at.root), await realpath(at.path));
  if (inside.startsWith('..') || isAbsolute(inside)) throw new VolumeError(`${where}: hostPath ${onNode} leads outside the node's directory (a symlink); the sandbox binds nothing of the host's`);
}

/** The volume's source field (configMap, nfs, …), whichever is set. */
export function volumeKind(volume: V1Volume): string | undefined {
  return Object.entries(volume).find(([key, value]) => key !== 'name' && value !== undefined && value !== null)?.[0];
}

const file = (data: Buffer, mode: number | undefined, defaultMode: number): FileProjection => ({ data, mode: mode ?? defaultMode });

/** A ConfigMap's or Secret's keys as files (kubelet's MakePayload): all of them, or the items'. */
function keyPayload(what: string, data: ReadonlyMap<string, Buffer>, items: readonly V1KeyToPath[] | undefined, optional: boolean, defaultMode: number): Map<string, FileProjection> {
  const payload = new Map<string, FileProjection>();
  if (!items?.length) {
    for (const [key, bytes] of data) payload.set(key, file(bytes, undefined, defaultMode));
    return payload;
  }
  for (const item of items) {
    const bytes = data.get(item.key);
    if (bytes === undefined) {
      if (optional) continue;
      throw new VolumeError(`${what} has no key "${item.key}" (named in items); add it, or make the source optional`);
    }
    payload.set(item.path, file(bytes, item.mode, defaultMode));
  }
  return payload;
}

function configMapData(cm: V1ConfigMap | undefined): Map<string, Buffer> {
  const data = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm?.data ?? {})) data.set(k, Buffer.from(v, 'utf8'));
  for (const [k, v] of Object.entries(cm?.binaryData ?? {})) data.set(k, Buffer.from(v, 'base64'));
  return data;
}

function secretData(secret: V1Secret | undefined): Map<string, Buffer> {
  const data = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(secret?.data ?? {})) data.set(k, Buffer.from(v, 'base64'));
  return data;
}

interface KeySource {
  name?: string;
  items?: V1KeyToPath[];
  optional?: boolean;
}

async function configMapPayload(pod: V1Pod, source: KeySource, defaultMode: number, reader: SourceReader): Promise<Map<string, FileProjection>> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const what = `configmap "${namespace}/${source.name}"`;
  const cm = await reader.configMap(namespace, source.name ?? '');
  if (!cm && !source.optional) throw new VolumeError(`${what} not found; create it, or make the source optional`);
  return keyPayload(what, configMapData(cm), source.items, source.optional === true, defaultMode);
}

async function secretPayload(pod: V1Pod, source: KeySource, defaultMode: number, reader: SourceReader): Promise<Map<string, FileProjection>> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const what = `secret "${namespace}/${source.name}"`;
  const secret = await reader.secret(namespace, source.name ?? '');
  if (!secret && !source.optional) throw new VolumeError(`${what} not found; create it, or make the source optional`);
  return keyPayload(what, secretData(secret), source.items, source.optional === true, defaultMode);
}

/** Labels or annotations as kubelet writes them: `key="value"` lines, sorted by key (Go's %q quoting, which JSON's matches for printable text). */
const formatMap = (map: Record<string, string> | undefined): string =>
  Object.keys(map ?? {}).sort().map((k) => `${k}=${JSON.stringify(map![k])}`).join('\n');

const SUBSCRIPT = /^metadata\.(labels|annotations)\['(.+)'\]$/;
const VOLUME_FIELDS: Readonly<Record<string, (pod: V1Pod) => string>> = {
  'metadata.name': (pod) => pod.metadata?.name ?? '',
  'metadata.namespace': (pod) => pod.metadata?.namespace ?? '',
  'metadata.uid': (pod) => pod.metadata?.uid ?? '',
  'metadata.labels': (pod) => formatMap(pod.metadata?.labels),
  'metadata.annotations': (pod) => formatMap(pod.metadata?.annotations),
};

/** Why the sandbox cannot fill a downward API file, or undefined. */
function downwardItemProblem(item: V1DownwardAPIVolumeFile): string | undefined {
  if (item.resourceFieldRef) return `downwardAPI file "${item.path}" takes its value from resourceFieldRef ${item.resourceFieldRef.resource}, which the sandbox does not support; use a fieldRef`;
  const path = item.fieldRef?.fieldPath ?? '';
  if (!Object.hasOwn(VOLUME_FIELDS, path) && !SUBSCRIPT.test(path)) return `downwardAPI file "${item.path}" has fieldRef ${path}, which the sandbox cannot fill; supported: ${Object.keys(VOLUME_FIELDS).join(', ')} and metadata.labels['…'] or metadata.annotations['…']`;
  return undefined;
}

function fieldValue(pod: V1Pod, path: string): string {
  const one = SUBSCRIPT.exec(path);
  if (one) return (one[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[one[2]!] ?? '';
  return VOLUME_FIELDS[path]!(pod);
}

function downwardPayload(pod: V1Pod, items: readonly V1DownwardAPIVolumeFile[] | undefined, defaultMode: number): Map<string, FileProjection> {
  const payload = new Map<string, FileProjection>();
  for (const item of items ?? []) payload.set(item.path, file(Buffer.from(fieldValue(pod, item.fieldRef!.fieldPath), 'utf8'), item.mode, defaultMode));
  return payload;
}

/** Why the sandbox cannot project `source`, or undefined. */
function projectionProblem(source: V1VolumeProjection): string | undefined {
  if (source.serviceAccountToken || source.configMap || source.secret) return undefined;
  if (source.downwardAPI) {
    for (const item of source.downwardAPI.items ?? []) {
      const problem = downwardItemProblem(item);
      if (problem) return problem;
    }
    return undefined;
  }
  const kind = Object.keys(source).find((k) => source[k as keyof V1VolumeProjection] !== undefined) ?? 'an empty source';
  return `projected source ${kind} is not supported by the sandbox; it projects serviceAccountToken, configMap, secret and downwardAPI`;
}

function projectedContent(volume: string, sources: readonly V1VolumeProjection[], defaultMode: number): VolumePlan['content'] {
  return async (pod, reader) => {
    const payload = new Map<string, FileProjection>();
    for (const [index, source] of sources.entries()) {
      let part: Map<string, FileProjection>;
      if (source.serviceAccountToken) {
        const sa = source.serviceAccountToken;
        const token = await reader.token(`${volume}/${index}`, {
          namespace: pod.metadata?.namespace ?? 'default',
          serviceAccount: pod.spec?.serviceAccountName || 'default',
          pod: { name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' },
          ...(sa.audience ? { audiences: [sa.audience] } : {}),
          ...(sa.expirationSeconds !== undefined ? { expirationSeconds: sa.expirationSeconds } : {}),
        });
        part = new Map([[sa.path, file(Buffer.from(token, 'utf8'), undefined, defaultMode)]]);
      } else if (source.configMap) part = await configMapPayload(pod, source.configMap, defaultMode, reader);
      else if (source.secret) part = await secretPayload(pod, source.secret, defaultMode, reader);
      else part = downwardPayload(pod, source.downwardAPI?.items, defaultMode);
      // A later source's file wins, as kubelet merges them.
      for (const [path, f] of part) payload.set(path, f);
    }
    return payload;
  };
}

/**
 * How `volume` exists on the node, in `hostPath` (a hostPath volume: where
 * `nodePaths` puts its path); throws VolumeError for a kind (or a part of
 * one) the sandbox does not materialise. A new kind is a case here.
 */
export function planVolume(volume: V1Volume, hostPath: string, nodePaths?: NodePaths): VolumePlan {
  const kind = volumeKind(volume) ?? 'no source';
  const where = `volume "${volume.name}"`;
  const base = { name: volume.name, hostPath, kind, worldWritable: false };
  switch (kind) {
    case 'emptyDir':
      // Medium Memory is a directory too: the sandbox's node disk is its containers' as much as its memory is.
      return { ...base, readOnly: false, worldWritable: true };
    case 'configMap': {
      const source = volume.configMap!;
      const mode = source.defaultMode ?? DEFAULT_MODE;
      return { ...base, readOnly: true, content: (pod, reader) => configMapPayload(pod, source, mode, reader) };
    }
    case 'secret': {
      const source = volume.secret!;
      const mode = source.defaultMode ?? DEFAULT_MODE;
      return { ...base, readOnly: true, content: (pod, reader) => secretPayload(pod, { name: source.secretName, items: source.items, optional: source.optional }, mode, reader) };
    }
    case 'downwardAPI': {
      const source = volume.downwardAPI!;
      for (const item of source.items ?? []) {
        const problem = downwardItemProblem(item);
        if (problem) throw new VolumeError(`${where}: ${problem}`);
      }
      const mode = source.defaultMode ?? DEFAULT_MODE;
      return { ...base, readOnly: true, content: async (pod) => downwardPayload(pod, source.items, mode) };
    }
    case 'projected': {
      const source = volume.projected!;
      for (const s of source.sources ?? []) {
        const problem = projectionProblem(s);
        if (problem) throw new VolumeError(`${where}: ${problem}`);
      }
      return { ...base, readOnly: true, content: projectedContent(volume.name, source.sources ?? [], source.defaultMode ?? DEFAULT_MODE) };
    }
    case 'hostPath': {
      const source = volume.hostPath!;
      if (!nodePaths) throw new VolumeError(`${where}: hostPath volumes need a runtime with a node filesystem, which this kubelet's runtime is not`);
      if (!isAbsolute(source.path)) throw new VolumeError(`${where}: hostPath ${JSON.stringify(source.path)} is not an absolute path`);
      if (!HOST_PATH_TYPES.has(source.type ?? '')) throw new VolumeError(`${where}: hostPath type ${source.type} is not supported by the sandbox (its nodes have no devices of their own); use one of: ${[...HOST_PATH_TYPES].filter(Boolean).join(', ')}`);
      const at = nodePaths(source.path);
      return { ...base, hostPath: at.path, readOnly: false, prepare: () => prepareHostPath(where, source, at) };
    }
    default:
      throw new VolumeError(`${where}: ${kind} volumes are not supported by the sandbox (it has no storage beyond the node's directory); use one of: ${SUPPORTED}`);
  }
}

// `apply` and `delete`: the sandbox's API server (defaults, uids, ClusterIPs),
// scheduler and kubelet in one. Each object is handled on its own: a refused
// object is reported and the rest of the manifest still applies. Mesh
// semantics (annotations, policies) are not checked here; the agent does.
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { V1Pod, V1Service, V1ServiceSpec } from '@kubernetes/client-node';
import { computeQosClass } from '../lib/cluster/cgroup-layout.ts';
import type { SandboxInfo, SandboxNodeInfo } from './info.ts';
import { podNetns, sandboxPaths } from './layout.ts';
import { nameFiles, writeHostsFiles } from './hosts.ts';
import { allocateClusterIp, allocatePodAddresses, ipFamily } from './ipam.ts';
import { netnsExists } from './netns.ts';
import { placePod, refusalReason, startPod, stopPod } from './pods.ts';
import { readSandboxFile } from './registry.ts';
import { isClusterScoped, objectKey, objectRef, parseManifest, readState, withLock, writeState, type StoredObject } from './store.ts';

export type ApplyAction = 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found' | 'refused';

export interface ObjectResult {
  /** kubectl-style reference, e.g. "pod/web". */
  ref: string;
  kind: string;
  namespace?: string;
  name: string;
  action: ApplyAction;
  /** Why the object was refused. */
  reason?: string;
  /** Applied, but part of the change was ignored. */
  warning?: string;
}

interface Context {
  sandbox: string;
  info: SandboxInfo;
  /** The whole cluster state, in file order; updated in place. */
  objects: Map<string, StoredObject>;
}

class Refused extends Error {}

/** Applies a multi-document manifest to sandbox `sandbox`; see ObjectResult for each object's fate. */
export async function applyManifest(sandbox: string, text: string, source?: string): Promise<ObjectResult[]> {
  const incoming = parseManifest(text, source);
  return mutate(sandbox, async (ctx) => {
    const results: ObjectResult[] = [];
    for (const obj of incoming) results.push(await applyOne(ctx, obj));
    return results;
  });
}

/** Deletes the manifest's objects; pods are killed and their namespace and cgroup removed. */
export async function deleteManifest(sandbox: string, text: string, source?: string): Promise<ObjectResult[]> {
  const incoming = parseManifest(text, source);
  return mutate(sandbox, async (ctx) => {
    // Last first, so a manifest's pods go before the namespace that holds them.
    const results: ObjectResult[] = [];
    for (const obj of [...incoming].reverse()) results.unshift(await deleteOne(ctx, obj));
    return results;
  });
}

async function mutate(sandbox: string, fn: (ctx: Context) => Promise<ObjectResult[]>): Promise<ObjectResult[]> {
  const info = await readSandboxFile(sandbox);
  const paths = sandboxPaths(sandbox);
  return withLock(paths.lockFile, async () => {
    const stored = await readState(paths.stateFile);
    const ctx: Context = { sandbox, info, objects: new Map(stored.map((o) => [objectKey(o), o])) };
    const results = await fn(ctx);
    if (results.some((r) => r.action === 'created' || r.action === 'configured' || r.action === 'deleted')) {
      await writeState(paths.stateFile, [...ctx.objects.values()]);
      await writeHostsFiles(sandbox, ctx.objects);
    }
    return results;
  });
}

function resultFor(obj: StoredObject, action: ApplyAction, extra: Partial<ObjectResult> = {}): ObjectResult {
  const result: ObjectResult = { ref: objectRef(obj), kind: obj.kind ?? '', name: obj.metadata?.name ?? '', action, ...extra };
  if (obj.metadata?.namespace !== undefined) result.namespace = obj.metadata.namespace;
  return result;
}

/** Checks kind and name and fills the namespace, or says why not. */
function normalize(obj: StoredObject): string | undefined {
  if (typeof obj.kind !== 'string' || obj.kind === '') return 'kind is missing';
  if (typeof obj.apiVersion !== 'string' || obj.apiVersion === '') return 'apiVersion is missing';
  if (typeof obj.metadata !== 'object' || obj.metadata === null || typeof obj.metadata.name !== 'string' || obj.metadata.name === '') return 'metadata.name is missing';
  if (obj.kind === 'Node') return 'Nodes are managed by the sandbox (`sandbox up --nodes N`)';
  if (isClusterScoped(obj.kind)) delete obj.metadata.namespace;
  else obj.metadata.namespace ??= 'default';
  return undefined;
}

async function applyOne(ctx: Context, obj: StoredObject): Promise<ObjectResult> {
  const invalid = normalize(obj);
  if (invalid) return resultFor(obj, 'refused', { reason: invalid });
  const key = objectKey(obj);
  const existing = ctx.objects.get(key);
  try {
    let outcome: { object: StoredObject; action: ApplyAction; warning?: string };
    if (obj.kind === 'Pod' && obj.apiVersion === 'v1') outcome = await applyPod(ctx, obj as V1Pod & StoredObject, existing as (V1Pod & StoredObject) | undefined);
    else if (obj.kind === 'Service' && obj.apiVersion === 'v1') outcome = applyService(ctx, obj as V1Service & StoredObject, existing as (V1Service & StoredObject) | undefined);
    else outcome = applyGeneric(obj, existing);
    if (outcome.action !== 'unchanged') {
      outcome.object.metadata!.resourceVersion = String(nextResourceVersion(ctx));
      ctx.objects.set(key, outcome.object);
    }
    return resultFor(outcome.object, outcome.action, outcome.warning ? { warning: outcome.warning } : {});
  } catch (err) {
    if (err instanceof Refused) return resultFor(obj, 'refused', { reason: err.message });
    return resultFor(obj, 'refused', { reason: `the sandbox failed to run it: ${(err as Error).message}` });
  }
}

function nextResourceVersion(ctx: Context): number {
  let max = 0;
  for (const o of ctx.objects.values()) max = Math.max(max, Number(o.metadata?.resourceVersion) || 0);
  return max + 1;
}

// Fields the server owns; they take no part in deciding "unchanged".
const comparable = (o: StoredObject): string => {
  const { metadata, status: _status, ...rest } = o;
  const { uid: _uid, resourceVersion: _rv, creationTimestamp: _ct, ...meta } = metadata ?? {};
  return JSON.stringify({ ...rest, metadata: meta });
};

function applyGeneric(obj: StoredObject, existing: StoredObject | undefined): { object: StoredObject; action: ApplyAction } {
  obj.metadata!.uid = existing?.metadata?.uid ?? randomUUID();
  if (obj.kind === 'Namespace' && obj.status === undefined) obj.status = { phase: 'Active' };
  if (!existing) return { object: obj, action: 'created' };
  return { object: obj, action: comparable(obj) === comparable(existing) ? 'unchanged' : 'configured' };
}

// Pods: scheduled, addressed and started once; a re-apply updates labels and
// annotations in place, without restarting anything.
async function applyPod(ctx: Context, pod: V1Pod & StoredObject, existing: (V1Pod & StoredObject) | undefined) {
  if (existing) {
    const before = JSON.stringify([existing.metadata?.labels, existing.metadata?.annotations]);
    const after = JSON.stringify([pod.metadata?.labels, pod.metadata?.annotations]);
    const specChanged = JSON.stringify(pod.spec?.containers) !== JSON.stringify(existing.spec?.containers);
    const warning = specChanged ? 'pod spec changes are ignored (pods are immutable); delete and re-apply the pod to change it' : undefined;
    if (before === after) return { object: existing, action: 'unchanged' as const, warning };
    const metadata = { ...existing.metadata!, labels: pod.metadata?.labels, annotations: pod.metadata?.annotations };
    return { object: { ...existing, metadata }, action: 'configured' as const, warning };
  }
  const reason = refusalReason(pod);
  if (reason) throw new Refused(reason);
  const node = schedule(ctx, pod);
  const addrs = allocatePodAddresses(node, usedPodIps(ctx));
  if (!addrs) throw new Refused(`node ${node.name} has no free address left in ${node.podCidr}; delete some pods`);
  let uid = randomUUID();
  while (await netnsExists(podNetns(ctx.sandbox, uid))) uid = randomUUID();

  const meta = pod.metadata!;
  meta.uid = uid;
  pod.spec!.nodeName = node.name;
  pod.spec!.serviceAccountName ??= pod.spec!.serviceAccount ?? 'default';
  const podIPs = [{ ip: addrs.ip }, ...(addrs.ip6 ? [{ ip: addrs.ip6 }] : [])];
  const hostIPs = [{ ip: node.nodeIp4 }, ...(node.nodeIp6 ? [{ ip: node.nodeIp6 }] : [])];
  pod.status = {
    phase: 'Running',
    podIP: addrs.ip,
    podIPs,
    hostIP: node.nodeIp4,
    hostIPs,
    conditions: [{ type: 'Ready', status: 'True' }],
    // Recorded once, as the API server does: it places the pod's cgroup for its whole life.
    qosClass: computeQosClass(pod),
  };
  await writeHostsFiles(ctx.sandbox, ctx.objects, meta.namespace!);
  await startPod(placePod(ctx.sandbox, node, pod), pod, nameFiles(ctx.sandbox, meta.namespace!));
  return { object: pod, action: 'created' as const };
}

function schedule(ctx: Context, pod: V1Pod): SandboxNodeInfo {
  const nodes = ctx.info.nodes;
  const wanted = pod.spec?.nodeName;
  if (wanted) {
    const node = nodes.find((n) => n.name === wanted);
    if (!node) throw new Refused(`spec.nodeName "${wanted}" is not a node of this sandbox (${nodes.map((n) => n.name).join(', ')})`);
    return node;
  }
  const load = new Map(nodes.map((n) => [n.name, 0]));
  for (const o of ctx.objects.values()) {
    const n = o.kind === 'Pod' ? (o as V1Pod).spec?.nodeName : undefined;
    if (n !== undefined && load.has(n)) load.set(n, load.get(n)! + 1);
  }
  return nodes.reduce((best, n) => (load.get(n.name)! < load.get(best.name)! ? n : best));
}

function usedPodIps(ctx: Context): Set<string> {
  const used = new Set<string>();
  for (const o of ctx.objects.values()) if (o.kind === 'Pod') for (const p of (o as V1Pod).status?.podIPs ?? []) used.add(p.ip);
  return used;
}

// Services: defaults as the API server sets them, ClusterIPs kept for life.
function applyService(ctx: Context, svc: V1Service & StoredObject, existing: (V1Service & StoredObject) | undefined) {
  svc.metadata!.uid = existing?.metadata?.uid ?? randomUUID();
  const spec: V1ServiceSpec = (svc.spec ??= {});
  spec.type ??= 'ClusterIP';
  for (const p of spec.ports ?? []) {
    p.protocol ??= 'TCP';
    p.targetPort ??= p.port;
  }
  if (spec.type !== 'ExternalName') assignClusterIps(ctx, spec, existing?.spec);
  if (!existing) return { object: svc, action: 'created' as const };
  return { object: svc, action: comparable(svc) === comparable(existing) ? ('unchanged' as const) : ('configured' as const) };
}

function assignClusterIps(ctx: Context, spec: V1ServiceSpec, previous: V1ServiceSpec | undefined): void {
  const requested = spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : undefined);
  if (previous?.clusterIPs?.length) {
    if (requested && JSON.stringify(requested) !== JSON.stringify(previous.clusterIPs.slice(0, requested.length))) {
      throw new Refused(`spec.clusterIP is immutable (it is ${previous.clusterIPs.join(',')}); delete the Service to change it`);
    }
    spec.clusterIP = previous.clusterIP;
    spec.clusterIPs = previous.clusterIPs;
    spec.ipFamilies = previous.ipFamilies;
    spec.ipFamilyPolicy = previous.ipFamilyPolicy;
    return;
  }
  if (requested?.[0] === 'None') {
    spec.clusterIP = 'None';
    spec.clusterIPs = ['None'];
    return;
  }
  const used = new Set<string>();
  for (const o of ctx.objects.values()) if (o.kind === 'Service') for (const ip of (o as V1Service).spec?.clusterIPs ?? []) used.add(ip);
  const policy = spec.ipFamilyPolicy ?? (requested && requested.length > 1 ? 'RequireDualStack' : 'SingleStack');
  let families: (4 | 6)[];
  if (requested) {
    families = requested.map((ip) => {
      const f = ipFamily(ip);
      if (!f) throw new Refused(`spec.clusterIP "${ip}" is not an IP address`);
      if (used.has(ip)) throw new Refused(`spec.clusterIP ${ip} is already allocated to another Service`);
      return f;
    });
  } else {
    families = (spec.ipFamilies ?? ['IPv4']).map((f) => (f === 'IPv6' ? 6 : 4));
  }
  if (policy !== 'SingleStack' && families.length === 1) families.push(families[0] === 4 ? 6 : 4);
  if (policy === 'SingleStack') families = families.slice(0, 1);
  const ips = families.map((family, i) => {
    const ip = requested?.[i] ?? allocateClusterIp(family, used);
    if (!ip || !isIP(ip)) throw new Refused(`no free ClusterIP left for IPv${family}; delete some Services`);
    used.add(ip);
    return ip;
  });
  spec.clusterIP = ips[0];
  spec.clusterIPs = ips;
  spec.ipFamilies = families.map((f) => `IPv${f}`);
  spec.ipFamilyPolicy = policy;
}

async function deleteOne(ctx: Context, obj: StoredObject): Promise<ObjectResult> {
  const invalid = normalize(obj);
  if (invalid) return resultFor(obj, 'refused', { reason: invalid });
  const key = objectKey(obj);
  const existing = ctx.objects.get(key);
  if (!existing) return resultFor(obj, 'not found');
  try {
    if (existing.kind === 'Namespace') {
      // Like the namespace controller: everything in it goes too.
      for (const [k, o] of ctx.objects) {
        if (o.metadata?.namespace !== existing.metadata?.name) continue;
        await removeObject(ctx, k, o);
      }
    }
    await removeObject(ctx, key, existing);
    return resultFor(existing, 'deleted');
  } catch (err) {
    return resultFor(existing, 'refused', { reason: `could not tear it down: ${(err as Error).message}` });
  }
}

async function removeObject(ctx: Context, key: string, obj: StoredObject): Promise<void> {
  if (obj.kind === 'Pod') {
    const pod = obj as V1Pod;
    const node = ctx.info.nodes.find((n) => n.name === pod.spec?.nodeName);
    if (node && pod.metadata?.uid) await stopPod(placePod(ctx.sandbox, node, pod));
  }
  ctx.objects.delete(key);
}

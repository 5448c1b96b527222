// `sandbox apply` and `sandbox delete`: shortcuts over the sandbox's API
// server, as `kubectl apply --server-side` would do them, one object at a
// time so that a refused object is reported and the rest still applies. Apply
// returns once the manifest's pods run (or are known not to), delete once its
// pods are gone, so scripts and tests can use them at once.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { PatchStrategy } from '@kubernetes/client-node';
import { describeError, statusCodeOf } from '../lib/cluster/sources/kube-client.ts';
import { openCluster, type SandboxCluster } from './cluster-client.ts';
import { objectRef, parseManifest, type ManifestObject } from './manifest.ts';

export type ApplyAction = 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found' | 'refused';

export interface ObjectResult {
  /** kubectl-style reference, e.g. "pod/web". */
  ref: string;
  kind: string;
  namespace?: string;
  name: string;
  action: ApplyAction;
  /** Why the API server refused the object. */
  reason?: string;
  /** Applied, but not (yet) doing what it says: a pod that does not run. */
  warning?: string;
}

const FIELD_MANAGER = 'meshlet-sandbox';
/** A new namespace's default ServiceAccount comes from a controller a moment after the namespace: pods wait for it this long. */
const SERVICE_ACCOUNT_WAIT_MS = 15_000;
const POD_RUNNING_WAIT_MS = 60_000;
const POD_GONE_WAIT_MS = 60_000;
const POLL_MS = 100;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ApplyManifestOptions {
  /** Wait for the manifest's pods to run (default true). */
  waitForPods?: boolean;
}

/** Applies a multi-document manifest to sandbox `sandbox`; see ObjectResult for each object's fate. */
export async function applyManifest(sandbox: string, text: string, source?: string, options: ApplyManifestOptions = {}): Promise<ObjectResult[]> {
  const incoming = parseManifest(text, source);
  const cluster = await openCluster(sandbox);
  const results: ObjectResult[] = [];
  for (const obj of incoming) results.push(await applyOne(cluster, obj));
  if (options.waitForPods === false) return results;
  await Promise.all(results.map(async (r) => {
    if (r.kind === 'Pod' && (r.action === 'created' || r.action === 'configured')) {
      const problem = await waitRunning(cluster, r.namespace ?? 'default', r.name);
      if (problem) r.warning = problem;
    }
  }));
  return results;
}

/** Deletes the manifest's objects (last first, so pods go before their namespace) and waits for its pods to be gone. */
export async function deleteManifest(sandbox: string, text: string, source?: string): Promise<ObjectResult[]> {
  const incoming = parseManifest(text, source);
  const cluster = await openCluster(sandbox);
  const results: ObjectResult[] = [];
  for (const obj of [...incoming].reverse()) results.unshift(await deleteOne(cluster, obj));
  await Promise.all(results.map(async (r) => {
    if (r.kind === 'Pod' && r.action === 'deleted') await waitGone(cluster, r.namespace ?? 'default', r.name);
  }));
  return results;
}

function resultFor(obj: ManifestObject, action: ApplyAction, extra: Partial<ObjectResult> = {}): ObjectResult {
  const result: ObjectResult = { ref: objectRef(obj), kind: obj.kind ?? '', name: obj.metadata?.name ?? '', action, ...extra };
  if (obj.metadata?.namespace !== undefined) result.namespace = obj.metadata.namespace;
  return result;
}

/** What the server holds under the object's name, or undefined (client-node sets a namespaced kind's default namespace in `obj`). */
async function readExisting(cluster: SandboxCluster, obj: ManifestObject): Promise<KubernetesObject | undefined> {
  try {
    return await cluster.objects.read({ apiVersion: obj.apiVersion!, kind: obj.kind!, metadata: { name: obj.metadata!.name!, ...(obj.metadata?.namespace ? { namespace: obj.metadata.namespace } : {}) } });
  } catch (err) {
    if (statusCodeOf(err) === 404) return undefined;
    throw err;
  }
}

const waitingForServiceAccount = (err: unknown): boolean => statusCodeOf(err) === 403 && /serviceaccount .* not found|service account .* not found/i.test(describeError(err));

async function applyOne(cluster: SandboxCluster, obj: ManifestObject): Promise<ObjectResult> {
  if (typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string' || typeof obj.metadata?.name !== 'string') {
    return resultFor(obj, 'refused', { reason: 'an object needs apiVersion, kind and metadata.name' });
  }
  const deadline = Date.now() + SERVICE_ACCOUNT_WAIT_MS;
  for (;;) {
    try {
      const existing = await readExisting(cluster, obj);
      const applied = await cluster.objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
      const action: ApplyAction = existing === undefined ? 'created' : existing.metadata?.resourceVersion === applied.metadata?.resourceVersion ? 'unchanged' : 'configured';
      return resultFor(obj, action);
    } catch (err) {
      if (waitingForServiceAccount(err) && Date.now() < deadline) {
        await sleep(POLL_MS);
        continue;
      }
      return resultFor(obj, 'refused', { reason: describeError(err) });
    }
  }
}

async function deleteOne(cluster: SandboxCluster, obj: ManifestObject): Promise<ObjectResult> {
  if (typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string' || typeof obj.metadata?.name !== 'string') {
    return resultFor(obj, 'refused', { reason: 'an object needs apiVersion, kind and metadata.name' });
  }
  // client-node fills in the default namespace of a namespaced kind, in `obj` itself: the result names it.
  try {
    await cluster.objects.delete(obj);
    return resultFor(obj, 'deleted');
  } catch (err) {
    if (statusCodeOf(err) === 404) return resultFor(obj, 'not found');
    return resultFor(obj, 'refused', { reason: describeError(err) });
  }
}

async function readPod(cluster: SandboxCluster, namespace: string, name: string): Promise<V1Pod | undefined> {
  try {
    return await cluster.core.readNamespacedPod({ namespace, name });
  } catch (err) {
    if (statusCodeOf(err) === 404) return undefined;
    throw err;
  }
}

/** Waits until every container of the pod runs; the reason it does not, once the wait is over. */
async function waitRunning(cluster: SandboxCluster, namespace: string, name: string): Promise<string | undefined> {
  const deadline = Date.now() + POD_RUNNING_WAIT_MS;
  let pod: V1Pod | undefined;
  while (Date.now() < deadline) {
    pod = await readPod(cluster, namespace, name);
    const statuses = pod?.status?.containerStatuses ?? [];
    if (pod?.status?.podIP && statuses.length === (pod.spec?.containers.length ?? 0) && statuses.every((c) => c.state?.running)) return undefined;
    if (pod?.status?.phase === 'Failed' || pod?.status?.phase === 'Succeeded') break;
    await sleep(POLL_MS);
  }
  const waiting = pod?.status?.containerStatuses?.map((c) => c.state?.waiting ?? c.state?.terminated).find((s) => s?.message || s?.reason);
  const why = waiting ? `${waiting.reason ?? ''}${waiting.message ? `: ${waiting.message}` : ''}` : pod?.status?.conditions?.find((c) => c.status !== 'True' && c.message)?.message;
  return `not running after ${POD_RUNNING_WAIT_MS / 1000} s (phase ${pod?.status?.phase ?? 'unknown'}${why ? `; ${why}` : ''}); see \`meshlet sandbox kubectl -- describe pod -n ${namespace} ${name}\``;
}

async function waitGone(cluster: SandboxCluster, namespace: string, name: string): Promise<void> {
  const deadline = Date.now() + POD_GONE_WAIT_MS;
  while (Date.now() < deadline && (await readPod(cluster, namespace, name)) !== undefined) await sleep(POLL_MS);
}

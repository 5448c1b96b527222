// Applying one waypoint's objects (waypoint-objects.ts) with server-side
// apply, after checking that none of its names is taken by an object meshlet
// does not manage (Istio's rule: an existing object without the managed
// label is never taken over, so a Gateway named like a user's Service cannot
// hijack it); the Deployment and the ClusterRoleBinding are checked as the
// controller's watch holds them, the rest read first. One exception, as
// Istio has it: a ServiceAccount the user made is used as it is, so that they
// can annotate the waypoint's identity (cloud IAM) themselves.
//
// The API server's answers sort in two: a refusal that retrying the same
// request cannot change (400, 403, 404, 422: a namespace being deleted, a
// quota, an admission webhook, RBAC) is returned as `refused` for the
// Gateway's status; anything else (no answer, 409, 429, 5xx) is thrown for
// the work queue to retry.
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { answerMessage, kubeApply, kubeRequest, type KubeAnswer } from '../lib/cluster/kube-api.ts';
import { FIELD_MANAGER, MANAGED_LABEL, MANAGED_VALUE, type Desired, type WaypointObjects } from './waypoint-objects.ts';

export type ApplyResult = { applied: true; clusterIps: string[] } | { applied: false; refused: string };

/** Statuses that mean the request itself is refused, whenever it is sent. */
const FINAL = new Set([400, 403, 404, 405, 413, 415, 422]);

const isManaged = (obj: unknown): boolean => {
  const meta = isRecord(obj) && isRecord(obj.metadata) ? obj.metadata : {};
  return isRecord(meta.labels) && meta.labels[MANAGED_LABEL] === MANAGED_VALUE;
};

/** Why `what` failed, for the status; throws when the failure is worth retrying. */
export function refusal(answer: KubeAnswer, doing: string): string {
  const message = answerMessage(answer);
  const text = `${doing}: HTTP ${answer.status}${message ? `: ${message}` : ''}`;
  if (!FINAL.has(answer.status)) throw new KubeApiError(answer.status, text);
  return text;
}

/** `fix`: what the operator can do instead of deleting or renaming the object. */
export const notManaged = (d: Desired, fix = 'or give the Gateway another name'): string =>
  `${d.what} exists and is not managed by meshlet (it has no label ${MANAGED_LABEL}=${MANAGED_VALUE}); delete or rename it, ${fix}`;

export interface WaypointApplyOptions {
  kubeconfig: KubeConfig;
  log: Logger;
  objects: WaypointObjects;
  /** The Deployment as the watch holds it (undefined: none seen). */
  deployment: KubeObject | undefined;
  /** The ClusterRoleBinding of that name as the watch holds it (undefined: none seen). */
  binding: KubeObject | undefined;
}

export type Lookup = { state: 'absent' } | { state: 'present'; managed: boolean } | { state: 'refused'; message: string };

export async function lookup(kc: KubeConfig, d: Desired): Promise<Lookup> {
  const answer = await kubeRequest(kc, 'GET', d.path);
  if (answer.status === 404) return { state: 'absent' };
  if (answer.status === 200) return { state: 'present', managed: isManaged(answer.body) };
  return { state: 'refused', message: refusal(answer, `read ${d.what}`) };
}

export async function applyWaypoint(o: WaypointApplyOptions): Promise<ApplyResult> {
  const { kubeconfig: kc, objects } = o;
  if (o.deployment !== undefined && !isManaged(o.deployment)) return { applied: false, refused: notManaged(objects.deployment) };
  if (o.binding !== undefined && !isManaged(o.binding)) return { applied: false, refused: notManaged(objects.clusterRoleBinding) };
  const checked = [objects.trustBundle, objects.service, objects.serviceAccount];
  const found = await Promise.all(checked.map((d) => lookup(kc, d)));
  for (const [i, f] of found.entries()) {
    if (f.state === 'refused') return { applied: false, refused: f.message };
    if (f.state === 'present' && !f.managed && checked[i] !== objects.serviceAccount) return { applied: false, refused: notManaged(checked[i]!) };
  }
  const account = found[2]!;
  const userAccount = account.state === 'present' && !account.managed;
  if (userAccount) o.log.info('waypoint uses a ServiceAccount meshlet does not manage, as it is', { serviceAccount: objects.serviceAccount.what });
  // The binding before the Deployment, so that the waypoint's first list is allowed; a user's ServiceAccount is bound too (the waypoint runs as it).
  const order = [objects.trustBundle, ...(userAccount ? [] : [objects.serviceAccount]), objects.clusterRoleBinding, objects.service, objects.deployment];
  let clusterIps: string[] = [];
  for (const d of order) {
    const answer = await kubeApply(kc, d.path, d.body, { fieldManager: FIELD_MANAGER, force: true });
    if (answer.status !== 200 && answer.status !== 201) return { applied: false, refused: refusal(answer, `apply ${d.what}`) };
    if (d === objects.service) clusterIps = clusterIpsOf(answer.body);
  }
  return { applied: true, clusterIps };
}

/** spec.clusterIPs (dual-stack), else spec.clusterIP; "None" and "" are no address. */
function clusterIpsOf(service: unknown): string[] {
  const spec = isRecord(service) && isRecord(service.spec) ? service.spec : {};
  const ips = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : [spec.clusterIP];
  return ips.filter((ip): ip is string => typeof ip === 'string' && ip !== '' && ip !== 'None');
}

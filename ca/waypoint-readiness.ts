// Whether a waypoint's Deployment serves: at least one available replica (a
// pod Ready for minReadySeconds), as the Deployment controller counts it.
// Otherwise, what the operator should look at: the Deployment's own
// conditions that say what is wrong (a quota or admission refusal, a
// rollout past its deadline) and where its pods are.
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { GATEWAY_NAME_LABEL } from './waypoint-objects.ts';

export interface Readiness {
  ready: boolean;
  /** Why not, for the Programmed condition. */
  message: string;
}

/** Deployment conditions whose status means trouble, as the Deployment controller sets them. */
const TROUBLE: Readonly<Record<string, string>> = { Available: 'False', Progressing: 'False', ReplicaFailure: 'True' };

export function readiness(namespace: string, name: string, deployment: KubeObject | undefined): Readiness {
  const where = `Deployment ${namespace}/${name}`;
  if (deployment === undefined) return { ready: false, message: `waiting for ${where} to be created` };
  const status = isRecord(deployment.status) ? deployment.status : {};
  const count = (value: unknown): number => (typeof value === 'number' ? value : 0);
  if (count(status.availableReplicas) > 0) return { ready: true, message: '' };
  const spec = isRecord(deployment.spec) ? deployment.spec : {};
  const wanted = typeof spec.replicas === 'number' ? spec.replicas : 1;
  const trouble = (Array.isArray(status.conditions) ? status.conditions.filter(isRecord) : [])
    .filter((c) => typeof c.type === 'string' && TROUBLE[c.type] === c.status && typeof c.message === 'string' && c.message !== '')
    .map((c) => `${String(c.type)}: ${String(c.message)}`);
  const pods = `kubectl -n ${namespace} get pods -l ${GATEWAY_NAME_LABEL}=${name}`;
  const scaled = wanted === 0 ? '; it is scaled to 0 replicas' : '';
  return {
    ready: false,
    message: `${where} has no available replica (${count(status.readyReplicas)} of ${wanted} ready)${scaled}${trouble.length > 0 ? `; ${trouble.join('; ')}` : ''}; check its pods: ${pods}`,
  };
}

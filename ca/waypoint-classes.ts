// The waypoint GatewayClasses, as Istio keeps its own: each of
// istio-waypoint and meshlet-waypoint is created when it does not exist
// (only created, never updated: users may edit it, and controllerName is
// immutable anyway), and a class that names this controller is marked
// Accepted. A class that names another controller (Istio's istiod created
// istio-waypoint, say) belongs to that controller: its Gateways are left to
// it, and the operator is told how to hand the class over.
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { WAYPOINT_CONTROLLER_NAME, type Condition } from './waypoint-gateway.ts';

export const GATEWAY_CLASSES_PATH = '/apis/gateway.networking.k8s.io/v1/gatewayclasses';

export const classPath = (name: string): string => `${GATEWAY_CLASSES_PATH}/${encodeURIComponent(name)}`;

/** The class the controller creates when `name` does not exist. */
export function newGatewayClass(name: string): Record<string, unknown> {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass',
    metadata: { name, labels: { 'app.kubernetes.io/part-of': 'meshlet', 'app.kubernetes.io/component': 'ca' } },
    spec: { controllerName: WAYPOINT_CONTROLLER_NAME, description: 'meshlet waypoints: L7 proxies on HBONE' }, // at most 64 bytes (the CRD's limit)
  };
}

/** spec.controllerName, or '' when it has none. */
export function controllerNameOf(obj: KubeObject): string {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  return typeof spec.controllerName === 'string' ? spec.controllerName : '';
}

/**
 * The status apply body that marks the class Accepted, or undefined when its
 * stored status already says so for its generation.
 */
export function classAcceptance(obj: KubeObject, now: string): Record<string, unknown> | undefined {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : '';
  const generation = typeof meta.generation === 'number' ? meta.generation : 0;
  const status = isRecord(obj.status) ? obj.status : {};
  const stored = (Array.isArray(status.conditions) ? status.conditions.filter(isRecord) : []).find((c) => c.type === 'Accepted');
  const accepted: Condition = {
    type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Handled by the meshlet waypoint controller', observedGeneration: generation,
    lastTransitionTime: stored?.status === 'True' && typeof stored.lastTransitionTime === 'string' ? stored.lastTransitionTime : now,
  };
  if (stored && stored.status === 'True' && stored.reason === accepted.reason && stored.message === accepted.message && stored.observedGeneration === generation) return undefined;
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name }, status: { conditions: [accepted] } };
}

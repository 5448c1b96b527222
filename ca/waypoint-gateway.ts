// A Gateway API Gateway as the waypoint controller reads it: whether it is a
// waypoint this controller serves (its class), and whether meshlet can deploy
// it. Istio ambient's rule: every listener is HBONE on 15008 (the name is
// free; `istioctl waypoint generate` writes "mesh"). Anything meshlet cannot
// honour is refused with the Gateway API reason and a message that says what
// to change, never ignored: a waypoint deployed without what its owner asked
// for would be one they did not ask for.
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';

/** Our controllerName on the GatewayClasses we create and serve. */
export const WAYPOINT_CONTROLLER_NAME = 'meshlet.dev/waypoint-controller';
export const ISTIO_WAYPOINT_CLASS = 'istio-waypoint';
export const MESHLET_WAYPOINT_CLASS = 'meshlet-waypoint';
/** The classes whose Gateways are waypoints; both are created when missing. */
export const WAYPOINT_CLASSES: readonly string[] = [ISTIO_WAYPOINT_CLASS, MESHLET_WAYPOINT_CLASS];
export const HBONE_PORT = 15008;
export const HBONE_PROTOCOL = 'HBONE';

/** What the API server stores of a condition (metav1.Condition). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

export interface GatewayListener {
  name: string;
  port: unknown;
  protocol: unknown;
}

export interface WaypointGateway {
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  className: string;
  listeners: GatewayListener[];
  /** spec.infrastructure: copied onto the objects the controller makes. */
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** spec.addresses: meshlet assigns a waypoint's address itself. */
  requestsAddresses: boolean;
  /** spec.infrastructure.parametersRef: meshlet waypoints take none. */
  parametersRef: boolean;
  /** metadata.deletionTimestamp: garbage collection is under way. */
  deleting: boolean;
  /** The status as stored, to keep each unchanged condition's lastTransitionTime. */
  conditions: Condition[];
  listenerConditions: ReadonlyMap<string, Condition[]>;
}

/** Why the Gateway is not accepted: its Accepted condition's reason and message, and each refused listener's. */
export interface Rejection {
  reason: 'Invalid' | 'ListenersNotValid' | 'UnsupportedAddress' | 'InvalidParameters';
  message: string;
  listeners: ReadonlyMap<string, { reason: 'UnsupportedProtocol' | 'PortUnavailable'; message: string }>;
}

export const gatewayKey = (namespace: string, name: string): string => `${namespace}/${name}`;

/** spec.gatewayClassName, or undefined. */
export function classNameOf(obj: KubeObject): string | undefined {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  return typeof spec.gatewayClassName === 'string' ? spec.gatewayClassName : undefined;
}

/** "namespace/name" of a namespaced object, or undefined when it has no names. */
export function keyOf(obj: KubeObject): string | undefined {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  return typeof meta.namespace === 'string' && typeof meta.name === 'string' ? gatewayKey(meta.namespace, meta.name) : undefined;
}

const STATUSES = new Set(['True', 'False', 'Unknown']);

function readConditions(value: unknown): Condition[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isRecord).flatMap((c): Condition[] => (typeof c.type === 'string' && typeof c.status === 'string' && STATUSES.has(c.status) ? [{
    type: c.type,
    status: c.status as Condition['status'],
    reason: typeof c.reason === 'string' ? c.reason : '',
    message: typeof c.message === 'string' ? c.message : '',
    observedGeneration: typeof c.observedGeneration === 'number' ? c.observedGeneration : 0,
    lastTransitionTime: typeof c.lastTransitionTime === 'string' ? c.lastTransitionTime : '',
  }] : []));
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(value)) return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** The Gateway's fields the controller uses, or why it cannot be read at all (no names or UID: the API server never stores such). */
export function readGateway(obj: KubeObject): WaypointGateway | string {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const status = isRecord(obj.status) ? obj.status : {};
  const { namespace, name, uid } = meta;
  if (typeof namespace !== 'string' || typeof name !== 'string' || typeof uid !== 'string' || uid === '') return 'it has no namespace, name or uid';
  const infrastructure = isRecord(spec.infrastructure) ? spec.infrastructure : {};
  const listenerConditions = new Map<string, Condition[]>();
  for (const l of Array.isArray(status.listeners) ? status.listeners.filter(isRecord) : []) {
    if (typeof l.name === 'string') listenerConditions.set(l.name, readConditions(l.conditions));
  }
  return {
    namespace,
    name,
    uid,
    generation: typeof meta.generation === 'number' ? meta.generation : 0,
    className: classNameOf(obj) ?? '',
    // The API server requires every listener's name (its key in the status).
    listeners: (Array.isArray(spec.listeners) ? spec.listeners.filter(isRecord) : []).flatMap((l) => (typeof l.name === 'string' ? [{ name: l.name, port: l.port, protocol: l.protocol }] : [])),
    labels: stringMap(infrastructure.labels),
    annotations: stringMap(infrastructure.annotations),
    requestsAddresses: Array.isArray(spec.addresses) && spec.addresses.length > 0,
    parametersRef: infrastructure.parametersRef !== undefined && infrastructure.parametersRef !== null,
    deleting: meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null,
    conditions: readConditions(status.conditions),
    listenerConditions,
  };
}

/** The Service, Deployment and pod label all carry the Gateway's name; a Service's name is the strictest of them (RFC 1035 label). */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Label keys and values as apimachinery's IsQualifiedName and IsValidLabelValue take them. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUOTE = 80;
const quote = (text: string): string => JSON.stringify(text.length > QUOTE ? `${text.slice(0, QUOTE)}…` : text);

function isQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  return LABEL_NAME.test(name) && (prefix === undefined || (prefix.length <= 253 && LABEL_PREFIX.test(prefix)));
}

function metadataProblem(gw: WaypointGateway): string | undefined {
  for (const [key, value] of Object.entries(gw.labels)) {
    if (!isQualifiedName(key)) return `spec.infrastructure.labels key ${quote(key)} is not a label key ([prefix/]name, name at most 63 letters, digits, "-", "_", ".")`;
    if (value !== '' && !LABEL_NAME.test(value)) return `spec.infrastructure.labels ${quote(key)} has value ${quote(value)}, which is not a label value (at most 63 letters, digits, "-", "_", ".")`;
  }
  for (const key of Object.keys(gw.annotations)) {
    if (!isQualifiedName(key)) return `spec.infrastructure.annotations key ${quote(key)} is not an annotation key ([prefix/]name, name at most 63 letters, digits, "-", "_", ".")`;
  }
  return undefined;
}

/** What is wrong with a listener for a waypoint, or undefined. */
function listenerProblem(l: GatewayListener): { reason: 'UnsupportedProtocol' | 'PortUnavailable'; message: string } | undefined {
  const fix = `a meshlet waypoint listens on port ${HBONE_PORT} with protocol "${HBONE_PROTOCOL}" only: set the listener to {name: mesh, port: ${HBONE_PORT}, protocol: ${HBONE_PROTOCOL}}`;
  if (l.protocol !== HBONE_PROTOCOL) return { reason: 'UnsupportedProtocol', message: `listener ${quote(l.name)} has protocol ${quote(String(l.protocol))}; ${fix}` };
  if (l.port !== HBONE_PORT) return { reason: 'PortUnavailable', message: `listener ${quote(l.name)} has port ${quote(String(l.port))}; ${fix}` };
  return undefined;
}

/** Why meshlet cannot deploy this waypoint, or undefined when it can. */
export function rejectionOf(gw: WaypointGateway): Rejection | undefined {
  const none = new Map<string, never>();
  if (!SERVICE_NAME.test(gw.name)) {
    return {
      reason: 'Invalid', listeners: none,
      message: `the Gateway's name ${quote(gw.name)} cannot name the waypoint's Service and pod label: a waypoint's name is at most 63 lower-case letters, digits and "-", starting with a letter; recreate the Gateway under such a name`,
    };
  }
  if (gw.parametersRef) {
    return { reason: 'InvalidParameters', listeners: none, message: 'meshlet waypoints take no spec.infrastructure.parametersRef; remove it (labels and annotations for the waypoint\'s objects go in spec.infrastructure.labels and .annotations)' };
  }
  if (gw.requestsAddresses) {
    return { reason: 'UnsupportedAddress', listeners: none, message: 'meshlet assigns a waypoint\'s address (its Service\'s cluster IP); remove spec.addresses' };
  }
  const metadata = metadataProblem(gw);
  if (metadata) return { reason: 'Invalid', listeners: none, message: `${metadata}; fix or remove it` };
  const listeners = new Map<string, NonNullable<ReturnType<typeof listenerProblem>>>();
  for (const l of gw.listeners) {
    const problem = listenerProblem(l);
    if (problem) listeners.set(l.name, problem);
  }
  if (gw.listeners.length === 0) {
    return { reason: 'ListenersNotValid', listeners, message: `the Gateway has no listener; a meshlet waypoint needs spec.listeners [{name: mesh, port: ${HBONE_PORT}, protocol: ${HBONE_PROTOCOL}}]` };
  }
  if (listeners.size > 0) {
    return { reason: 'ListenersNotValid', listeners, message: [...listeners.values()].map((p) => p.message).join('; ') };
  }
  return undefined;
}

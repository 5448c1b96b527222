// Phase one of a state update: each object is checked and converted on its
// own, so one bad object is rejected with a reason and never blocks the rest.
import { canonicalIp, isPort } from '../core/ip.ts';
import { parseCidr, type Cidr } from '../core/cidr.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { InvalidObjectError } from '../core/errors.ts';
import { bindsTargetRefs, convertPolicyObject, isSecurityPolicy } from '../policy/index.ts';
import type { PolicyOptions } from '../policy/types.ts';
import { convertL7AuthorizationPolicy } from '../l7/authz-convert.ts';
import type { L7AuthzPolicy } from '../l7/authz-types.ts';
import type { KindValue, MeshKind } from '../mesh/kinds.ts';
import { PORTS, type MeshNode, type Service, type ServicePort, type Waypoint, type WaypointPolicy, type WaypointRef, type WaypointTraffic, type Workload } from '../mesh/model.ts';
import { isRecord, objectRef, type KubeObject } from './objects.ts';
import { convertEndpointSlice, type EndpointSliceInfo } from './endpoint-slices.ts';
import { podQosClass, podUidProblem, type QosClass } from './cgroup-layout.ts';
import { dnsLabelProblem, dnsSubdomainProblem } from './names.ts';
import { QuantityError } from './quantity.ts';

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
/** The Gateway classes that make a waypoint: Istio's, so users' manifests keep working, and meshlet's own. */
export const WAYPOINT_CLASSES: readonly string[] = ['istio-waypoint', 'meshlet-waypoint'];
const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const GATEWAY_VERSIONS = ['v1', 'v1beta1'];
export const EXCLUDE_OUTBOUND_PORTS_ANNOTATION = 'meshlet.io/exclude-outbound-ports';
/** Ports one pod may exclude: 64 pods at the cap fill the node's excluded_ports table (16 384 entries). */
export const MAX_EXCLUDED_PORTS = 256;

export type DataplaneMode = 'ambient' | 'none' | undefined;

/** Istio's rule: a pod's own label wins over its namespace's. */
export function isEnrolled(podMode: string | undefined, namespaceMode: string | undefined): boolean {
  return podMode === 'ambient' || (podMode !== 'none' && namespaceMode === 'ambient');
}

/** What an object's own istio.io/use-waypoint says: a waypoint, `none` (opted out), or nothing (its namespace's then counts). */
export type UseWaypoint = WaypointRef | 'none' | undefined;

export interface NamespaceInfo {
  name: string;
  mode: DataplaneMode;
  waypoint: UseWaypoint;
}

/** A pod before its namespace is known: enrollment and its waypoint are decided when the batch is assembled. */
export interface PodInfo {
  workload: Omit<Workload, 'enrolled' | 'waypoint'>;
  mode: DataplaneMode;
  waypoint: UseWaypoint;
  /** metadata.creationTimestamp (epoch ms); Infinity when unknown. Of two pods claiming one address the newer is refused. */
  createdAt: number;
}

/** A Service before its endpoints are known: they are its EndpointSlices' ready pods, joined when the batch is assembled. */
export interface ServiceInfo {
  service: Omit<Service, 'endpoints' | 'waypoint'>;
  waypoint: UseWaypoint;
  /** As PodInfo's: of two Services claiming one VIP the newer is refused. */
  createdAt: number;
}

/** A Node: its mesh form, and what it owns, which pods' addresses are checked against. */
export interface NodeInfo {
  node: MeshNode;
  /** spec.podCIDRs (or spec.podCIDR): its pods' addresses lie in them. Empty when the CNI allocates addresses itself. */
  podCidrs: Cidr[];
  /** Every IP in status.addresses: the node's own, never a pod's. */
  addresses: string[];
}

/** The kinds that need the rest of the batch to become mesh state. */
type Assembled = 'nodes' | 'workloads' | 'services';

/** An object that becomes one mesh-state object as it is, named by its kind in the table. */
type MeshObject = { [K in Exclude<MeshKind, Assembled>]: { kind: K; value: KindValue<K> } }[Exclude<MeshKind, Assembled>];

/**
 * Pods become workloads once their namespace's mode is known, Services get
 * their endpoints from their EndpointSlices and the known pods
 * (cluster-state.ts); namespaces and slices only inform that.
 */
export type Converted =
  | MeshObject
  | { kind: 'Namespace'; value: NamespaceInfo }
  | { kind: 'Node'; value: NodeInfo }
  | { kind: 'Pod'; value: PodInfo | null }
  | { kind: 'Service'; value: ServiceInfo }
  | { kind: 'EndpointSlice'; value: EndpointSliceInfo | null }
  | { kind: 'Ignored' };

/** Throws InvalidObjectError naming the object and the fix. */
export function convertObject(obj: KubeObject, policyOptions: PolicyOptions = {}): Converted {
  // The waypoint's policies: the ztunnel keeps what they target, to refuse traffic around the waypoint.
  if (isSecurityPolicy(obj) && bindsTargetRefs(obj)) {
    const l7 = convertL7AuthorizationPolicy(obj, policyOptions);
    // null: an AUDIT policy, which decides nothing.
    return l7 ? { kind: 'waypointPolicies', value: waypointPolicyOf(l7) } : { kind: 'Ignored' };
  }
  const policy = convertPolicyObject(obj, policyOptions);
  if (policy) return policy;
  const ref = objectRef(obj);
  const fail = (reason: string): never => {
    throw new InvalidObjectError(ref, reason);
  };
  if (!isRecord(obj.metadata) || typeof obj.metadata.name !== 'string' || obj.metadata.name === '') {
    fail('metadata.name is missing');
  }
  switch (obj.kind) {
    case 'Namespace':
      return { kind: 'Namespace', value: convertNamespace(obj, fail) };
    case 'Pod':
      return { kind: 'Pod', value: convertPod(obj, fail) };
    case 'Service':
      return { kind: 'Service', value: convertService(obj, fail) };
    case 'EndpointSlice':
      return { kind: 'EndpointSlice', value: convertEndpointSlice(obj, ref, namespaceOf(obj, fail), stringMap(meta(obj).labels, 'metadata.labels', fail), fail) };
    case 'Node':
      return { kind: 'Node', value: convertNode(obj, fail) };
    case 'Gateway': {
      const waypoint = isGatewayApi(obj) ? convertGateway(obj, fail) : null;
      return waypoint ? { kind: 'waypoints', value: waypoint } : { kind: 'Ignored' };
    }
    default:
      return { kind: 'Ignored' };
  }
}

/** A name that becomes part of an identity, a header or a key, checked by Kubernetes' rule for it. */
function checkName(value: unknown, field: string, rule: (v: unknown, what: string) => string | undefined, fail: Fail): string {
  const problem = rule(value, field);
  return problem === undefined ? (value as string) : fail(problem);
}

/** metadata.creationTimestamp in epoch ms; Infinity when absent or unreadable: an object of unknown age loses every contradiction. */
function createdAtOf(obj: KubeObject): number {
  const t = meta(obj).creationTimestamp;
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : NaN;
  return Number.isNaN(ms) ? Infinity : ms;
}

type Fail = (reason: string) => never;

function meta(obj: KubeObject): Record<string, unknown> {
  return obj.metadata as Record<string, unknown>;
}

function stringMap(value: unknown, field: string, fail: Fail): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) return fail(`${field} must be a map of strings`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail(`${field}["${k}"] must be a string, got ${JSON.stringify(v)}`);
  }
  return value as Record<string, string>;
}

function dataplaneMode(labels: Record<string, string>, fail: Fail): DataplaneMode {
  const mode = labels[DATAPLANE_MODE_LABEL];
  if (mode === undefined) return undefined;
  if (mode !== 'ambient' && mode !== 'none') {
    fail(`label ${DATAPLANE_MODE_LABEL}="${mode}" is not a mode meshlet knows; use "ambient" or "none"`);
  }
  return mode;
}

function namespaceOf(obj: KubeObject, fail: Fail): string {
  const ns = meta(obj).namespace;
  if (ns === undefined) return 'default';
  if (typeof ns !== 'string' || ns === '') return fail('metadata.namespace must be a non-empty string');
  return checkName(ns, 'metadata.namespace', dnsLabelProblem, fail);
}

function convertNamespace(obj: KubeObject, fail: Fail): NamespaceInfo {
  const labels = stringMap(meta(obj).labels, 'metadata.labels', fail);
  const name = checkName(meta(obj).name, 'metadata.name', dnsLabelProblem, fail);
  return { name, mode: dataplaneMode(labels, fail), waypoint: useWaypoint(labels, name, fail) };
}

/**
 * istio.io/use-waypoint (with istio.io/use-waypoint-namespace, by default
 * the object's own namespace), as Istio reads it: `none` opts out. The name
 * is the Gateway's, and its Service's, so a DNS label.
 */
function useWaypoint(labels: Record<string, string>, namespace: string, fail: Fail): UseWaypoint {
  const name = labels[USE_WAYPOINT_LABEL];
  if (name === undefined) return undefined;
  if (name === 'none') return 'none';
  const ns = labels[USE_WAYPOINT_NAMESPACE_LABEL] ?? namespace;
  const problem = dnsLabelProblem(name, `label ${USE_WAYPOINT_LABEL}`) ?? dnsLabelProblem(ns, `label ${USE_WAYPOINT_NAMESPACE_LABEL}`);
  if (problem) fail(`${problem}; ${USE_WAYPOINT_LABEL} names a waypoint Gateway (or is "none" to opt out) and ${USE_WAYPOINT_NAMESPACE_LABEL} its namespace`);
  return { namespace: ns, name };
}

const isGatewayApi = (obj: KubeObject): boolean => typeof obj.apiVersion === 'string' && obj.apiVersion.startsWith(`${GATEWAY_GROUP}/`);

/**
 * A Gateway API Gateway of a waypoint class; null for any other class (an
 * ingress gateway is no waypoint). It needs the HBONE listener on 15008 the
 * ztunnels dial, and an istio.io/waypoint-for meshlet knows.
 */
function convertGateway(obj: KubeObject, fail: Fail): Waypoint | null {
  if (!GATEWAY_VERSIONS.some((v) => obj.apiVersion === `${GATEWAY_GROUP}/${v}`)) {
    fail(`apiVersion ${JSON.stringify(obj.apiVersion)} is not supported; use ${GATEWAY_GROUP}/v1`);
  }
  const spec = isRecord(obj.spec) ? obj.spec : fail('spec is missing');
  const className = spec.gatewayClassName;
  if (typeof className !== 'string' || !WAYPOINT_CLASSES.includes(className)) return null;
  const namespace = namespaceOf(obj, fail);
  // Its Service and ServiceAccount take its name.
  const name = checkName(meta(obj).name, 'metadata.name', dnsLabelProblem, fail);
  const labels = stringMap(meta(obj).labels, 'metadata.labels', fail);
  const trafficType = labels[WAYPOINT_FOR_LABEL] ?? 'service';
  if (!['service', 'workload', 'all', 'none'].includes(trafficType)) {
    fail(`label ${WAYPOINT_FOR_LABEL}="${trafficType.slice(0, 64)}" is not a traffic type; use service (the default), workload, all or none`);
  }
  const listeners = Array.isArray(spec.listeners) ? spec.listeners : [];
  if (!listeners.some((l: unknown) => isRecord(l) && l.protocol === 'HBONE' && l.port === PORTS.hbone)) {
    fail(`a waypoint needs the listener {name: mesh, port: ${PORTS.hbone}, protocol: HBONE} in spec.listeners: the ztunnels reach it there`);
  }
  return { namespace, name, trafficType: trafficType as WaypointTraffic, className };
}

/** What the ztunnel keeps of a waypoint's policy (or of its stand-in): what it targets. */
export function waypointPolicyOf(p: L7AuthzPolicy): WaypointPolicy {
  return { key: p.key, namespace: p.namespace, name: p.name, action: p.action, targets: p.targets, ...(p.failClosed === undefined ? {} : { failClosed: p.failClosed }) };
}

export function parsePortList(text: string): number[] | null {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const ports = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  return ports.every(isPort) ? [...new Set(ports)].sort((a, b) => a - b) : null;
}

/**
 * Returns null for a pod that is not a workload: not running yet (no node or
 * IP), not an error; or in its node's network namespace (hostNetwork), whose
 * address is the node's and never the pod's own, so it is never captured nor
 * known by that address.
 */
function convertPod(obj: KubeObject, fail: Fail): PodInfo | null {
  const m = meta(obj);
  const namespace = namespaceOf(obj, fail);
  const name = checkName(m.name, 'metadata.name', dnsSubdomainProblem, fail);
  const labels = stringMap(m.labels, 'metadata.labels', fail);
  const annotations = stringMap(m.annotations, 'metadata.annotations', fail);
  const spec = isRecord(obj.spec) ? obj.spec : fail('spec is missing');
  if (spec.hostNetwork === true) return null;
  const status = isRecord(obj.status) ? obj.status : {};

  let excludeOutboundPorts: number[] = [];
  const excluded = annotations[EXCLUDE_OUTBOUND_PORTS_ANNOTATION];
  if (excluded !== undefined) {
    excludeOutboundPorts =
      parsePortList(excluded) ??
      fail(`annotation ${EXCLUDE_OUTBOUND_PORTS_ANNOTATION}="${excluded.slice(0, 64)}${excluded.length > 64 ? '…' : ''}" is not a port list; use comma-separated numbers 1-65535, e.g. "5432,6379"`);
    if (excludeOutboundPorts.length > MAX_EXCLUDED_PORTS) {
      fail(`annotation ${EXCLUDE_OUTBOUND_PORTS_ANNOTATION} lists ${excludeOutboundPorts.length} ports; at most ${MAX_EXCLUDED_PORTS} per pod (the node's excluded_ports table is shared by all its pods)`);
    }
  }

  const namedPorts: Record<string, number> = {};
  const containers = Array.isArray(spec.containers) ? spec.containers : fail('spec.containers must be a list');
  for (const [i, c] of containers.entries()) {
    if (!isRecord(c)) fail(`spec.containers[${i}] must be an object`);
    const ports = (c as Record<string, unknown>).ports;
    if (ports === undefined) continue;
    if (!Array.isArray(ports)) fail(`spec.containers[${i}].ports must be a list`);
    for (const [j, p] of (ports as unknown[]).entries()) {
      const where = `spec.containers[${i}].ports[${j}]`;
      if (!isRecord(p) || !isPort(p.containerPort)) fail(`${where}.containerPort must be a number from 1 to 65535`);
      const port = p as { containerPort: number; name?: unknown };
      if (typeof port.name === 'string') namedPorts[port.name] = port.containerPort;
    }
  }
  const probePorts = containerProbePorts(containers as Record<string, unknown>[], namedPorts, fail);
  const qosClass = qosClassOf(obj, spec, fail);

  const serviceAccount = spec.serviceAccountName ?? 'default';
  if (typeof serviceAccount !== 'string' || serviceAccount === '') fail('spec.serviceAccountName must be a non-empty string');
  // It becomes the last segment of the pod's SPIFFE ID.
  checkName(serviceAccount, 'spec.serviceAccountName', dnsSubdomainProblem, fail);

  // Checked before anything else sees it: the agent builds the pod's cgroup path from it.
  const uid = m.uid;
  if (uid !== undefined) {
    const problem = podUidProblem(uid);
    if (problem) fail(`metadata.uid: ${problem}`);
  }
  const node = spec.nodeName;
  if (node !== undefined && node !== null && node !== '') checkName(node, 'spec.nodeName', dnsSubdomainProblem, fail);
  const ips = podIps(status, fail);
  // A Pending pod with an address is a workload: its init containers talk, and the CNI plugin enrolls it before they start.
  const ended = status.phase === 'Succeeded' || status.phase === 'Failed';
  if (typeof uid !== 'string' || typeof node !== 'string' || node === '' || ips.length === 0 || ended) return null;

  return {
    mode: dataplaneMode(labels, fail),
    waypoint: useWaypoint(labels, namespace, fail),
    createdAt: createdAtOf(obj),
    workload: {
      uid,
      name,
      namespace,
      serviceAccount: serviceAccount as string,
      node,
      ips,
      labels,
      excludeOutboundPorts,
      probePorts,
      qosClass,
    },
  };
}

/** status.qosClass, else the class the pod's resources give: it names the kubelet cgroup that holds the pod's. */
function qosClassOf(obj: KubeObject, spec: Record<string, unknown>, fail: Fail): QosClass {
  const init = spec.initContainers;
  if (init !== undefined && (!Array.isArray(init) || !init.every(isRecord))) fail('spec.initContainers must be a list of objects');
  try {
    return podQosClass(obj as V1Pod);
  } catch (err) {
    if (err instanceof QuantityError) return fail(`a container's cpu or memory resources: ${err.message}`);
    throw err;
  }
}

const PROBES = ['livenessProbe', 'readinessProbe', 'startupProbe'] as const;

/** Ports kubelet probes over the network (tcpSocket, httpGet, grpc); exec probes need no exemption. */
function containerProbePorts(containers: readonly Record<string, unknown>[], namedPorts: Record<string, number>, fail: Fail): number[] {
  const ports = new Set<number>();
  containers.forEach((c, i) => {
    for (const probe of PROBES) {
      const p = c[probe];
      if (p === undefined) continue;
      const where = `spec.containers[${i}].${probe}`;
      if (!isRecord(p)) return fail(`${where} must be an object`);
      for (const handler of ['tcpSocket', 'httpGet', 'grpc'] as const) {
        const h = p[handler];
        if (h === undefined) continue;
        const port = isRecord(h) ? h.port : undefined;
        const resolved = typeof port === 'string' ? namedPorts[port] : port;
        if (!isPort(resolved)) fail(`${where}.${handler}.port must be a port number or a named container port, got ${JSON.stringify(port)}`);
        ports.add(resolved as number);
      }
    }
  });
  return [...ports].sort((a, b) => a - b);
}

/** Canonical, each address once however spelt, IPv4 first. */
function podIps(status: Record<string, unknown>, fail: Fail): string[] {
  const listed: unknown[] = [];
  if (status.podIP !== undefined && status.podIP !== null && status.podIP !== '') listed.push(status.podIP);
  if (status.podIPs !== undefined && status.podIPs !== null && !Array.isArray(status.podIPs)) fail('status.podIPs must be a list');
  if (Array.isArray(status.podIPs)) {
    for (const entry of status.podIPs) if (isRecord(entry) && entry.ip !== undefined) listed.push(entry.ip);
  }
  const ips = new Set<string>();
  for (const raw of listed) {
    const ip = typeof raw === 'string' ? canonicalIp(raw) : undefined;
    if (ip === undefined) fail(`status.podIPs has ${JSON.stringify(String(raw).slice(0, 80))}, which is not an IP address`);
    ips.add(ip as string);
  }
  return [...ips].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
}

function convertService(obj: KubeObject, fail: Fail): ServiceInfo {
  const namespace = namespaceOf(obj, fail);
  const name = checkName(meta(obj).name, 'metadata.name', dnsLabelProblem, fail);
  const spec = isRecord(obj.spec) ? obj.spec : fail('spec is missing');

  // Canonical, so one address spelt two ways is one VIP.
  const vips = new Set<string>();
  for (const ip of [spec.clusterIP, ...(Array.isArray(spec.clusterIPs) ? spec.clusterIPs : [])]) {
    if (ip === undefined || ip === null || ip === 'None' || ip === '') continue;
    const vip = typeof ip === 'string' ? canonicalIp(ip) : undefined;
    if (vip === undefined) fail(`spec.clusterIP ${JSON.stringify(String(ip).slice(0, 80))} is not an IP address`);
    vips.add(vip as string);
  }

  const rawPorts = Array.isArray(spec.ports) ? spec.ports : fail('spec.ports must be a list');
  const ports: ServicePort[] = rawPorts.map((p: unknown, i: number): ServicePort => {
    const where = `spec.ports[${i}]`;
    if (!isRecord(p)) return fail(`${where} must be an object`);
    if (!isPort(p.port)) return fail(`${where}.port must be a number from 1 to 65535, got ${JSON.stringify(p.port)}`);
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') return fail(`${where}.protocol must be TCP, UDP or SCTP`);
    const port: ServicePort = { port: p.port, protocol };
    if (typeof p.name === 'string') port.name = p.name;
    if (typeof p.appProtocol === 'string' && p.appProtocol !== '') port.appProtocol = p.appProtocol;
    return port;
  });
  // As the API server requires: each port number once per protocol, each name once (one unnamed port at most).
  ports.forEach((p, i) => {
    const j = ports.findIndex((q) => (q.port === p.port && q.protocol === p.protocol) || (q.name ?? '') === (p.name ?? ''));
    if (j !== i) fail(`spec.ports[${i}] repeats ${ports[j]!.port === p.port ? `port ${p.port}/${p.protocol}` : `the name "${p.name ?? ''}"`} of spec.ports[${j}]`);
  });

  const labels = stringMap(meta(obj).labels, 'metadata.labels', fail);
  return { service: { namespace, name, vips: [...vips], ports }, waypoint: useWaypoint(labels, namespace, fail), createdAt: createdAtOf(obj) };
}

function convertNode(obj: KubeObject, fail: Fail): NodeInfo {
  const name = checkName(meta(obj).name, 'metadata.name', dnsSubdomainProblem, fail);
  const status = isRecord(obj.status) ? obj.status : fail('status.addresses is missing');
  const listed = Array.isArray(status.addresses) ? status.addresses : [];
  const ips = listed.flatMap((a: unknown) => {
    const ip = isRecord(a) && typeof a.address === 'string' ? canonicalIp(a.address) : undefined;
    return ip === undefined ? [] : [{ type: (a as Record<string, unknown>).type, ip }];
  });
  const internal = ips.filter((a) => a.type === 'InternalIP');
  const address = (internal.find((a) => !a.ip.includes(':')) ?? internal[0])?.ip;
  if (address === undefined) return fail('status.addresses has no InternalIP address');

  const spec = isRecord(obj.spec) ? obj.spec : {};
  const cidrTexts = new Set<string>();
  if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '') cidrTexts.add(spec.podCIDR);
  if (spec.podCIDRs !== undefined && spec.podCIDRs !== null && !Array.isArray(spec.podCIDRs)) fail('spec.podCIDRs must be a list');
  for (const c of Array.isArray(spec.podCIDRs) ? spec.podCIDRs : []) {
    if (typeof c !== 'string') fail(`spec.podCIDRs has ${JSON.stringify(c)}, which is not a CIDR`);
    cidrTexts.add(c as string);
  }
  const podCidrs = [...cidrTexts].map((c) => parseCidr(c) ?? fail(`spec.podCIDRs has ${JSON.stringify(c.slice(0, 80))}, which is not a CIDR (address/prefix)`));
  const unique = new Map(podCidrs.map((c) => [c.text, c]));
  return { node: { name, address }, podCidrs: [...unique.values()], addresses: [...new Set(ips.map((a) => a.ip))] };
}

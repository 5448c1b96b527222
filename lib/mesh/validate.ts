// Phase one of a control update, per object: check the shape of what the
// agent sent and convert it into a model object (IPs canonical), without
// touching state. Each throws ControlProtocolError naming the object. The
// agent runs the same checks on what it is about to send (cluster-state.ts),
// so an object the ztunnel would refuse is refused, alone, before it leaves.
import { ControlProtocolError } from '../core/errors.ts';
import type { MeshNode, Service, ServiceEndpoint, ServicePort, Waypoint, WaypointBinding, WaypointTraffic, Workload } from './model.ts';
import { canonicalIp } from '../core/ip.ts';
import { dnsLabelProblem, dnsSubdomainProblem } from '../cluster/names.ts';
import { podUidProblem } from '../cluster/cgroup-layout.ts';

type Obj = Record<string, unknown>;

export function fail(where: string, what: string): never {
  throw new ControlProtocolError(`${where}: ${what}`);
}

export function obj(v: unknown, where: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'expected an object');
  return v as Obj;
}

function str(o: Obj, key: string, where: string, { empty = false } = {}): string {
  const v = o[key];
  if (typeof v !== 'string' || (!empty && v === '')) fail(where, `${key} must be a ${empty ? '' : 'non-empty '}string`);
  return v;
}

/** A field that becomes part of a SPIFFE ID, a header, a path or a key: Kubernetes' name rule for it. */
function name(o: Obj, key: string, where: string, rule: (v: unknown, what: string) => string | undefined): string {
  const problem = rule(o[key], key);
  if (problem) fail(where, problem);
  return o[key] as string;
}

/** How errors name an object before its fields are known to be good. */
const label = (o: Obj, kind: string): string => `${kind} ${String(o.namespace).slice(0, 80)}/${String(o.name).slice(0, 80)}`;

export function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(where, `expected an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

const port = (v: unknown, where: string): number => int(v, where, 1, 65535);

export function list(o: Obj, key: string, where: string, { optional = false } = {}): unknown[] {
  const v = o[key];
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) fail(where, `${key} must be an array`);
  return v;
}

function ip(v: unknown, where: string): string {
  const c = typeof v === 'string' ? canonicalIp(v) : undefined;
  if (c === undefined) fail(where, `not an IP address: ${JSON.stringify(v)}`);
  return c;
}

function stringMap(o: Obj, key: string, where: string): Record<string, string> {
  const m = obj(o[key], `${where}.${key}`);
  for (const [k, v] of Object.entries(m)) if (typeof v !== 'string') fail(`${where}.${key}.${k}`, 'must be a string');
  return { ...(m as Record<string, string>) };
}

export function validateNode(v: unknown, where: string): MeshNode {
  const o = obj(v, where);
  const n = name(o, 'name', where, dnsSubdomainProblem);
  return { name: n, address: ip(o.address, `node ${n}.address`) };
}

/** Each address once, whatever its spelling: a second spelling of one address is a contradiction the view would meet later. */
function uniqueIps(values: unknown[], where: string): string[] {
  const ips = values.map((a, i) => ip(a, `${where}[${i}]`));
  const dup = ips.find((a, i) => ips.indexOf(a) !== i);
  if (dup !== undefined) fail(where, `lists ${dup} twice`);
  return ips;
}

/** A waypoint binding: it names a Gateway and the Service of the same name, so both are DNS labels. */
function waypointBinding(o: Obj, where: string): { waypoint?: WaypointBinding } {
  if (o.waypoint === undefined) return {};
  const at = `${where}.waypoint`;
  const b = obj(o.waypoint, at);
  if (b.from !== 'object' && b.from !== 'namespace') fail(at, `from must be "object" or "namespace", got ${JSON.stringify(b.from)}`);
  return { waypoint: { namespace: name(b, 'namespace', at, dnsLabelProblem), name: name(b, 'name', at, dnsLabelProblem), from: b.from } };
}

export function validateWorkload(v: unknown, where: string): Workload {
  const o = obj(v, where);
  const id = label(o, 'workload');
  if (typeof o.enrolled !== 'boolean') fail(id, 'enrolled must be a boolean');
  const uidProblem = podUidProblem(o.uid);
  if (uidProblem) fail(id, uidProblem);
  return {
    uid: o.uid as string,
    name: name(o, 'name', id, dnsSubdomainProblem),
    namespace: name(o, 'namespace', id, dnsLabelProblem),
    // Becomes the SPIFFE ID's last segment, which Kubernetes' rule for ServiceAccount names keeps valid.
    serviceAccount: name(o, 'serviceAccount', id, dnsSubdomainProblem),
    node: name(o, 'node', id, dnsSubdomainProblem),
    ips: uniqueIps(list(o, 'ips', id), `${id}.ips`),
    labels: stringMap(o, 'labels', id),
    enrolled: o.enrolled,
    excludeOutboundPorts: list(o, 'excludeOutboundPorts', id).map((p, i) => port(p, `${id}.excludeOutboundPorts[${i}]`)),
    ...waypointBinding(o, id),
  };
}

const PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];

function servicePort(v: unknown, where: string): ServicePort {
  const o = obj(v, where);
  const protocol = o.protocol;
  if (typeof protocol !== 'string' || !PROTOCOLS.includes(protocol)) fail(where, `protocol must be one of ${PROTOCOLS.join(', ')}`);
  const p: ServicePort = { port: port(o.port, `${where}.port`), protocol: protocol as ServicePort['protocol'] };
  if (o.name !== undefined) p.name = str(o, 'name', where, { empty: true });
  return p;
}

function serviceEndpoint(v: unknown, where: string): ServiceEndpoint {
  const o = obj(v, where);
  const ports = obj(o.ports, `${where}.ports`);
  return {
    ip: ip(o.ip, `${where}.ip`),
    ports: Object.fromEntries(Object.entries(ports).map(([name, p]) => [name, port(p, `${where}.ports["${name}"]`)])),
  };
}

export function validateService(v: unknown, where: string): Service {
  const o = obj(v, where);
  const id = label(o, 'service');
  const ports = list(o, 'ports', id).map((p, i) => servicePort(p, `${id}.ports[${i}]`));
  // A port number twice (per protocol) would be two targets at one VIP:port; a name twice, two meanings of one endpoint port.
  ports.forEach((p, i) => {
    const j = ports.findIndex((q) => (q.port === p.port && q.protocol === p.protocol) || (q.name ?? '') === (p.name ?? ''));
    if (j === i) return;
    const q = ports[j]!;
    fail(`${id}.ports[${i}]`, `repeats ${q.port === p.port && q.protocol === p.protocol ? `port ${p.port}/${p.protocol}` : `the name "${p.name ?? ''}"`} of ports[${j}]`);
  });
  const endpoints = list(o, 'endpoints', id).map((e, i) => serviceEndpoint(e, `${id}.endpoints[${i}]`));
  const seen = new Set<string>();
  for (const e of endpoints) {
    if (seen.has(e.ip)) fail(`${id}.endpoints`, `lists ${e.ip} twice`);
    seen.add(e.ip);
  }
  return {
    namespace: name(o, 'namespace', id, dnsLabelProblem),
    name: name(o, 'name', id, dnsLabelProblem),
    vips: uniqueIps(list(o, 'vips', id), `${id}.vips`),
    ports,
    endpoints,
    ...waypointBinding(o, id),
  };
}

const TRAFFIC_TYPES: readonly string[] = ['service', 'workload', 'all', 'none'] satisfies readonly WaypointTraffic[];

export function validateWaypoint(v: unknown, where: string): Waypoint {
  const o = obj(v, where);
  const id = label(o, 'waypoint');
  if (typeof o.trafficType !== 'string' || !TRAFFIC_TYPES.includes(o.trafficType)) fail(id, `trafficType must be one of ${TRAFFIC_TYPES.join(', ')}, got ${JSON.stringify(o.trafficType)}`);
  return {
    namespace: name(o, 'namespace', id, dnsLabelProblem),
    // It is also its Service's and ServiceAccount's name.
    name: name(o, 'name', id, dnsLabelProblem),
    trafficType: o.trafficType as WaypointTraffic,
    className: name(o, 'className', id, dnsSubdomainProblem),
  };
}

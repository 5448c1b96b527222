// Phase one of a control update, per object: check the shape of what the
// agent sent and convert it into a model object (IPs canonical), without
// touching state. Each throws ControlProtocolError naming the object.
import { ControlProtocolError } from '../core/errors.ts';
import type { AuthzPolicy, PeerAuthPolicy } from '../policy/types.ts';
import type { MeshNode, Service, ServiceEndpoint, ServicePort, Workload } from './model.ts';
import { canonicalIp } from '../core/ip.ts';

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
  const name = str(o, 'name', where);
  return { name, address: ip(o.address, `node ${name}.address`) };
}

export function validateWorkload(v: unknown, where: string): Workload {
  const o = obj(v, where);
  const id = `workload ${str(o, 'namespace', where)}/${str(o, 'name', where)}`;
  if (typeof o.enrolled !== 'boolean') fail(id, 'enrolled must be a boolean');
  return {
    uid: str(o, 'uid', id),
    name: str(o, 'name', id),
    namespace: str(o, 'namespace', id),
    serviceAccount: str(o, 'serviceAccount', id),
    node: str(o, 'node', id),
    ips: list(o, 'ips', id).map((a, i) => ip(a, `${id}.ips[${i}]`)),
    labels: stringMap(o, 'labels', id),
    enrolled: o.enrolled,
    excludeOutboundPorts: list(o, 'excludeOutboundPorts', id).map((p, i) => port(p, `${id}.excludeOutboundPorts[${i}]`)),
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
  const id = `service ${str(o, 'namespace', where)}/${str(o, 'name', where)}`;
  return {
    namespace: str(o, 'namespace', id),
    name: str(o, 'name', id),
    vips: list(o, 'vips', id).map((a, i) => ip(a, `${id}.vips[${i}]`)),
    ports: list(o, 'ports', id).map((p, i) => servicePort(p, `${id}.ports[${i}]`)),
    endpoints: list(o, 'endpoints', id).map((e, i) => serviceEndpoint(e, `${id}.endpoints[${i}]`)),
  };
}

// Policies were converted and validated by the agent's policy engine; here
// only their identity is checked, so a truncated message cannot slip through.
export function validatePolicy<T extends AuthzPolicy | PeerAuthPolicy>(v: unknown, where: string): T {
  const o = obj(v, where);
  const key = str(o, 'key', where);
  if (key !== `${str(o, 'namespace', where)}/${str(o, 'name', where)}`) fail(where, `key ${key} does not match namespace/name`);
  return o as unknown as T;
}

// Phase one of a control update: check the shape of everything the agent sent
// and convert it into model objects (IPs canonical), without touching state.
// Anything wrong rejects the whole message with a reason naming the object.
import { ControlProtocolError } from '../core/errors.ts';
import type { AuthzPolicy, PeerAuthPolicy } from '../policy/types.ts';
import type { MeshNode, MeshState, Service, ServicePort, Workload } from './model.ts';
import type { ControlMessage, DeltaMessage } from './control-protocol.ts';
import { canonicalIp } from '../core/ip.ts';

type Obj = Record<string, unknown>;

function fail(where: string, what: string): never {
  throw new ControlProtocolError(`${where}: ${what}`);
}

function obj(v: unknown, where: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'expected an object');
  return v as Obj;
}

function str(o: Obj, key: string, where: string, { empty = false } = {}): string {
  const v = o[key];
  if (typeof v !== 'string' || (!empty && v === '')) fail(where, `${key} must be a ${empty ? '' : 'non-empty '}string`);
  return v;
}

function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(where, `expected an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

const port = (v: unknown, where: string): number => int(v, where, 1, 65535);

function list(o: Obj, key: string, where: string, { optional = false } = {}): unknown[] {
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

function node(v: unknown, where: string): MeshNode {
  const o = obj(v, where);
  const name = str(o, 'name', where);
  return { name, address: ip(o.address, `node ${name}.address`) };
}

function workload(v: unknown, where: string): Workload {
  const o = obj(v, where);
  const id = `workload ${str(o, 'namespace', where)}/${str(o, 'name', where)}`;
  if (typeof o.enrolled !== 'boolean') fail(id, 'enrolled must be a boolean');
  const namedPorts = obj(o.namedPorts, `${id}.namedPorts`);
  return {
    uid: str(o, 'uid', id),
    name: str(o, 'name', id),
    namespace: str(o, 'namespace', id),
    serviceAccount: str(o, 'serviceAccount', id),
    node: str(o, 'node', id),
    ips: list(o, 'ips', id).map((a, i) => ip(a, `${id}.ips[${i}]`)),
    labels: stringMap(o, 'labels', id),
    enrolled: o.enrolled,
    namedPorts: Object.fromEntries(Object.entries(namedPorts).map(([k, p]) => [k, port(p, `${id}.namedPorts.${k}`)])),
    excludeOutboundPorts: list(o, 'excludeOutboundPorts', id).map((p, i) => port(p, `${id}.excludeOutboundPorts[${i}]`)),
  };
}

const PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];

function servicePort(v: unknown, where: string): ServicePort {
  const o = obj(v, where);
  const protocol = o.protocol;
  if (typeof protocol !== 'string' || !PROTOCOLS.includes(protocol)) fail(where, `protocol must be one of ${PROTOCOLS.join(', ')}`);
  const t = o.targetPort;
  const targetPort = typeof t === 'string' && t !== '' ? t : port(t, `${where}.targetPort`);
  const p: ServicePort = { port: port(o.port, `${where}.port`), targetPort, protocol: protocol as ServicePort['protocol'] };
  if (o.name !== undefined) p.name = str(o, 'name', where, { empty: true });
  return p;
}

function service(v: unknown, where: string): Service {
  const o = obj(v, where);
  const id = `service ${str(o, 'namespace', where)}/${str(o, 'name', where)}`;
  return {
    namespace: str(o, 'namespace', id),
    name: str(o, 'name', id),
    vips: list(o, 'vips', id).map((a, i) => ip(a, `${id}.vips[${i}]`)),
    ports: list(o, 'ports', id).map((p, i) => servicePort(p, `${id}.ports[${i}]`)),
    selector: stringMap(o, 'selector', id),
  };
}

// Policies were converted and validated by the agent's policy engine; here
// only their identity is checked, so a truncated message cannot slip through.
function policy<T extends AuthzPolicy | PeerAuthPolicy>(v: unknown, where: string): T {
  const o = obj(v, where);
  const key = str(o, 'key', where);
  if (key !== `${str(o, 'namespace', where)}/${str(o, 'name', where)}`) fail(where, `key ${key} does not match namespace/name`);
  return o as unknown as T;
}

function objects(o: Obj, where: string, optional: boolean): MeshState {
  return {
    nodes: list(o, 'nodes', where, { optional }).map((n, i) => node(n, `${where}.nodes[${i}]`)),
    workloads: list(o, 'workloads', where, { optional }).map((w, i) => workload(w, `${where}.workloads[${i}]`)),
    services: list(o, 'services', where, { optional }).map((s, i) => service(s, `${where}.services[${i}]`)),
    authorizationPolicies: list(o, 'authorizationPolicies', where, { optional: true }).map((p, i) => policy<AuthzPolicy>(p, `${where}.authorizationPolicies[${i}]`)),
    peerAuthentications: list(o, 'peerAuthentications', where, { optional: true }).map((p, i) => policy<PeerAuthPolicy>(p, `${where}.peerAuthentications[${i}]`)),
  };
}

function keys(o: Obj, key: string, where: string): string[] {
  return list(o, key, where, { optional: true }).map((k, i) => {
    if (typeof k !== 'string' || k === '') fail(`${where}.${key}[${i}]`, 'must be a non-empty string');
    return k;
  });
}

/** Validates one decoded control line; throws ControlProtocolError with the first problem found. */
export function parseControlMessage(raw: unknown): ControlMessage {
  const o = obj(raw, 'message');
  const version = int(o.version, 'message.version', 0, Number.MAX_SAFE_INTEGER);
  if (o.type === 'snapshot') return { type: 'snapshot', version, state: objects(obj(o.state, 'snapshot.state'), 'snapshot.state', false) };
  if (o.type === 'delta') {
    const remove = obj(o.remove ?? {}, 'delta.remove');
    const delta: DeltaMessage = {
      type: 'delta',
      version,
      // Empty lists may be left out of a delta.
      upsert: objects(obj(o.upsert ?? {}, 'delta.upsert'), 'delta.upsert', true),
      remove: {
        nodes: keys(remove, 'nodes', 'delta.remove'),
        workloads: keys(remove, 'workloads', 'delta.remove'),
        services: keys(remove, 'services', 'delta.remove'),
        authorizationPolicies: keys(remove, 'authorizationPolicies', 'delta.remove'),
        peerAuthentications: keys(remove, 'peerAuthentications', 'delta.remove'),
      },
    };
    return delta;
  }
  return fail('message.type', `expected "snapshot" or "delta", got ${JSON.stringify(o.type)}`);
}

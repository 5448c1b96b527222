// A Service's endpoints come from its EndpointSlices (discovery.k8s.io/v1),
// never from matching its selector against pods: the EndpointSlice
// controller has already decided readiness and resolved each pod's named
// targetPorts, and a selector-less Service gets its slices from whoever
// writes them. Phase one converts each slice alone (convertEndpointSlice, a
// bad one is rejected alone); phase two joins a Service's slices with the
// pods the mesh knows (serviceEndpoints, from cluster-state.ts).
import { canonicalIp, isPort, isV6 } from '../core/ip.ts';
import type { ServiceEndpoint, ServicePort } from '../mesh/model.ts';
import { isRecord, type KubeObject } from './objects.ts';

/** The label that ties a slice to its Service, by name, in the slice's namespace. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface SlicePort {
  /** The Service port's name it serves; '' for a Service's one unnamed port. */
  name: string;
  port: number;
  protocol: ServicePort['protocol'];
}

/** One EndpointSlice, checked: what phase two needs of it. */
export interface EndpointSliceInfo {
  /** "EndpointSlice namespace/name", as warnings name it. */
  object: string;
  namespace: string;
  /** Its Service's name (label kubernetes.io/service-name). */
  service: string;
  /** Its ready endpoints' addresses, canonical, in the slice's family. */
  addresses: string[];
  /** The ports every address serves, each with a number. */
  ports: SlicePort[];
}

/** A Service endpoint the mesh leaves out, named by the slice that lists it. */
export interface EndpointWarning {
  object: string;
  warning: string;
}

type Fail = (reason: string) => never;

const PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];
/** Addresses named in one warning, at most: the rest are counted. */
const WARN_ADDRESSES = 5;

function optionalList(value: unknown, field: string, fail: Fail): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : fail(`${field} must be a list`);
}

/**
 * Returns null for a slice that routes nothing the mesh can use: one of no
 * Service (no kubernetes.io/service-name label), or of hostnames (FQDN), as
 * the mesh routes by address. Throws through `fail` for a malformed one.
 */
export function convertEndpointSlice(obj: KubeObject, object: string, namespace: string, labels: Record<string, string>, fail: Fail): EndpointSliceInfo | null {
  const service = labels[SERVICE_NAME_LABEL];
  if (service === undefined || service === '') return null;
  const addressType = obj.addressType;
  if (addressType === 'FQDN') return null;
  if (addressType !== 'IPv4' && addressType !== 'IPv6') return fail(`addressType must be IPv4, IPv6 or FQDN, got ${JSON.stringify(addressType)}`);

  const addresses = new Set<string>();
  optionalList(obj.endpoints, 'endpoints', fail).forEach((e, i) => {
    const where = `endpoints[${i}]`;
    if (!isRecord(e)) return fail(`${where} must be an object`);
    const listed = Array.isArray(e.addresses) && e.addresses.length > 0 ? e.addresses : fail(`${where}.addresses must be a non-empty list`);
    const ips = listed.map((a: unknown, j: number) => {
      const ip = typeof a === 'string' ? canonicalIp(a) : undefined;
      return ip !== undefined && isV6(ip) === (addressType === 'IPv6') ? ip : fail(`${where}.addresses[${j}] ${JSON.stringify(a)} is not an ${addressType} address, as the slice's addressType says`);
    });
    const conditions = e.conditions ?? {};
    if (!isRecord(conditions)) return fail(`${where}.conditions must be an object`);
    const ready = conditions.ready;
    if (ready !== undefined && ready !== null && typeof ready !== 'boolean') return fail(`${where}.conditions.ready must be true or false`);
    // Unset means ready (the API's rule): only an explicit false takes the endpoint out.
    if (ready !== false) for (const ip of ips) addresses.add(ip);
  });

  const ports: SlicePort[] = [];
  optionalList(obj.ports, 'ports', fail).forEach((p, i) => {
    const where = `ports[${i}]`;
    if (!isRecord(p)) return fail(`${where} must be an object`);
    const name = p.name ?? '';
    if (typeof name !== 'string') return fail(`${where}.name must be a string`);
    const protocol = p.protocol ?? 'TCP';
    if (typeof protocol !== 'string' || !PROTOCOLS.includes(protocol)) return fail(`${where}.protocol must be TCP, UDP or SCTP`);
    // No number means "not restricted": it names no port to connect to, so the mesh has none for this Service port.
    if (p.port === undefined || p.port === null) return;
    if (!isPort(p.port)) return fail(`${where}.port must be a number from 1 to 65535, got ${JSON.stringify(p.port)}`);
    ports.push({ name, port: p.port, protocol: protocol as SlicePort['protocol'] });
  });

  return { object, namespace, service, addresses: [...addresses], ports };
}

/**
 * The Service's endpoints: every ready address of its slices that is a pod's
 * (`isPod`), with, per Service port, the port of the slice's port of the same
 * name and protocol. An address that is no pod's has no identity the mesh
 * could verify, so it is left out (fail closed) and `warn` names it.
 */
export function serviceEndpoints(
  service: { namespace: string; name: string; ports: readonly ServicePort[] },
  slices: readonly EndpointSliceInfo[],
  isPod: (ip: string) => boolean,
  warn: (warning: EndpointWarning) => void,
): ServiceEndpoint[] {
  const byIp = new Map<string, Map<string, number>>();
  // By name, so that where slices overlap (the controller moving endpoints between them) the same one wins every time.
  for (const slice of [...slices].sort((a, b) => a.object.localeCompare(b.object))) {
    const resolved = new Map<string, number>();
    for (const sp of service.ports) {
      const name = sp.name ?? '';
      const match = slice.ports.find((p) => p.name === name && p.protocol === sp.protocol);
      if (match) resolved.set(name, match.port);
    }
    const unknown: string[] = [];
    for (const ip of slice.addresses) {
      if (!isPod(ip)) {
        unknown.push(ip);
        continue;
      }
      let ports = byIp.get(ip);
      if (!ports) byIp.set(ip, (ports = new Map()));
      for (const [name, port] of resolved) if (!ports.has(name)) ports.set(name, port);
    }
    if (unknown.length > 0) warn({ object: slice.object, warning: unknownWarning(unknown, `${service.namespace}/${service.name}`) });
  }
  return [...byIp]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([ip, ports]) => ({ ip, ports: Object.fromEntries(ports) }));
}

function unknownWarning(addresses: readonly string[], service: string): string {
  const named = addresses.slice(0, WARN_ADDRESSES).join(', ');
  const more = addresses.length > WARN_ADDRESSES ? ` and ${addresses.length - WARN_ADDRESSES} more` : '';
  const one = addresses.length === 1;
  return `ready endpoint${one ? '' : 's'} ${named}${more} ${one ? 'is' : 'are'} no running pod's address, so the mesh does not route Service ${service} to ${one ? 'it' : 'them'} (it can verify only a pod's identity); check that the slice lists pod IPs`;
}

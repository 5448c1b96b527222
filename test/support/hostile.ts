// fast-check arbitraries for what a hostile user, controller or API server
// could hand meshlet: objects shaped like the kinds it reads, with fields of
// the wrong type, names that are no Kubernetes name (unpaired surrogates,
// "../", control characters), addresses spelt every way (zones, v4-mapped,
// loopback, non-canonical IPv6), and plain junk where a value belongs.
import fc from 'fast-check';
import type { KubeObject } from '../../lib/cluster/objects.ts';

/** Characters that have broken parsers, paths and encoders before. */
const NASTY = ['\ud800', '\udfff', '/', '..', '.', '%', '\u0000', '\n', '"', '*', ':', '@', 'A', 'é', '-', '_', ' ', '\u202e', '__proto__', 'constructor'];

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', 'default', 'demo', 'web', 'sa', 'node-1', '../../etc', '.', '..', 'a/b', 'UPPER', 'x'.repeat(300), '\ud800', 'ok\udfffok', '__proto__', 'constructor', 'toString'),
  fc.string({ unit: fc.constantFrom(...NASTY), maxLength: 8 }),
  fc.string({ maxLength: 12 }),
);

/** Mostly `usual`, now and then `odd`: objects must get past the first checks to meet the later ones (ownership, contradictions). */
const mostly = <T, U>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<U>, oddWeight = 1): fc.Arbitrary<T | U> =>
  fc.oneof({ weight: 30, arbitrary: usual }, { weight: oddWeight, arbitrary: odd });

/** A small vocabulary, so that objects collide on names, UIDs and addresses. */
const name: fc.Arbitrary<unknown> = mostly(fc.constantFrom('web', 'db', 'client', 'a', 'b', 'demo', 'default', 'node-1', 'node-2'), fc.oneof(hostileString, fc.constantFrom(undefined, null, 7, true, [], {})));

export const hostileIp: fc.Arbitrary<unknown> = mostly(
  fc.constantFrom('10.244.1.2', '10.244.1.3', '10.244.1.4', '10.244.2.2', 'fd00:244:1::2', 'fd00:244:1:0:0:0:0:3', '10.96.0.10', '10.96.0.11', 'fd00:96::10'),
  fc.oneof(
    fc.constantFrom('127.0.0.1', '0.0.0.0', '169.254.1.1', '224.0.0.1', '10.200.0.11', '10.244.1.254', 'FD00:244:1::2', '::ffff:10.244.1.2', 'fe80::1%eth0', '::1', 'fd00:96:0::10', '1.2.3', '10.244.1.256', 'None', ''),
    fc.ipV4(),
    fc.ipV6(),
    hostileString,
    fc.constantFrom(undefined, null, 42, [], {}),
  ),
  10,
);

const port: fc.Arbitrary<unknown> = mostly(fc.constantFrom(80, 8080, 9090, 53), fc.oneof(fc.integer({ min: -2, max: 70000 }), fc.double(), hostileString, fc.constantFrom(null, undefined, [], {})));

/** Anything at all where a value belongs, now and then. */
const junk: fc.Arbitrary<unknown> = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(undefined));
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => mostly(a, junk);

const labels = maybe(fc.dictionary(mostly(fc.constantFrom('app', 'istio.io/dataplane-mode', 'kubernetes.io/service-name'), hostileString), mostly(fc.constantFrom('web', 'ambient', 'none', 'db'), fc.oneof(hostileString, fc.constantFrom(1 as unknown))), { maxKeys: 3 }));

const timestamp = fc.oneof(fc.constantFrom('2024-01-01T00:00:00Z', '2024-06-01T00:00:00Z', 'yesterday', undefined), fc.date({ noInvalidDate: true }).map((d) => d.toISOString()));

const meta = (namespaced: boolean) => maybe(fc.record({
  name,
  ...(namespaced ? { namespace: name } : {}),
  uid: mostly(fc.oneof(fc.uuid(), fc.constantFrom('uid-a', 'uid-b', 'uid-c')), fc.oneof(fc.constantFrom('../../../sys', 'a/../b', '', 'UID_1'), junk), 3),
  labels,
  annotations: maybe(fc.dictionary(fc.constantFrom('meshlet.io/exclude-outbound-ports'), mostly(fc.constantFrom('5432,6379'), fc.oneof(fc.constantFrom('postgres'), hostileString)), { maxKeys: 1 })),
  creationTimestamp: timestamp,
}, { requiredKeys: namespaced ? ['name', 'namespace', 'uid'] : ['name', 'uid'] }));

const quantity = mostly(fc.constantFrom('100m', '1', '128Mi', '1e3'), fc.oneof(fc.constantFrom('1e999999999', 'lots', '-1'), hostileString), 3);

const container = fc.record({
  name: hostileString,
  ports: maybe(fc.array(fc.record({ name: maybe(fc.constantFrom('http', 'metrics')), containerPort: port }, { requiredKeys: ['containerPort'] }), { maxLength: 2 })),
  readinessProbe: mostly(fc.constant(undefined), fc.record({ tcpSocket: fc.record({ port: fc.oneof(port, fc.constant('http'), hostileString) }) }), 5),
  resources: maybe(fc.record({ requests: maybe(fc.dictionary(fc.constantFrom('cpu', 'memory'), quantity, { maxKeys: 2 })), limits: maybe(fc.dictionary(fc.constantFrom('cpu', 'memory'), quantity, { maxKeys: 2 })) }, { requiredKeys: [] })),
}, { requiredKeys: [] });

export const hostilePod: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constant('v1'),
  kind: fc.constant('Pod'),
  metadata: meta(true),
  spec: maybe(fc.record({
    nodeName: name,
    serviceAccountName: mostly(fc.constantFrom('default', 'sa', undefined), fc.oneof(fc.constantFrom('bad/sa', 'sa\ud800', 'UPPER', '..'), hostileString), 3),
    hostNetwork: mostly(fc.constant(false), fc.oneof(fc.constant(true), junk)),
    containers: maybe(fc.array(container, { minLength: 1, maxLength: 2 })),
  }, { requiredKeys: ['nodeName', 'containers'] })),
  status: maybe(fc.record({
    phase: mostly(fc.constant('Running'), fc.constantFrom('Pending', 'Failed', undefined), 3),
    podIP: hostileIp,
    podIPs: maybe(fc.array(fc.record({ ip: hostileIp }), { maxLength: 2 })),
    qosClass: maybe(fc.constantFrom('Guaranteed', 'Burstable', 'BestEffort', 'Platinum')),
  }, { requiredKeys: ['phase', 'podIP'] })),
}, { requiredKeys: ['kind', 'metadata', 'spec', 'status'] });

export const hostileService: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constant('v1'),
  kind: fc.constant('Service'),
  metadata: meta(true),
  spec: maybe(fc.record({
    clusterIP: hostileIp,
    clusterIPs: maybe(fc.array(hostileIp, { maxLength: 2 })),
    ports: maybe(fc.array(fc.record({ name: mostly(fc.constantFrom('http', 'dns'), fc.oneof(fc.constant(''), hostileString)), port, protocol: mostly(fc.constantFrom('TCP', 'UDP', undefined), fc.constantFrom('SCTP', 'QUIC')) }, { requiredKeys: [] }), { maxLength: 2 })),
  }, { requiredKeys: ['ports'] })),
}, { requiredKeys: ['kind', 'metadata', 'spec'] });

export const hostileSlice: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constant('discovery.k8s.io/v1'),
  kind: fc.constant('EndpointSlice'),
  metadata: meta(true),
  addressType: mostly(fc.constantFrom('IPv4', 'IPv6'), fc.constantFrom('FQDN', 'IPv5', undefined)),
  endpoints: maybe(fc.array(fc.record({ addresses: maybe(fc.array(hostileIp, { minLength: 1, maxLength: 2 })), conditions: maybe(fc.record({ ready: maybe(fc.boolean()) }, { requiredKeys: [] })) }, { requiredKeys: ['addresses'] }), { maxLength: 3 })),
  ports: maybe(fc.array(fc.record({ name: mostly(fc.constantFrom('http', 'dns'), fc.oneof(fc.constant(''), hostileString)), port, protocol: maybe(fc.constantFrom('TCP', 'UDP')) }, { requiredKeys: [] }), { maxLength: 2 })),
}, { requiredKeys: ['kind', 'metadata'] });

export const hostileNamespace: fc.Arbitrary<KubeObject> = fc.record({ apiVersion: fc.constant('v1'), kind: fc.constant('Namespace'), metadata: meta(false) }, { requiredKeys: ['kind', 'metadata'] });

const cidr = mostly(fc.constantFrom('10.244.1.0/24', '10.244.2.0/24', 'fd00:244:1::/64'), fc.oneof(fc.constantFrom('10.244.1.0/33', 'nope', '', '10.0.0.1'), hostileString), 3);

export const hostileNode: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: fc.constant('v1'),
  kind: fc.constant('Node'),
  metadata: meta(false),
  spec: maybe(fc.record({ podCIDR: maybe(cidr), podCIDRs: maybe(fc.array(cidr, { maxLength: 2 })) }, { requiredKeys: [] })),
  status: maybe(fc.record({ addresses: maybe(fc.array(fc.record({ type: mostly(fc.constant('InternalIP'), fc.constantFrom('ExternalIP', 'Hostname')), address: mostly(fc.constantFrom('10.200.0.11', '10.200.0.12', 'fd00:200::11'), hostileIp) }), { minLength: 1, maxLength: 2 })) })),
}, { requiredKeys: ['kind', 'metadata', 'status'] });

const stringList = maybe(fc.array(fc.oneof(fc.constantFrom('cluster.local/ns/demo/sa/web', 'demo', '10.0.0.0/8', '8080', '*', 'a*b', 'http', '10.0.0.0/33'), hostileString, fc.constant(8080 as unknown)), { maxLength: 2 }));

const source = fc.record({ principals: stringList, namespaces: stringList, notNamespaces: stringList, serviceAccounts: stringList, ipBlocks: stringList, notIpBlocks: stringList, remoteIpBlocks: stringList, requestPrincipals: stringList, principal: stringList }, { requiredKeys: [] });
const operation = fc.record({ ports: stringList, notPorts: stringList, methods: stringList, paths: stringList }, { requiredKeys: [] });
const condition = fc.record({ key: fc.oneof(fc.constantFrom('source.ip', 'destination.port', 'request.headers[x]', 'source.user', 'remote.ip', 'source.principal'), hostileString), values: stringList, notValues: stringList }, { requiredKeys: [] });
const rule = fc.record({
  from: maybe(fc.array(fc.record({ source: maybe(source) }), { maxLength: 2 })),
  to: maybe(fc.array(fc.record({ operation: maybe(operation) }), { maxLength: 2 })),
  when: maybe(fc.array(condition, { maxLength: 2 })),
}, { requiredKeys: [] });
const selector = maybe(fc.record({ matchLabels: maybe(fc.dictionary(fc.oneof(fc.constantFrom('app'), hostileString), fc.oneof(fc.constantFrom('web', '*'), hostileString, fc.constant(3 as unknown)), { maxKeys: 2 })) }, { requiredKeys: [] }));
const securityApiVersion = fc.constantFrom('security.istio.io/v1', 'security.istio.io/v1beta1', 'security.istio.io/v1alpha1');

export const hostileAuthorizationPolicy: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: securityApiVersion,
  kind: fc.constant('AuthorizationPolicy'),
  metadata: meta(true),
  spec: maybe(fc.record({
    selector,
    action: maybe(fc.constantFrom('ALLOW', 'DENY', 'AUDIT', 'CUSTOM', 'MAYBE')),
    rules: maybe(fc.array(rule, { maxLength: 2 })),
    targetRefs: maybe(fc.array(fc.record({ kind: fc.constant('Service'), name: hostileString }), { maxLength: 1 })),
  }, { requiredKeys: [] })),
}, { requiredKeys: ['kind', 'apiVersion'] });

const mtls = maybe(fc.record({ mode: maybe(fc.constantFrom('STRICT', 'PERMISSIVE', 'UNSET', 'DISABLE', 'STRICTER')) }, { requiredKeys: [] }));

export const hostilePeerAuthentication: fc.Arbitrary<KubeObject> = fc.record({
  apiVersion: securityApiVersion,
  kind: fc.constant('PeerAuthentication'),
  metadata: meta(true),
  spec: maybe(fc.record({ selector, mtls, portLevelMtls: maybe(fc.dictionary(fc.oneof(fc.constantFrom('8080', 'http', '0'), hostileString), mtls, { maxKeys: 2 })) }, { requiredKeys: [] })),
}, { requiredKeys: ['kind', 'apiVersion'] });

/** One object of any kind meshlet reads, or of none. */
export const hostileObject: fc.Arbitrary<KubeObject> = fc.oneof(
  hostilePod, hostileService, hostileSlice, hostileNamespace, hostileNode, hostileAuthorizationPolicy, hostilePeerAuthentication,
  fc.record({ kind: fc.oneof(hostileString, junk), metadata: junk, spec: junk }).map((o) => o as KubeObject),
);

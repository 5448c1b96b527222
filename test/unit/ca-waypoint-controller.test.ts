// The waypoint controller's parts without an API server: which Gateways it
// deploys and why it refuses the others, the objects and status it writes
// (a status written once reads back as up to date, so the controller never
// rewrites it in a loop), what it says of a Deployment with no available
// replica, and its work queue's dedupe, retries, parking and bound.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { addFlags } from '../../lib/config/flags.ts';
import { WAYPOINT_FLAGS, type WaypointConfig } from '../../lib/config/waypoint.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { classAcceptance, newGatewayClass } from '../../ca/waypoint-classes.ts';
import { readGateway, rejectionOf, type WaypointGateway } from '../../ca/waypoint-gateway.ts';
import { waypointArgs, waypointObjects } from '../../ca/waypoint-objects.ts';
import { readiness } from '../../ca/waypoint-readiness.ts';
import { gatewayStatus, statusUpToDate } from '../../ca/waypoint-status.ts';
import { WorkQueue } from '../../ca/work-queue.ts';
import { ManualClock } from '../support/manual-clock.ts';

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-01T00:05:00Z';
const SETTINGS = { image: 'meshlet', caUrl: 'https://ca.example:15012', trustDomain: 'example.org', tokenAudience: 'meshlet-ca' };

function gateway(spec: Record<string, unknown> = {}, name = 'waypoint', status?: unknown): WaypointGateway {
  const gw = readGateway({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name, namespace: 'demo', uid: 'uid-1', generation: 3, resourceVersion: '10' },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], ...spec },
    ...(status === undefined ? {} : { status }),
  });
  assert.ok(typeof gw !== 'string', String(gw));
  return gw;
}

test('a Gateway is deployable when every listener is HBONE on 15008, whatever its name', () => {
  assert.equal(rejectionOf(gateway()), undefined);
  assert.equal(rejectionOf(gateway({ listeners: [{ name: 'hbone', port: 15008, protocol: 'HBONE' }] })), undefined);
  assert.equal(readGateway({ metadata: { name: 'x', namespace: 'demo' } }), 'it has no namespace, name or uid');
});

test('what meshlet cannot honour is refused with the Gateway API reason and the fix', () => {
  const cases: [string, WaypointGateway, string, RegExp][] = [
    ['no listener', gateway({ listeners: [] }), 'ListenersNotValid', /has no listener.*\{name: mesh, port: 15008, protocol: HBONE\}/],
    ['HTTP listener', gateway({ listeners: [{ name: 'http', port: 15008, protocol: 'HTTP' }] }), 'ListenersNotValid', /listener "http" has protocol "HTTP"/],
    ['wrong port', gateway({ listeners: [{ name: 'mesh', port: 15009, protocol: 'HBONE' }] }), 'ListenersNotValid', /listener "mesh" has port "15009"/],
    ['name no Service can take', gateway({}, 'a.b'), 'Invalid', /name "a\.b" cannot name the waypoint's Service/],
    ['name over 63', gateway({}, `w${'x'.repeat(63)}`), 'Invalid', /at most 63/],
    ['parametersRef', gateway({ infrastructure: { parametersRef: { group: '', kind: 'ConfigMap', name: 'p' } } }), 'InvalidParameters', /parametersRef/],
    ['addresses', gateway({ addresses: [{ type: 'IPAddress', value: '10.0.0.1' }] }), 'UnsupportedAddress', /remove spec.addresses/],
    ['bad label key', gateway({ infrastructure: { labels: { 'bad key': 'x' } } }), 'Invalid', /labels key "bad key" is not a label key/],
    ['bad label value', gateway({ infrastructure: { labels: { team: 'a b' } } }), 'Invalid', /has value "a b"/],
    ['bad annotation key', gateway({ infrastructure: { annotations: { '/x': 'y' } } }), 'Invalid', /annotations key "\/x"/],
  ];
  for (const [what, gw, reason, message] of cases) {
    const r = rejectionOf(gw);
    assert.equal(r?.reason, reason, what);
    assert.match(r.message, message, what);
  }
  const listeners = rejectionOf(gateway({ listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }, { name: 'http', port: 80, protocol: 'HTTP' }] }))!.listeners;
  assert.deepEqual([...listeners.keys()], ['http'], 'only the bad listener is refused');
  assert.equal(listeners.get('http')?.reason, 'UnsupportedProtocol');
});

test('the objects: owned by the Gateway, named after it, reserved labels kept, the command line the waypoint accepts', () => {
  const gw = gateway({ infrastructure: { labels: { team: 'a', 'istio.io/dataplane-mode': 'ambient', 'gateway.networking.k8s.io/gateway-name': 'evil', 'gateway.istio.io/managed': 'someone' }, annotations: { note: 'x' } } });
  const o = waypointObjects(gw, SETTINGS, 'PEM');
  for (const d of [o.serviceAccount, o.service, o.deployment]) {
    const meta = d.body.metadata as { name: string; labels: Record<string, string>; ownerReferences: unknown[] };
    assert.equal(meta.name, 'waypoint');
    assert.deepEqual(meta.ownerReferences, [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: 'uid-1', controller: true }]);
    assert.deepEqual(meta.labels, { team: 'a', 'istio.io/dataplane-mode': 'ambient', 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'gateway.networking.k8s.io/gateway-class-name': 'istio-waypoint', 'gateway.istio.io/managed': 'meshlet.dev-waypoint-controller' });
  }
  assert.equal(o.trustBundle.path, '/api/v1/namespaces/demo/configmaps/meshlet-ca-root-cert');
  assert.equal((o.trustBundle.body.metadata as Record<string, unknown>).ownerReferences, undefined, 'the namespace\'s root copy is shared, not owned');
  const template = (o.deployment.body.spec as { template: { metadata: { labels: Record<string, string> }; spec: { containers: { command: string[]; args: string[] }[] } } }).template;
  assert.equal(template.metadata.labels['istio.io/dataplane-mode'], 'none');
  assert.deepEqual(template.spec.containers[0]!.command, ['meshlet', 'waypoint']);
  assert.deepEqual(template.spec.containers[0]!.args, waypointArgs(gw, SETTINGS));
  assert.deepEqual(waypointArgs(gw, SETTINGS), [
    '--gateway', 'demo/waypoint', '--trust-domain', 'example.org', '--ca-url', 'https://ca.example:15012',
    '--ca-bundle', '/var/run/secrets/meshlet/ca/root-cert.pem', '--ca-token-file', '/var/run/secrets/meshlet/tokens/meshlet-ca-token',
  ]);
  assert.equal((o.deployment.body.spec as Record<string, unknown>).replicas, undefined, 'replicas are left to the user (default 1)');
  // `meshlet waypoint` takes them: its own flag table parses them back.
  const parsed = addFlags(new Command('waypoint').exitOverride(), WAYPOINT_FLAGS).parse(waypointArgs(gw, SETTINGS), { from: 'user' }).opts<WaypointConfig>();
  assert.deepEqual({ gateway: parsed.gateway, trustDomain: parsed.trustDomain, caUrl: parsed.caUrl, caBundle: parsed.caBundle, caTokenFile: parsed.caTokenFile, listen: parsed.listen }, {
    gateway: 'demo/waypoint', trustDomain: 'example.org', caUrl: 'https://ca.example:15012',
    caBundle: '/var/run/secrets/meshlet/ca/root-cert.pem', caTokenFile: '/var/run/secrets/meshlet/tokens/meshlet-ca-token', listen: '[::]:15008',
  });
});

test('the status says what became of the Gateway, and once stored it is up to date', () => {
  const gw = gateway();
  const deployed = gatewayStatus(gw, { kind: 'deployed', clusterIps: ['10.96.0.10'], ready: true, message: '' }, T0);
  assert.deepEqual(deployed.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration]), [['Accepted', 'True', 'Accepted', 3], ['Programmed', 'True', 'Programmed', 3]]);
  assert.deepEqual(deployed.addresses, [{ type: 'IPAddress', value: '10.96.0.10' }, { type: 'Hostname', value: 'waypoint.demo.svc.cluster.local' }]);
  assert.deepEqual(deployed.listeners.map((l) => [l.name, l.attachedRoutes, l.conditions.map((c) => `${c.type}=${c.status}`)]), [['mesh', 0, ['Accepted=True', 'Programmed=True', 'ResolvedRefs=True', 'Conflicted=False']]]);

  // The API server stores it (its key order may differ) and other writers keep their own conditions and listeners beside it.
  const stored = {
    ...JSON.parse(JSON.stringify(deployed)) as Record<string, unknown>,
    conditions: [{ type: 'Custom', status: 'True', reason: 'X', message: '', observedGeneration: 1, lastTransitionTime: T0 }, ...deployed.conditions.slice().reverse()],
    listeners: [...deployed.listeners, { name: 'other', supportedKinds: [], attachedRoutes: 2, conditions: [] }],
  };
  const again = gatewayStatus(gateway({}, 'waypoint', stored), { kind: 'deployed', clusterIps: ['10.96.0.10'], ready: true, message: '' }, T1);
  assert.equal(again.conditions[0]!.lastTransitionTime, T0, 'an unchanged condition keeps its transition time');
  assert.ok(statusUpToDate(stored, again), 'the same status is not written again');

  const waiting = gatewayStatus(gateway({}, 'waypoint', stored), { kind: 'deployed', clusterIps: ['10.96.0.10'], ready: false, message: 'no replica' }, T1);
  assert.deepEqual(waiting.conditions.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]), [['Accepted', 'True', 'Accepted', T0], ['Programmed', 'False', 'NoResources', T1]]);
  assert.equal(waiting.listeners[0]!.conditions.find((c) => c.type === 'Programmed')?.reason, 'Pending');
  assert.ok(!statusUpToDate(stored, waiting));

  const noIp = gatewayStatus(gw, { kind: 'deployed', clusterIps: [], ready: true, message: '' }, T0);
  assert.equal(noIp.conditions[1]!.reason, 'AddressNotAssigned');
  assert.equal(noIp.addresses, undefined);

  const bad = gateway({ listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] });
  const rejected = gatewayStatus(bad, { kind: 'rejected', rejection: rejectionOf(bad)! }, T0);
  assert.deepEqual(rejected.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'False', 'ListenersNotValid'], ['Programmed', 'False', 'Invalid']]);
  assert.equal(rejected.listeners[0]!.conditions[0]!.reason, 'UnsupportedProtocol');
  assert.equal(rejected.addresses, undefined);

  const failed = gatewayStatus(gw, { kind: 'failed', message: 'v1 Service demo/waypoint exists and is not managed by meshlet' }, T0);
  assert.deepEqual(failed.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'True', 'Accepted'], ['Programmed', 'False', 'Invalid']]);
});

test('a Deployment without an available replica is described with its own conditions and where its pods are', () => {
  assert.deepEqual(readiness('demo', 'w', undefined), { ready: false, message: 'waiting for Deployment demo/w to be created' });
  assert.equal(readiness('demo', 'w', { spec: { replicas: 1 }, status: { availableReplicas: 1 } }).ready, true);
  const stuck = readiness('demo', 'w', { spec: { replicas: 2 }, status: { readyReplicas: 0, conditions: [
    { type: 'Available', status: 'False', message: 'Deployment does not have minimum availability.' },
    { type: 'ReplicaFailure', status: 'True', message: 'pods "w-1" is forbidden: exceeded quota' },
    { type: 'Progressing', status: 'True', message: 'fine' },
  ] } });
  assert.equal(stuck.ready, false);
  assert.equal(stuck.message, 'Deployment demo/w has no available replica (0 of 2 ready); Available: Deployment does not have minimum availability.; ReplicaFailure: pods "w-1" is forbidden: exceeded quota; check its pods: kubectl -n demo get pods -l gateway.networking.k8s.io/gateway-name=w');
  assert.match(readiness('demo', 'w', { spec: { replicas: 0 }, status: {} }).message, /scaled to 0 replicas/);
});

test('a GatewayClass naming the controller is accepted once per generation', () => {
  const cls = { ...newGatewayClass('meshlet-waypoint'), metadata: { name: 'meshlet-waypoint', generation: 1 } };
  const body = classAcceptance(cls, T0) as { status: { conditions: { status: string; lastTransitionTime: string }[] } };
  assert.equal(body.status.conditions[0]!.status, 'True');
  assert.equal(classAcceptance({ ...cls, status: body.status }, T1), undefined);
  assert.ok(classAcceptance({ ...cls, metadata: { ...cls.metadata, generation: 2 }, status: body.status }, T1), 'a new generation is accepted again');
});

/** Work that fails while `failing` says so, counting calls per key. */
function queue(options: { attempts?: number; maxKeys?: number } = {}) {
  const clock = new ManualClock(0);
  const calls = new Map<string, number>();
  const failing = new Set<string>();
  const gates = new Map<string, () => void>();
  const q = new WorkQueue({
    name: 'test', concurrency: 2, maxKeys: options.maxKeys ?? 100, timers: clock.scheduler, random: () => 0.5, log: silentLogger,
    retry: { initialMs: 1000, maxMs: 4000, attempts: options.attempts ?? 3 },
    work: async (key) => {
      calls.set(key, (calls.get(key) ?? 0) + 1);
      if (key.startsWith('slow')) await new Promise<void>((resolve) => gates.set(key, resolve));
      if (failing.has(key)) throw new Error(`${key} fails`);
    },
  });
  return { q, clock, calls, failing, gates };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('the work queue runs a queued key once however often it is added, and again when added while it runs', async () => {
  const { q, calls, gates } = queue();
  // Both workers busy: 'a' waits in the queue, once.
  q.add('slow-1');
  q.add('slow-2');
  q.add('a');
  q.add('a');
  await settle();
  q.add('slow-1');
  q.add('slow-1');
  gates.get('slow-1')!();
  gates.get('slow-2')!();
  await settle();
  await settle();
  gates.get('slow-1')!();
  await settle();
  assert.deepEqual(Object.fromEntries(calls), { 'slow-1': 2, 'slow-2': 1, a: 1 });
  assert.deepEqual(q.status(), { queued: 0, running: 0, retrying: 0, parked: [], dropped: 0 });
});

test('a failing key is retried with backoff, then parked and reported until it is added again; it never holds up the others', async () => {
  const { q, clock, calls, failing } = queue();
  failing.add('bad');
  q.add('bad');
  q.add('good');
  await settle();
  assert.equal(q.status().retrying, 1);
  clock.advance(999);
  await settle();
  assert.equal(calls.get('bad'), 1, 'not before its backoff');
  clock.advance(1);
  await settle();
  assert.equal(calls.get('bad'), 2);
  clock.advance(2000);
  await settle();
  assert.equal(calls.get('bad'), 3);
  assert.deepEqual(q.status().parked, [{ key: 'bad', attempts: 3, error: 'bad fails' }]);
  clock.advance(60_000);
  await settle();
  assert.equal(calls.get('bad'), 3, 'a parked key is not retried');
  assert.equal(calls.get('good'), 1);
  failing.delete('bad');
  q.add('bad');
  await settle();
  assert.equal(calls.get('bad'), 4);
  assert.deepEqual(q.status().parked, []);
  q.forget('bad');
  q.stop();
});

test('the work queue is bounded: keys beyond maxKeys are dropped and counted', async () => {
  const { q, calls } = queue({ maxKeys: 2 });
  for (const key of ['slow-1', 'slow-2', 'c', 'd']) q.add(key);
  await settle();
  assert.equal(q.status().dropped, 2);
  assert.deepEqual([...calls.keys()], ['slow-1', 'slow-2']);
  q.stop();
});

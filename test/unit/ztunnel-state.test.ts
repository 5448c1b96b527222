// The ztunnel's state stores, resolution, and the control channel that feeds them.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { parseControlMessage, type ControlMessage, type ControlReply, type DeltaMessage } from '../../lib/mesh/control-protocol.ts';
import { startControlServer } from '../../ztunnel/control-server.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { Resolver, type Route } from '../../ztunnel/resolve.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { service, workload } from '../ztunnel/fixtures.ts';
import { eventually } from '../support/eventually.ts';

const VIP = '10.96.0.10';

/**
 * n1 hosts web-a (enrolled) and legacy (not enrolled); n2 hosts web-b and
 * web-c. Service web's endpoints are as its EndpointSlices gave them: the
 * named port http resolved per pod (web-c has no such port), and one
 * address that is no pod's.
 */
function state(): MeshState {
  const web = { labels: { app: 'web' } };
  return {
    authorizationPolicies: [],
    peerAuthentications: [],
    waypoints: [],
    waypointPolicies: [],
    nodes: [
      { name: 'n1', address: '192.168.0.1' },
      { name: 'n2', address: '192.168.0.2' },
    ],
    workloads: [
      workload({ name: 'web-a', ips: ['10.0.1.1', 'fd00::1:1'], node: 'n1', ...web }),
      workload({ name: 'web-b', ips: ['10.0.2.1'], node: 'n2', ...web }),
      workload({ name: 'web-c', ips: ['10.0.2.2'], node: 'n2', ...web }),
      workload({ name: 'legacy', ips: ['10.0.1.9'], node: 'n1', enrolled: false, labels: { app: 'legacy' } }),
      workload({ name: 'orphan', ips: ['10.0.3.1'], node: 'n3' }),
    ],
    services: [
      service({
        name: 'web',
        vips: [VIP, 'fd00:96::10'],
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'metrics', port: 9000, protocol: 'TCP' }],
        endpoints: [
          { ip: '10.0.1.1', ports: { http: 8080, metrics: 9000 } },
          { ip: '10.0.2.1', ports: { http: 8081, metrics: 9000 } },
          { ip: '10.0.2.2', ports: { metrics: 9000 } },
          { ip: '10.0.9.9', ports: { http: 8080, metrics: 9000 } },
          { ip: 'fd00::1:1', ports: { http: 8080, metrics: 9000 } },
        ],
      }),
      service({ name: 'empty', vips: ['10.96.0.11'], ports: [{ port: 80, protocol: 'TCP' }] }),
      service({ name: 'legacy', vips: ['10.96.0.12'], ports: [{ port: 80, protocol: 'TCP' }], endpoints: [{ ip: '10.0.1.9', ports: { '': 80 } }] }),
      // A port name that is also an Object method: web-a has no such port, whatever the prototype holds.
      service({ name: 'odd', vips: ['10.96.0.13'], ports: [{ name: 'constructor', port: 80, protocol: 'TCP' }], endpoints: [{ ip: '10.0.1.1', ports: {} }] }),
    ],
  };
}

function storeWith(s: MeshState = state(), version = 1): StateStore {
  const store = new StateStore();
  store.apply(parseControlMessage(JSON.parse(JSON.stringify({ type: 'snapshot', version, state: s }))));
  return store;
}

const target = (r: Route) => (r.kind === 'reject' ? r.reason : `${r.kind === 'tunnel' || r.kind === 'waypoint' ? r.kind : r.path} ${r.target.ip}:${r.target.port}`);

test('indexes workloads by IP and uid, services by VIP:port', () => {
  const view = storeWith().view!;
  assert.equal(view.workloadByIp('10.0.1.1')?.name, 'web-a');
  assert.equal(view.workloadByIp('fd00:0:0:0::1:1')?.name, undefined, 'lookups take canonical IPs');
  assert.equal(view.workloadByIp('fd00::1:1')?.name, 'web-a');
  assert.equal(view.workloadByUid('uid-web-b')?.name, 'web-b');
  assert.equal(view.serviceAt(VIP, 80)?.service.name, 'web');
  assert.equal(view.serviceAt(VIP, 81), undefined);
  // web-c has no port http, and 10.0.9.9 is no pod's address: the mesh has no identity to verify there.
  assert.deepEqual(view.serviceAt(VIP, 80)?.endpoints.map((e) => `${e.workload.name} ${e.port}`), ['web-a 8080', 'web-b 8081']);
  assert.deepEqual(view.serviceAt(VIP, 9000)?.endpoints.map((e) => e.workload.name), ['web-a', 'web-b', 'web-c']);
  assert.deepEqual(view.serviceAt('10.96.0.13', 80)?.endpoints, []);
  // An IPv6 VIP balances over the endpoints' IPv6 addresses only.
  assert.deepEqual(view.serviceAt('fd00:96::10', 80)?.endpoints.map((e) => e.ip), ['fd00::1:1']);
});

test('a VIP balances round robin; the named targetPort is each pod\'s own, as its EndpointSlice resolved it', () => {
  const view = storeWith().view!;
  const r = new Resolver('n1');
  const picks = Array.from({ length: 4 }, () => target(r.resolve(view, { ip: VIP, port: 80 })));
  assert.deepEqual(picks, ['local 10.0.1.1:8080', 'tunnel 10.0.2.1:8081', 'local 10.0.1.1:8080', 'tunnel 10.0.2.1:8081']);
  const route = r.resolve(view, { ip: VIP, port: 9000 });
  assert.equal(route.kind === 'direct' && route.service?.name, 'web');
});

test('pod IPs, passthrough, no endpoint, unknown node', () => {
  const view = storeWith().view!;
  const r = new Resolver('n1');
  assert.equal(target(r.resolve(view, { ip: '10.0.2.1', port: 7000 })), 'tunnel 10.0.2.1:7000');
  const tunnel = r.resolve(view, { ip: '10.0.2.1', port: 7000 });
  assert.equal(tunnel.kind === 'tunnel' && tunnel.node.address, '192.168.0.2');
  assert.equal(target(r.resolve(view, { ip: '10.0.1.1', port: 7000 })), 'local 10.0.1.1:7000');
  // Not enrolled: straight there, wherever it runs.
  assert.equal(target(r.resolve(view, { ip: '10.96.0.12', port: 80 })), 'passthrough 10.0.1.9:80');
  assert.equal(target(r.resolve(view, { ip: '1.1.1.1', port: 443 })), 'passthrough 1.1.1.1:443');
  assert.equal(target(r.resolve(view, { ip: '10.96.0.11', port: 80 })), 'no_endpoint');
  assert.equal(target(r.resolve(view, { ip: '10.0.3.1', port: 80 })), 'no_route');
});

test('deltas upsert and remove; round robin survives the swap', () => {
  const store = storeWith();
  const r = new Resolver('n2');
  assert.equal(target(r.resolve(store.view!, { ip: VIP, port: 80 })), 'tunnel 10.0.1.1:8080');
  // web-a left its EndpointSlice, web-d joined it.
  const web = state().services[0]!;
  const webAfter = { ...web, endpoints: [...web.endpoints.filter((e) => e.ip !== '10.0.1.1' && e.ip !== 'fd00::1:1'), { ip: '10.0.2.4', ports: { http: 8082, metrics: 9000 } }] };
  const delta: DeltaMessage = {
    type: 'delta',
    version: 2,
    upsert: { nodes: [], workloads: [workload({ name: 'web-d', ips: ['10.0.2.4'], node: 'n2', labels: { app: 'web' } })], services: [webAfter], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] },
    remove: { nodes: [], workloads: ['uid-web-a'], services: ['default/empty'], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] },
  };
  store.apply(parseControlMessage(delta));
  const view = store.view!;
  assert.equal(view.version, 2);
  assert.equal(view.workloadByIp('10.0.1.1'), undefined);
  assert.equal(view.serviceAt('10.96.0.11', 80), undefined);
  assert.deepEqual(view.serviceAt(VIP, 80)?.endpoints.map((e) => e.workload.name), ['web-b', 'web-d']);
  // The cursor moved past index 0 before the delta.
  assert.equal(target(r.resolve(view, { ip: VIP, port: 80 })), 'local 10.0.2.4:8082');
  assert.throws(() => store.apply(parseControlMessage({ ...delta, version: 2 })), { code: 'MESHLET_CONTROL_PROTOCOL' });
});

test('validation rejects a bad message whole, naming the object', () => {
  const bad = state();
  bad.workloads[1] = { ...bad.workloads[1], ips: ['10.0.2.300'] };
  assert.throws(() => parseControlMessage({ type: 'snapshot', version: 1, state: bad }), /workload default\/web-b\.ips\[0\]: not an IP address/);
  assert.throws(() => parseControlMessage({ type: 'hello', version: 1 }), /message.type/);
  const badEndpoint = state();
  badEndpoint.services[0] = { ...badEndpoint.services[0]!, endpoints: [{ ip: '10.0.1.1', ports: { http: 0 } }] };
  assert.throws(() => parseControlMessage({ type: 'snapshot', version: 1, state: badEndpoint }), /service default\/web\.endpoints\[0\]\.ports\["http"\]: expected an integer in \[1, 65535\]/);
  const clash = state();
  clash.workloads[1] = { ...clash.workloads[1], ips: ['10.0.1.1'] };
  assert.throws(() => storeWith(clash), /web-a and default\/web-b both have IP 10.0.1.1/);
});

interface Agent {
  send(msg: ControlMessage | string): Promise<ControlReply>;
  socket: Socket;
}

async function agent(t: TestContext, path: string): Promise<Agent> {
  const socket = connect(path);
  await once(socket, 'connect');
  t.after(() => socket.destroy());
  const replies = createInterface({ input: socket })[Symbol.asyncIterator]();
  return {
    socket,
    async send(msg) {
      socket.write(`${typeof msg === 'string' ? msg : JSON.stringify(msg)}\n`);
      const { value } = await replies.next();
      return JSON.parse(value as string) as ControlReply;
    },
  };
}

test('control channel: ack, nack keeping the last state, fail static, reconnect', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-zt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'control.sock');
  const store = new StateStore();
  const events: string[] = [];
  const server = await startControlServer({ path, store, log: { ...silentLogger, info: (event) => void events.push(event) } });
  t.after(() => server.close());

  const a = await agent(t, path);
  assert.deepEqual(await a.send({ type: 'delta', version: 1, upsert: { nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] }, remove: { nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] } }), {
    type: 'nack',
    version: 1,
    error: 'a connection must start with a snapshot',
  });
  assert.deepEqual(await a.send({ type: 'snapshot', version: 1, state: state() }), { type: 'ack', version: 1 });
  const bad = { type: 'delta', version: 2, upsert: { workloads: [{ ...state().workloads[0], ips: ['nope'] }] } };
  const nack = await a.send(JSON.stringify(bad));
  assert.equal(nack.type, 'nack');
  assert.match(nack.type === 'nack' ? nack.error : '', /not an IP address/);
  assert.equal(store.view?.version, 1);
  assert.equal(store.view?.workloadByIp('10.0.1.1')?.name, 'web-a');
  const garbage = await a.send('{not json');
  assert.equal(garbage.type, 'nack');
  assert.equal(garbage.version, -1);
  assert.deepEqual(await a.send({ type: 'delta', version: 2, upsert: { nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] }, remove: { nodes: [], workloads: ['uid-legacy'], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] } }), {
    type: 'ack',
    version: 2,
  });

  // The agent goes away: the state stays.
  a.socket.destroy();
  await eventually('the ztunnel to see the agent go', () => events.includes('agent_disconnected'));
  assert.equal(store.view?.version, 2);

  // A new agent must start over with a snapshot.
  const b = await agent(t, path);
  const early = await b.send({ type: 'delta', version: 3, upsert: { nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] }, remove: { nodes: [], workloads: [], services: [], authorizationPolicies: [], peerAuthentications: [], waypoints: [], waypointPolicies: [] } });
  assert.equal(early.type, 'nack');
  const fresh = state();
  fresh.workloads = fresh.workloads.slice(0, 2);
  assert.deepEqual(await b.send({ type: 'snapshot', version: 1, state: fresh }), { type: 'ack', version: 1 });
  assert.equal(store.view?.workloads.size, 2);
});

// The L4 side of waypoints over real loopback sockets, with certificates
// from a real meshlet CA: node n1's capture and tunnel pool, node n2's
// inbound server, a real TCP server as the destination pod, and a waypoint
// pod that is a real HBONE server (test/ztunnel/waypoint-fixtures.ts).
// Hop 1 goes from n1 straight to the waypoint pod under the client's
// identity, asking for the original destination; hop 2 from the waypoint to
// n2's ztunnel under the waypoint's; a binding whose waypoint cannot take
// the traffic refuses it; a workload under the waypoint's L7 policy takes
// mesh traffic from the waypoint only.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../lib/core/log.ts';
import { awaitTunnel } from '../../lib/hbone/client.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { WaypointIndex } from '../../lib/mesh/waypoints.ts';
import { convertAuthorizationPolicy } from '../../lib/policy/index.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { CLIENT_IP, readAll, SERVER_IP, twoNodes, twoNodeState, upstream, type TwoNodes } from '../ztunnel/fixtures.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';
import { fakeWaypoint, onWaypoint, withWaypoint, WAYPOINT, WAYPOINT_IP, WAYPOINT_SA, type FakeWaypoint, type WaypointStateOptions } from '../ztunnel/waypoint-fixtures.ts';
import { eventually } from '../support/eventually.ts';

const DEFAULT_SA = spiffeId('default', 'default');
const WAYPOINT_ID = spiffeId('default', WAYPOINT_SA);
const CLIENT_URI = 'spiffe://cluster.local/ns/default/sa/default';
const WAYPOINT_URI = `spiffe://cluster.local/ns/default/sa/${WAYPOINT_SA}`;
const SERVER_VIP = { ip: '10.96.0.10', port: 80 };

const closed = (flows: { list(): FlowRecord[] }): FlowRecord[] => flows.list().filter((f) => f.state === 'closed');

interface Mesh extends TwoNodes {
  waypoint: FakeWaypoint;
  state: MeshState;
  /** The destination pod's port (its Service's targetPort). */
  serverPort: number;
  /** Connections the destination pod accepted. */
  accepted(): number;
}

/** Two nodes over mutual TLS, an echoing pod on n2, and the waypoint pod (hop 2 to n2's ztunnel, or as `waypoint` says). */
async function mesh(t: TestContext, o: Omit<WaypointStateOptions, 'port'> & { waypoint?: { imposter?: true; echo?: true }; l4?: MeshState['authorizationPolicies'] }): Promise<Mesh> {
  const ids = await meshCa(t, { others: [WAYPOINT_SA] });
  // The server's certificate (its pod runs as default/default), and the waypoint pod's.
  const serverCert = await ids.n2.certs.ensure(DEFAULT_SA);
  const self = await ids.n2.certs.ensure(WAYPOINT_ID);
  let accepted = 0;
  const up = await upstream(t, (s) => {
    accepted++;
    s.pipe(s);
  });
  const nodes = await twoNodes(t, up.port, ids);
  const hop2 = { node: { ip: '127.0.0.2', port: nodes.n2.address.port }, target: (a: { ip: string; port: number }) => (a.ip === SERVER_VIP.ip ? { ip: SERVER_IP, port: up.port } : a), self, destination: DEFAULT_SA };
  // An imposter holds a valid mesh certificate, of another identity than the waypoint pod's.
  const waypoint = await fakeWaypoint(t, { identity: ids.n2, ...(o.waypoint?.imposter ? { presentAs: serverCert } : {}), ...(o.waypoint?.echo ? {} : { hop2 }) });
  const base = twoNodeState(up.port);
  const state = withWaypoint({ ...base, authorizationPolicies: o.l4 ?? [] }, { ...o, port: waypoint.port });
  for (const store of [nodes.n1.store, nodes.n2.store]) store.apply({ type: 'snapshot', version: 2, state });
  return { ...nodes, waypoint, state, serverPort: up.port, accepted: () => accepted };
}

/** Dials and waits until the client's connection is gone (a refusal resets it). */
async function refused(dial: (dst: { ip: string; port: number }) => Socket, dst: { ip: string; port: number }): Promise<void> {
  const client = dial(dst);
  client.on('error', () => {});
  client.end('never arrives');
  // Not events.once: it rejects on the reset's 'error'.
  await new Promise((resolve) => client.once('close', resolve));
}

async function status(stream: ClientHttp2Stream): Promise<number> {
  stream.on('error', () => {});
  const [headers] = await once(stream, 'response');
  return Number(headers[':status']);
}

/** An ALLOW policy on the server pod admitting `principal` alone. */
const allowOnly = (principal: string) => convertAuthorizationPolicy({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'server-l4', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ source: { principals: [principal] } }] }] },
});

test('a Service bound to a waypoint: hop 1 to the waypoint pod as the client asking for VIP:port, hop 2 to the pod\'s ztunnel as the waypoint', async (t) => {
  const m = await mesh(t, { bind: { service: 'namespace' }, policies: [onWaypoint()], l4: [allowOnly(`cluster.local/ns/default/sa/${WAYPOINT_SA}`)] });
  const client = m.dial(SERVER_VIP);
  client.end('through the waypoint');
  assert.equal((await readAll(client)).toString(), 'through the waypoint');
  await eventually('both flows closed', () => closed(m.n1.flows).length === 1 && closed(m.n2.flows).length === 1);

  const [hop1] = m.waypoint.streams;
  assert.equal(m.waypoint.streams.length, 1);
  assert.equal(hop1!.method, 'CONNECT');
  assert.equal(hop1!.authority, '10.96.0.10:80', 'the original VIP:port picks the service');
  assert.equal(hop1!.identity, CLIENT_URI, 'the source workload\'s identity, not the node\'s');
  assert.match(hop1!.forwarded ?? '', new RegExp(`^for="${CLIENT_IP.replaceAll('.', '\\.')}:\\d+"$`));
  assert.match(hop1!.baggage ?? '', /k8s\.pod\.name=client/);
  assert.equal(hop1!.hop2Status, 200);

  const [out] = m.n1.flows.list();
  assert.deepEqual(out!.waypoint, WAYPOINT);
  assert.deepEqual(out!.service, { namespace: 'default', name: 'server' });
  assert.deepEqual(out!.originalDestination, SERVER_VIP);
  assert.deepEqual(out!.destination, { ip: WAYPOINT_IP, port: m.waypoint.port, workload: { namespace: 'default', name: 'waypoint-0' }, node: 'n2', identity: WAYPOINT_URI });
  assert.equal(out!.security, 'mutual_tls');
  assert.equal(out!.closeReason, 'client_closed');

  // Hop 2: the waypoint is the source, by its own address and identity, and L4 policy judged it.
  const [inb] = m.n2.flows.list();
  assert.deepEqual({ ip: inb!.source.ip, workload: inb!.source.workload, identity: inb!.source.identity }, { ip: WAYPOINT_IP, workload: { namespace: 'default', name: 'waypoint-0' }, identity: WAYPOINT_URI });
  assert.deepEqual(inb!.waypoint, WAYPOINT);
  assert.equal(inb!.claimedSource, undefined);
  assert.equal(inb!.verdict, 'allow');
  assert.equal(inb!.policy, 'default/server-l4');
  assert.equal(m.accepted(), 1);
});

test('hop 2 is judged by L4 policy against the waypoint\'s identity: an ALLOW for the client alone denies it', async (t) => {
  const m = await mesh(t, { bind: { service: 'namespace' }, policies: [onWaypoint()], l4: [allowOnly('cluster.local/ns/default/sa/default')] });
  await refused(m.dial, SERVER_VIP);
  await eventually('inbound flow closed', () => closed(m.n2.flows).length === 1);
  const [inb] = m.n2.flows.list();
  assert.equal(inb!.closeReason, 'denied', 'an L4 denial, not a bypass: it came through the waypoint');
  assert.equal(inb!.source.identity, WAYPOINT_URI);
  assert.equal(m.waypoint.streams[0]!.hop2Status, 401);
  assert.equal(m.accepted(), 0);
});

test('a waypoint pod presenting another identity is refused by the source ztunnel, and nothing crosses', async (t) => {
  const m = await mesh(t, { bind: { service: 'object' }, waypoint: { imposter: true, echo: true } });
  await refused(m.dial, SERVER_VIP);
  await eventually('outbound flow closed', () => closed(m.n1.flows).length === 1);
  assert.equal(m.n1.flows.list()[0]!.closeReason, 'peer_identity_mismatch');
  assert.equal(m.waypoint.streams.length, 0);
  assert.equal(m.accepted(), 0);
});

for (const [what, options, problem] of [
  ['does not exist', { noGateway: true }, /waypoint default\/waypoint does not exist/],
  ['has no ready pod', { noEndpoint: true }, /waypoint default\/waypoint has no ready pod/],
] as const) {
  test(`a bound waypoint that ${what}: the connection is refused (waypoint_unavailable), never sent around it, and status says why`, async (t) => {
    const m = await mesh(t, { bind: { service: 'namespace' }, ...options });
    await refused(m.dial, SERVER_VIP);
    await eventually('outbound flow closed', () => closed(m.n1.flows).length === 1);
    const [out] = m.n1.flows.list();
    assert.equal(out!.closeReason, 'waypoint_unavailable');
    assert.deepEqual(out!.waypoint, WAYPOINT);
    assert.deepEqual(out!.service, { namespace: 'default', name: 'server' });
    assert.match(out!.verdictReason ?? '', problem);
    assert.equal(m.waypoint.streams.length, 0);
    assert.equal(m.accepted(), 0, 'the Service\'s pod was never reached');
    const lines = new WaypointIndex(m.state).problems().filter((p) => p.object === 'Service default/server');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.waypoint, 'default/waypoint');
    assert.match(lines[0]!.problem, problem);
  });
}

test('pod-IP traffic around the waypoint to a workload under its L7 policy is refused at the source (waypoint_bypass)', async (t) => {
  const m = await mesh(t, { bind: { service: 'namespace' }, policies: [onWaypoint()] });
  await refused(m.dial, { ip: SERVER_IP, port: m.serverPort });
  await eventually('outbound flow closed', () => closed(m.n1.flows).length === 1);
  const [out] = m.n1.flows.list();
  assert.equal(out!.closeReason, 'waypoint_bypass');
  assert.equal(out!.verdict, 'deny');
  assert.equal(out!.policy, 'default/server-l7');
  assert.match(out!.verdictReason ?? '', /through waypoint default\/waypoint, and takes mesh traffic from that waypoint only; the peer is spiffe:\/\/cluster\.local\/ns\/default\/sa\/default/);
  assert.equal(m.accepted(), 0);
});

test('the destination ztunnel refuses a tunnel around the waypoint itself: 401, waypoint_bypass', async (t) => {
  const ids = await meshCa(t, { others: [WAYPOINT_SA] });
  await ids.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  const { n2 } = await twoNodes(t, up.port, ids);
  n2.store.apply({ type: 'snapshot', version: 2, state: withWaypoint(twoNodeState(up.port), { port: 15008, bind: { service: 'namespace' }, policies: [onWaypoint()] }) });
  // A source ztunnel that does not check (or is not meshlet's): the client's own certificate, straight to n2.
  const pool = new TunnelPool({ port: n2.address.port, log: silentLogger });
  t.after(() => pool.close());
  const source = await ids.n1.certs.ensure(DEFAULT_SA);
  const stream = pool.open({ node: { name: 'n2', address: '127.0.0.2' }, source: CLIENT_URI, destination: CLIENT_URI, tls: hboneClientTlsOptions(source, DEFAULT_SA) }, { ip: SERVER_IP, port: up.port }, { forwarded: `for="${CLIENT_IP}:40000"` });
  await assert.rejects(awaitTunnel(stream, 'n2').ready, { reason: 'denied' });
  await eventually('inbound flow closed', () => closed(n2.flows).length === 1);
  const [inb] = n2.flows.list();
  assert.equal(inb!.closeReason, 'waypoint_bypass');
  assert.equal(inb!.policy, 'default/server-l7');
});

test('plaintext to a workload under a waypoint\'s L7 policy is refused too: it proves no identity', async (t) => {
  const up = await upstream(t, (s) => s.pipe(s));
  const { n2 } = await twoNodes(t, up.port);
  n2.store.apply({ type: 'snapshot', version: 2, state: withWaypoint(twoNodeState(up.port), { port: 15008, bind: { service: 'namespace' }, policies: [onWaypoint()] }) });
  const session = h2connect(`http://127.0.0.2:${n2.address.port}`);
  t.after(() => session.close());
  assert.equal(await status(session.request({ ':method': 'CONNECT', ':authority': `${SERVER_IP}:${up.port}` })), 401);
  await eventually('inbound flow closed', () => closed(n2.flows).length === 1);
  const [inb] = n2.flows.list();
  assert.equal(inb!.closeReason, 'waypoint_bypass');
  assert.match(inb!.verdictReason ?? '', /carries no identity \(plaintext\)/);
});

test('a pod bound to a waypoint that takes workload traffic: its pod-IP traffic goes there, :authority = podIP:port', async (t) => {
  const m = await mesh(t, { bind: { workload: 'object' }, trafficType: 'workload', policies: [onWaypoint()] });
  const client = m.dial({ ip: SERVER_IP, port: m.serverPort });
  client.end('to the pod');
  assert.equal((await readAll(client)).toString(), 'to the pod');
  assert.equal(m.waypoint.streams[0]!.authority, `${SERVER_IP}:${m.serverPort}`);
  assert.equal(m.waypoint.streams[0]!.identity, CLIENT_URI);
  await eventually('outbound flow closed', () => closed(m.n1.flows).length === 1);
  assert.deepEqual(m.n1.flows.list()[0]!.waypoint, WAYPOINT);
});

test('a Service bound to a waypoint that takes workload traffic only goes straight to its pods', async (t) => {
  const m = await mesh(t, { bind: { service: 'object' }, trafficType: 'workload' });
  const client = m.dial(SERVER_VIP);
  client.end('direct');
  assert.equal((await readAll(client)).toString(), 'direct');
  assert.equal(m.waypoint.streams.length, 0);
  await eventually('outbound flow closed', () => closed(m.n1.flows).length === 1);
  const [out] = m.n1.flows.list();
  assert.equal(out!.waypoint, undefined);
  assert.equal(out!.destination?.ip, SERVER_IP);
  const lines = new WaypointIndex(m.state).problems();
  assert.ok(lines.some((p) => p.object === 'Service default/server' && /takes workload traffic only/.test(p.problem)), JSON.stringify(lines));
});

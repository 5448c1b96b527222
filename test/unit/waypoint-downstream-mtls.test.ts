// Hop 1 over mutual TLS 1.3 with certificates from a real meshlet CA: the
// waypoint presents its own SVID, the client's certificate (the source
// workload's) becomes every request's source identity, and a client that
// wants another identity, or comes from another CA, is refused.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import { test } from 'node:test';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import type { WaypointIdentity } from '../../waypoint/downstream/hbone-listener.ts';
import { eventually } from '../support/eventually.ts';
import { AUTHORITIES, hboneSession, http1, LISTEN_IP, startDownstream, tunnel } from '../waypoint/downstream-fixtures.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';

const WAYPOINT = spiffeId('default', 'waypoint');
const SOURCE = spiffeId('default', 'default');

async function waypointIdentity(t: Parameters<typeof meshCa>[0]) {
  const ids = await meshCa(t, { others: ['waypoint'] });
  await ids.n2.certs.ensure(WAYPOINT);
  const identity: WaypointIdentity = { trustDomain: 'cluster.local', certs: ids.n2.certs, id: WAYPOINT };
  return { identity, source: await ids.n1.certs.ensure(SOURCE) };
}

test('the source workload\'s certificate is each request\'s identity, over a session with the waypoint\'s own SVID', async (t) => {
  const { identity, source } = await waypointIdentity(t);
  const w = await startDownstream(t, { identity });
  // The client accepts only a server whose SVID is the waypoint's.
  const session = await hboneSession(t, w.port, hboneClientTlsOptions(source, WAYPOINT));
  const res = await http1((await tunnel(session, AUTHORITIES.http)).stream, { path: '/who' });
  const seen = JSON.parse(res.body);
  assert.equal(seen.identity, 'spiffe://cluster.local/ns/default/sa/default');
  assert.equal(seen.security, 'mutual_tls');
  assert.deepEqual(w.lookups[0]!.identity, SOURCE);
  await eventually('the record', () => w.records.length === 1);
  assert.equal(w.records[0]!.connectionSecurity, 'mutual_tls');
  assert.equal(w.records[0]!.source.principal, 'spiffe://cluster.local/ns/default/sa/default');
  assert.match(w.records[0]!.requestedServerName ?? '', /\.hbone\.meshlet$/);
});

test('a client that expects another identity than the waypoint\'s refuses the session; nothing is served', async (t) => {
  const { identity, source } = await waypointIdentity(t);
  const w = await startDownstream(t, { identity });
  const session = connect(`https://${LISTEN_IP}:${w.port}`, hboneClientTlsOptions(source, spiffeId('default', 'web')));
  const [error] = await once(session, 'error');
  assert.match(String(error), /expected spiffe:\/\/cluster\.local\/ns\/default\/sa\/web/);
  session.destroy();
  assert.equal(w.lookups.length, 0);
});

test('a client certificate from another CA is refused and counted; nothing is served', async (t) => {
  const { identity } = await waypointIdentity(t);
  const theirs = await meshCa(t);
  const stranger = await theirs.n1.certs.ensure(SOURCE);
  const w = await startDownstream(t, { identity });
  // The stranger trusts the waypoint's CA (its bundle), so only the waypoint's check can refuse it.
  const tls = { ...hboneClientTlsOptions(stranger, WAYPOINT), rejectUnauthorized: false, checkServerIdentity: () => undefined };
  const session = connect(`https://${LISTEN_IP}:${w.port}`, tls);
  session.on('error', () => {});
  const stream = session.request({ ':method': 'CONNECT', ':authority': AUTHORITIES.http });
  stream.on('error', () => {});
  // The waypoint answers GOAWAY(INADEQUATE_SECURITY) and closes.
  await new Promise((resolve) => session.once('close', resolve));
  await eventually('the refusal', () => w.events.includes('handshake_failed:peer_untrusted'));
  assert.equal(w.lookups.length, 0);
});

test('until the waypoint holds its certificate, handshakes fail rather than present another', async (t) => {
  const ids = await meshCa(t, { others: ['waypoint'] });
  const source = await ids.n1.certs.ensure(SOURCE);
  const w = await startDownstream(t, { identity: { trustDomain: 'cluster.local', certs: ids.n2.certs, id: WAYPOINT } });
  const session = connect(`https://${LISTEN_IP}:${w.port}`, hboneClientTlsOptions(source, WAYPOINT));
  const [error] = await once(session, 'error');
  assert.ok(error instanceof Error);
  session.destroy();
  await eventually('the failure counted', () => w.events.some((e) => e.startsWith('handshake_failed:')));
});

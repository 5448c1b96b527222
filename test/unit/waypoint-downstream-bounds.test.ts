// The HBONE listener is bounded as the ztunnel's inbound is: a handshake that
// never completes is closed, a peer over its connection cap is refused at
// accept, a session advertises its stream cap, and a session that carries no
// stream is drained.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { CertificateStore } from '../../lib/identity/store.ts';
import { eventually } from '../support/eventually.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { AUTHORITIES, hboneSession, LISTEN_IP, startDownstream, tunnel } from '../waypoint/downstream-fixtures.ts';

async function rawConnection(t: TestContext, port: number): Promise<Socket> {
  const socket = connect({ host: LISTEN_IP, port });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  return socket;
}

test('a TLS handshake that never completes is closed after the handshake timeout and counted', async (t) => {
  const certs = new CertificateStore({ issuer: { issue: () => Promise.reject(new Error('this test has no CA')) } });
  t.after(() => certs.close());
  const w = await startDownstream(t, { identity: { trustDomain: 'cluster.local', certs, id: spiffeId('default', 'waypoint') }, limits: { handshakeTimeout: 0.2 } });
  const silent = await rawConnection(t, w.port);
  await once(silent, 'close');
  await eventually('counted', () => w.events.includes('handshake_failed:handshake_timeout'));
});

test('a peer over its connection cap is refused at accept and counted; a freed slot admits again', async (t) => {
  const w = await startDownstream(t, { limits: { maxSessionsPerPeer: 2 } });
  const first = await rawConnection(t, w.port);
  await rawConnection(t, w.port);
  await eventually('two sessions', () => w.downstream.sessionCount === 2);
  const third = await rawConnection(t, w.port);
  await once(third, 'close');
  assert.deepEqual(w.events, ['connection_refused:peer_session_limit']);
  first.destroy();
  await eventually('the slot freed', () => w.downstream.sessionCount === 1);
  const session = await hboneSession(t, w.port);
  assert.equal((await tunnel(session, AUTHORITIES.http)).status, 200);
});

test('a session advertises its stream cap', async (t) => {
  const w = await startDownstream(t, { limits: { maxStreamsPerSession: 3 } });
  const session = await hboneSession(t, w.port);
  await eventually('the server\'s settings', () => session.remoteSettings.maxConcurrentStreams === 3);
});

test('a session that carries no stream for the idle timeout is drained; a stream in flight holds it', async (t) => {
  const clock = new ManualClock(Date.now());
  const w = await startDownstream(t, { clock, limits: { sessionIdleTimeout: 30 } });
  const session = await hboneSession(t, w.port);
  const { stream } = await tunnel(session, AUTHORITIES.tcp);
  clock.advance(60_000);
  assert.deepEqual(w.events, [], 'busy: not drained');
  stream.end();
  stream.resume();
  await once(stream, 'close');
  await eventually('idle again', () => clock.pending > 0);
  const goaway = once(session, 'goaway');
  clock.advance(30_000);
  await goaway;
  assert.deepEqual(w.events, ['session_drained:idle_timeout']);
});

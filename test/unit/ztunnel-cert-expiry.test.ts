// HBONE sessions do not outlive their certificates: with real certificates
// of a two-second lifetime, the client pool drains a session (no new
// streams, open ones finish) as the certificates expire and the next
// connection gets a new session with the rotated ones; the server drains a
// session of a client that keeps it past expiry.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import type { ZtunnelMetrics } from '../../ztunnel/metrics.ts';
import { eventually } from '../support/eventually.ts';
import { SERVER_IP, defer, twoNodes, upstream } from '../ztunnel/fixtures.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';

const DEFAULT_SA = spiffeId('default', 'default');
const TTL_SECONDS = 2;

const drained = async (metrics: ZtunnelMetrics, direction: string): Promise<boolean> =>
  (await metrics.text()).includes(`meshlet_hbone_sessions_drained_total{direction="${direction}",reason="certificate_expiry"} 1`);

async function echoes(s: Socket, text: string): Promise<void> {
  s.write(text);
  const [data] = (await once(s, 'data')) as [Buffer];
  assert.equal(data.toString(), text);
}

test('the client drains a session whose certificates expire; its stream finishes, the next connection gets a new session', async (t) => {
  const ids = await meshCa(t, { ttlSeconds: TTL_SECONDS });
  await ids.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  const { n1, n2, dial } = await twoNodes(t, up.port, ids);
  const first = dial({ ip: SERVER_IP, port: up.port });
  await echoes(first, 'before');
  assert.equal(n2.inbound.sessionCount, 1);

  await eventually('the session drained at expiry', () => drained(n1.metrics, 'outbound'));
  // TLS checked the certificates once, in the handshake: the open stream carries on.
  await echoes(first, 'after expiry, same stream');
  // Rotation (at half the lifetime) runs on its own timer: under load it may land after the drain.
  await eventually('n1 to rotate its certificate', () => ids.n1.certs.counters.rotations >= 1);
  const second = dial({ ip: SERVER_IP, port: up.port });
  await echoes(second, 'new session');
  assert.equal(n2.inbound.sessionCount, 2, 'a second session, beside the drained one that still carries the first stream');
  assert.ok(ids.n1.certs.counters.rotations >= 1, 'the new session presents the rotated certificate');

  first.end();
  await eventually('the drained session closed with its last stream', () => n2.inbound.sessionCount === 1);
});

test('the server drains a session whose client keeps it past its certificates\' expiry', async (t) => {
  const ids = await meshCa(t, { ttlSeconds: TTL_SECONDS });
  await ids.n2.certs.ensure(DEFAULT_SA);
  const { n2 } = await twoNodes(t, 1, ids);
  const source = await ids.n1.certs.ensure(DEFAULT_SA);
  // Not the pool: a client that never drains on its own.
  const session = h2connect(`https://127.0.0.2:${n2.address.port}`, hboneClientTlsOptions(source, DEFAULT_SA));
  session.on('error', () => {});
  defer(t, () => session.destroy());
  await once(session, 'connect');
  const goaway = once(session, 'goaway');
  await eventually('the server drained the session', () => drained(n2.metrics, 'inbound'));
  await goaway;
});

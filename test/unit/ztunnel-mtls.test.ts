// HBONE over mutual TLS 1.3 between two tunnel ends on loopback, with
// certificates from a real meshlet CA: identities proven both ways, and
// peers with the wrong identity or another CA's certificate refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSecureServer } from 'node:http2';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import { awaitTunnel } from '../../lib/hbone/client.ts';
import { TunnelPool } from '../../lib/hbone/tunnel-pool.ts';
import { CLIENT_IP, SERVER_IP, readAll, twoNodes, upstream } from '../ztunnel/fixtures.ts';
import { eventually } from '../support/eventually.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';

const DEFAULT_SA = spiffeId('default', 'default');

test('bytes cross over mutual TLS, and the destination learns the source principal', async (t) => {
  const ids = await meshCa(t);
  await ids.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  const { n2, dial } = await twoNodes(t, up.port, ids);
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.end('over mtls');
  assert.equal((await readAll(client)).toString(), 'over mtls');
  await eventually('inbound flow closed', () => n2.flows.list().some((f) => f.state === 'closed'));
  const inbound = n2.flows.list()[0]!;
  assert.equal(inbound.security, 'mutual_tls');
  assert.equal(inbound.source.ip, CLIENT_IP);
  assert.equal(inbound.source.identity, 'spiffe://cluster.local/ns/default/sa/default');
  assert.equal(inbound.verdict, 'allow');
});

test('a server presenting a certificate for another identity is refused by the client', async (t) => {
  const ids = await meshCa(t, { others: ['imposter'] });
  const imposter = await ids.n2.certs.ensure(spiffeId('default', 'imposter'));
  // A rogue tunnel end: a valid mesh certificate, but not the destination's identity.
  const rogue = createSecureServer({ SNICallback: (_name, cb) => cb(null, imposter.secureContext), requestCert: true, rejectUnauthorized: false });
  let streams = 0;
  rogue.on('stream', (s) => {
    streams++;
    s.respond({ ':status': 200 });
  });
  await new Promise<void>((r) => rogue.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => rogue.close(r)));
  const pool = new TunnelPool({ port: (rogue.address() as { port: number }).port, log: { info() {}, error() {}, warn: (e: string, f?: object) => console.log(e, JSON.stringify(f)) } });
  t.after(() => pool.close());
  const source = await ids.n1.certs.ensure(DEFAULT_SA);
  const stream = pool.open({ node: { name: 'n2', address: '127.0.0.1' }, source: 'a', destination: 'b', tls: hboneClientTlsOptions(source, spiffeId('default', 'web')) }, { ip: SERVER_IP, port: 80 }, {});
  await assert.rejects(awaitTunnel(stream, 'n2', (s) => pool.failureOf(s)).ready, { reason: 'peer_identity_mismatch' });
  assert.equal(streams, 0, 'nothing reached the impostor');
});

test('a client certificate from another CA is refused by the destination', async (t) => {
  const ours = await meshCa(t);
  const theirs = await meshCa(t);
  await ours.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  let accepted = 0;
  up.server.on('connection', () => accepted++);
  const { n1, dial } = await twoNodes(t, up.port, { n1: theirs.n1, n2: ours.n2 });
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.on('error', () => {});
  await new Promise((r) => client.once('close', r));
  await eventually('outbound flow closed', () => n1.flows.list().some((f) => f.state === 'closed'));
  const flow = n1.flows.list()[0]!;
  assert.notEqual(flow.closeReason, 'client_closed');
  assert.match(flow.closeReason ?? '', /tls_failed|peer_identity_mismatch|tunnel_failed/);
  assert.equal(accepted, 0, 'the upstream was never reached');
});

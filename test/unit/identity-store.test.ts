import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { startCa, type RunningCa } from '../../ca/service.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { CaRefusedError, CertificateUnavailableError } from '../../lib/identity/errors.ts';
import { sniFor } from '../../lib/identity/sni.ts';
import { formatSpiffeId, spiffeId, type SpiffeId } from '../../lib/identity/spiffe.ts';
import { CertificateStore, type CertificateStoreOptions } from '../../lib/identity/store.ts';
import { clientIdentity, hboneClientTlsOptions, hboneServerTlsOptions } from '../../lib/identity/tls.ts';
import { jsonLogger } from '../../lib/core/log.ts';

const pod = (name: string, sa: string) => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, uid: uid-${name}}
spec: {nodeName: node-1, serviceAccountName: ${sa}, containers: [{name: c}]}
status: {phase: Running, podIP: 10.244.1.${name.length}}
`;
const TOKEN = 'node-1-token-0123456789abcdef';
const web = spiffeId('demo', 'web');
const client = spiffeId('demo', 'client');
const quiet = () => jsonLogger('test', new Writable({ write(_c, _e, cb) { cb(); } }));

/** A CA on 127.0.0.1 for node-1 (hosting demo/web and demo/client), and a store using it. */
async function fixture(t: TestContext, storeOptions: Omit<CertificateStoreOptions, 'issuer'>) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'state.yaml'), [pod('web', 'web'), pod('client', 'client')].join('---\n'));
  await writeFile(join(dir, 'tokens.json'), JSON.stringify({ 'node-1': TOKEN }));
  await writeFile(join(dir, 'token'), TOKEN);
  const start = async (port = 0): Promise<RunningCa> => {
    const ca = await startCa({
      host: '127.0.0.1', port, stateDir: join(dir, 'ca'), stateFile: join(dir, 'state.yaml'), nodeTokensFile: join(dir, 'tokens.json'),
      trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: quiet(),
    });
    t.after(() => ca.close());
    return ca;
  };
  const ca = await start();
  const caClient = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile: join(dir, 'token') });
  t.after(() => caClient.close());
  const store = new CertificateStore({ issuer: caClient, log: quiet(), ...storeOptions });
  t.after(() => store.close());
  return { ca, start, store };
}

async function eventually(what: string, check: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const serialOf = (store: CertificateStore, id: SpiffeId) => store.list().find((c) => c.identity === formatSpiffeId(id))?.serial;

test('ensure() obtains a certificate once, shares one request, reports refusals, and retain() drops', async (t) => {
  const { store } = await fixture(t, { dropAfterMs: 0 });
  const held = await store.ensure(web);
  assert.equal(formatSpiffeId(held.identity), 'spiffe://cluster.local/ns/demo/sa/web');
  assert.equal((held.notAfter.getTime() - held.notBefore.getTime()) / 1000, 3600, 'CA default TTL');
  assert.equal(held.rotateAt.getTime() > held.notBefore.getTime() + 1700_000, true, 'rotation near half life');
  assert.equal(store.secureContext(web), held.secureContext);
  assert.equal(await store.ensure(web), held, 'a valid certificate is reused');
  assert.equal(store.identityForSni(sniFor(web)), web);
  assert.equal(store.trustBundle().length, 1);

  const [a, b] = await Promise.all([store.ensure(client), store.ensure(client)]);
  assert.equal(a, b);
  assert.deepEqual(store.counters, { requestsOk: 2, requestsFailed: 0, rotations: 0 });

  // The CA refuses an identity node-1 does not host; the refusal is the cause.
  const stranger = spiffeId('demo', 'db');
  await assert.rejects(store.ensure(stranger), (err: unknown) => {
    assert.ok(err instanceof CertificateUnavailableError);
    assert.ok(err.cause instanceof CaRefusedError && err.cause.status === 403);
    assert.match(err.message, /runs no pod in namespace demo with service account db/);
    return true;
  });
  // While it waits for its retry, ensure() fails at once without asking the CA again.
  await assert.rejects(store.ensure(stranger), /last request failed/);
  assert.equal(store.counters.requestsFailed, 1);
  const listing = store.list();
  assert.deepEqual(listing.map((c) => [c.identity, c.state]), [
    ['spiffe://cluster.local/ns/demo/sa/client', 'valid'],
    ['spiffe://cluster.local/ns/demo/sa/db', 'pending'],
    ['spiffe://cluster.local/ns/demo/sa/web', 'valid'],
  ]);
  assert.equal(listing[2]!.serial, held.serial);
  assert.equal(listing[2]!.nextRotation, held.rotateAt.toISOString());

  store.retain([web]);
  assert.deepEqual(store.list().map((c) => c.identity), ['spiffe://cluster.local/ns/demo/sa/web']);
  assert.equal(store.secureContext(client), undefined);
  assert.equal(store.identityForSni(sniFor(client)), undefined);
  store.retain([web, client]);
  await eventually('retain() to request the new identity', () => store.list().every((c) => c.state === 'valid'));
});

test('retain() keeps a dropped identity through the grace, so a returning pod reuses its certificate', async (t) => {
  const { store } = await fixture(t, { dropAfterMs: 300 });
  const first = await store.ensure(client);
  store.retain([]);
  // Still held (and served by SNI) during the grace; wanted again, it is the same certificate.
  assert.equal(store.identityForSni(sniFor(client))?.serviceAccount, client.serviceAccount);
  store.retain([client]);
  await new Promise((r) => setTimeout(r, 450));
  assert.equal(serialOf(store, client), first.serial);
  assert.equal(store.counters.requestsOk, 1);
  store.retain([]);
  await eventually('the certificate to be dropped after the grace', () => store.list().length === 0);
  assert.equal(store.secureContext(client), undefined);
});

test('rotation at half life keeps an open mutual TLS 1.3 connection transferring; new handshakes get the new certificate', async (t) => {
  const { store } = await fixture(t, { ttlSeconds: 3, retryInitialMs: 200, retryMaxMs: 500 });
  const webCert = await store.ensure(web);
  await store.ensure(client);

  const seenClients: string[] = [];
  const accepted: TLSSocket[] = [];
  const server = createServer(hboneServerTlsOptions(store), (socket) => {
    accepted.push(socket);
    // The SNI tells the server which local identity the client wants to reach.
    const target = store.identityForSni(socket.servername || '');
    seenClients.push(`${formatSpiffeId(clientIdentity(socket, 'cluster.local'))} ${socket.getPeerCertificate().serialNumber} -> ${target && formatSpiffeId(target)}`);
    socket.pipe(socket);
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  t.after(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const socket of accepted) socket.destroy();
  }));

  const dial = async (source: SpiffeId, destination: SpiffeId) => {
    const held = await store.ensure(source);
    const socket = connect({ host: '127.0.0.1', port, ...hboneClientTlsOptions(held, destination) });
    t.after(() => socket.destroy());
    await once(socket, 'secureConnect');
    return { socket, sourceSerial: held.serial };
  };

  const { socket: live } = await dial(client, web);
  assert.equal(live.getProtocol(), 'TLSv1.3');
  assert.equal(live.getPeerCertificate().serialNumber, webCert.serial);
  let echoed = 0;
  live.on('data', (chunk: Buffer) => { echoed += chunk.length; });
  const pinger = setInterval(() => live.write('ping'), 50);
  t.after(() => clearInterval(pinger));

  await eventually('web rotated', () => serialOf(store, web) !== webCert.serial);
  assert.ok(store.counters.rotations >= 1);
  // Past the old certificate's expiry the session established under it keeps going.
  await new Promise((r) => setTimeout(r, Math.max(0, webCert.notAfter.getTime() - Date.now()) + 200));
  const before = echoed;
  await eventually('the old connection to keep transferring', () => echoed >= before + 40);
  assert.equal(live.getPeerCertificate().serialNumber, webCert.serial);
  assert.ok(!live.destroyed);

  const webSerialAtDial = serialOf(store, web);
  const { socket: fresh, sourceSerial } = await dial(client, web);
  const freshSerial = fresh.getPeerCertificate().serialNumber;
  assert.notEqual(freshSerial, webCert.serial);
  assert.ok([webSerialAtDial, serialOf(store, web)].includes(freshSerial), 'the current web certificate (rotations run every ~1.5 s)');
  await eventually('the server to see both clients', () => seenClients.length === 2);
  assert.ok(seenClients.every((s) => s.startsWith('spiffe://cluster.local/ns/demo/sa/client ') && s.endsWith(' -> spiffe://cluster.local/ns/demo/sa/web')));
  assert.equal(seenClients[1], `spiffe://cluster.local/ns/demo/sa/client ${sourceSerial} -> spiffe://cluster.local/ns/demo/sa/web`);

  // The client insists on the identity it asked for in SNI.
  const wrong = connect({ host: '127.0.0.1', port, ...hboneClientTlsOptions(await store.ensure(client), web), checkServerIdentity: hboneClientTlsOptions(await store.ensure(client), client).checkServerIdentity });
  const [err] = (await once(wrong, 'error')) as [Error];
  assert.match(err.message, /presented spiffe:\/\/cluster.local\/ns\/demo\/sa\/web, expected spiffe:\/\/cluster.local\/ns\/demo\/sa\/client/);
  // No client certificate, or an SNI naming no local identity: no handshake.
  const anonymous = connect({ host: '127.0.0.1', port, servername: sniFor(web), ca: store.trustBundle(), checkServerIdentity: () => undefined });
  anonymous.on('data', () => {});
  const [anonErr] = (await once(anonymous, 'error')) as [Error];
  assert.match(anonErr.message, /certificate required|alert/i);
  const unknown = connect({ host: '127.0.0.1', port, ...hboneClientTlsOptions(await store.ensure(client), spiffeId('demo', 'db')) });
  await once(unknown, 'error');
});

test('CA down at rotation: the still-valid certificate stays, retries back off, and it recovers', async (t) => {
  const { ca, start, store } = await fixture(t, { ttlSeconds: 4, retryInitialMs: 200, retryMaxMs: 400 });
  const first = await store.ensure(web);
  await ca.close();

  await eventually('rotation attempts to fail', () => store.counters.requestsFailed >= 2);
  const [row] = store.list();
  assert.equal(row!.serial, first.serial);
  assert.equal(row!.state, 'valid');
  assert.match(row!.lastError ?? '', /cannot reach the CA/);
  assert.ok(row!.nextRotation !== null && Date.parse(row!.nextRotation) > Date.now() - 50, 'a retry is scheduled');
  assert.equal(store.secureContext(web), first.secureContext, 'still serving the valid certificate');
  assert.equal(await store.ensure(web), first);
  assert.ok(Date.now() < first.notAfter.getTime(), 'the test restarts the CA before expiry');

  await start(ca.port);
  await eventually('recovery', () => serialOf(store, web) !== first.serial);
  const [after] = store.list();
  assert.equal(after!.state, 'valid');
  assert.equal(after!.lastError, null);
  assert.equal(store.counters.rotations, 1);
  assert.equal(store.counters.requestsOk, 2);
});

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { createRoot } from '../../ca/root.ts';
import { serveCa, type RunningCa } from '../../ca/service.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { CaRefusedError, CertificateUnavailableError } from '../../lib/identity/errors.ts';
import { sniFor } from '../../lib/identity/sni.ts';
import { formatSpiffeId, spiffeId, type SpiffeId } from '../../lib/identity/spiffe.ts';
import { CertificateStore, type CertificateStoreOptions } from '../../lib/identity/store.ts';
import { clientIdentity, hboneClientTlsOptions, hboneServerTlsOptions } from '../../lib/identity/tls.ts';
import { jsonLogger } from '../../lib/core/log.ts';
import { eventually } from '../support/eventually.ts';
import { ManualClock } from '../support/manual-clock.ts';
import { PodsSource, runningPod, TokenCallers } from '../support/ca-doubles.ts';

const pod = (name: string, sa: string) => runningPod(name, 'demo', sa, 'node-1', `10.244.1.${name.length}`);
const TOKEN = 'node-1-token-0123456789abcdef';
const web = spiffeId('demo', 'web');
const client = spiffeId('demo', 'client');
const quiet = () => jsonLogger('test', new Writable({ write(_c, _e, cb) { cb(); } }));
/**
 * Where the store's clock starts: a minute ahead of the real one. The CA stamps
 * notBefore from the real clock (floored to the second), and a certificate
 * issued while the test runs must already be valid at the store's time.
 */
const CLOCK_LEAD_MS = 60_000;

/**
 * A CA on 127.0.0.1 for node-1 (hosting demo/web and demo/client), and a store
 * using it whose time moves only with `clock`: rotation, retry, drop and
 * expiry happen when the test advances it.
 */
async function fixture(t: TestContext, storeOptions: Omit<CertificateStoreOptions, 'issuer' | 'clock' | 'scheduler'>) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'token'), TOKEN);
  const root = await createRoot('cluster.local');
  const start = async (port = 0): Promise<RunningCa> => {
    const ca = await serveCa({
      host: '127.0.0.1', port, stateDir: join(dir, 'ca'),
      trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: quiet(),
    }, { root, source: new PodsSource([pod('web', 'web'), pod('client', 'client')]), callers: new TokenCallers({ [TOKEN]: 'node-1' }) });
    t.after(() => ca.close());
    return ca;
  };
  const ca = await start();
  const caClient = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile: join(dir, 'token') });
  t.after(() => caClient.close());
  const clock = new ManualClock(Date.now() + CLOCK_LEAD_MS);
  const store = new CertificateStore({ issuer: caClient, log: quiet(), clock: clock.now, scheduler: clock.scheduler, ...storeOptions });
  t.after(() => store.close());
  return { ca, start, store, clock };
}

const rowOf = (store: CertificateStore, id: SpiffeId) => store.list().find((c) => c.identity === formatSpiffeId(id));
const serialOf = (store: CertificateStore, id: SpiffeId) => rowOf(store, id)?.serial;
const isoIn = (clock: ManualClock, ms: number) => new Date(clock.now() + ms).toISOString();

/** Writes `text` to an echoing connection and resolves with what came back once as much has. */
async function roundTrip(socket: TLSSocket, text: string): Promise<string> {
  let echoed = '';
  const back = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      echoed += chunk.toString();
      if (echoed.length < text.length) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
  socket.write(text);
  await back;
  return echoed;
}

test('ensure() obtains a certificate once, shares one request, reports refusals, and retain() drops', async (t) => {
  const { store, clock } = await fixture(t, { dropAfterMs: 0 });
  const held = await store.ensure(web);
  assert.equal(formatSpiffeId(held.identity), 'spiffe://cluster.local/ns/demo/sa/web');
  assert.equal((held.notAfter.getTime() - held.notBefore.getTime()) / 1000, 3600, 'CA default TTL');
  assert.equal(held.rotateAt.getTime() > held.notBefore.getTime() + 1700_000, true, 'rotation near half life');
  assert.equal(held.rotateAt.getTime(), Math.trunc(clock.now() + (held.notAfter.getTime() - clock.now()) / 2), 'at half of the lifetime left when it arrived');
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
  assert.equal(listing[1]!.nextRotation, isoIn(clock, 1000), 'the first retry after retryInitialMs (default 1 s)');
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
  const { store, clock } = await fixture(t, { dropAfterMs: 300 });
  const first = await store.ensure(client);
  store.retain([]);
  // Still held (and served by SNI) during the grace; wanted again, it is the same certificate.
  clock.advance(299);
  assert.equal(store.identityForSni(sniFor(client))?.serviceAccount, client.serviceAccount);
  assert.equal(store.secureContext(client), first.secureContext);
  store.retain([client]);
  clock.advance(450);
  assert.equal(serialOf(store, client), first.serial);
  assert.equal(store.counters.requestsOk, 1);
  store.retain([]);
  clock.advance(299);
  assert.equal(serialOf(store, client), first.serial, 'kept until the grace is over');
  clock.advance(1);
  assert.deepEqual(store.list(), [], 'dropped when the grace is over');
  assert.equal(store.secureContext(client), undefined);
  assert.equal(store.identityForSni(sniFor(client)), undefined);
});

test('rotation at half life keeps an open mutual TLS 1.3 connection transferring; new handshakes get the new certificate', async (t) => {
  const { store, clock } = await fixture(t, {});
  const webCert = await store.ensure(web);
  const clientCert = await store.ensure(client);

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
  assert.equal(await roundTrip(live, 'before rotation'), 'before rotation');

  // Half life of both certificates: each is replaced once.
  clock.advanceTo(Math.max(webCert.rotateAt.getTime(), clientCert.rotateAt.getTime()));
  await eventually('web and client rotated', () => store.counters.rotations === 2);
  const webNow = serialOf(store, web);
  const clientNow = serialOf(store, client);
  assert.notEqual(webNow, webCert.serial);
  assert.notEqual(clientNow, clientCert.serial);
  assert.equal(await roundTrip(live, 'after rotation'), 'after rotation');
  assert.equal(live.getPeerCertificate().serialNumber, webCert.serial, 'the open session keeps the certificate it was established with');

  const { socket: fresh, sourceSerial } = await dial(client, web);
  assert.equal(fresh.getPeerCertificate().serialNumber, webNow, 'a new handshake gets the current web certificate');
  assert.equal(sourceSerial, clientNow);
  await eventually('the server to see both clients', () => seenClients.length === 2);
  assert.deepEqual(seenClients, [
    `spiffe://cluster.local/ns/demo/sa/client ${clientCert.serial} -> spiffe://cluster.local/ns/demo/sa/web`,
    `spiffe://cluster.local/ns/demo/sa/client ${clientNow} -> spiffe://cluster.local/ns/demo/sa/web`,
  ]);

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

  // Past the old certificate's notAfter on the store's clock (the current ones
  // rotate again on the way), the session established under it keeps going.
  clock.advanceTo(webCert.notAfter.getTime() + 1);
  await eventually('the current certificates to rotate again', () => store.counters.rotations === 4);
  assert.equal(await roundTrip(live, 'past the old expiry'), 'past the old expiry');
  assert.equal(live.getPeerCertificate().serialNumber, webCert.serial);
  assert.ok(!live.destroyed);
});

test('CA down at rotation: the still-valid certificate stays, retries back off, and it recovers', async (t) => {
  const { ca, start, store, clock } = await fixture(t, { retryInitialMs: 200, retryMaxMs: 400 });
  const first = await store.ensure(web);
  await ca.close();

  clock.advanceTo(first.rotateAt);
  await eventually('the rotation attempt to fail', () => store.counters.requestsFailed === 1);
  const [row] = store.list();
  assert.equal(row!.serial, first.serial);
  assert.equal(row!.state, 'valid');
  assert.match(row!.lastError ?? '', /cannot reach the CA/);
  assert.equal(row!.nextRotation, isoIn(clock, 200), 'the first retry after retryInitialMs');
  clock.advance(200);
  await eventually('the first retry to fail', () => store.counters.requestsFailed === 2);
  assert.equal(rowOf(store, web)!.nextRotation, isoIn(clock, 400), 'the delay doubles');
  clock.advance(400);
  await eventually('the second retry to fail', () => store.counters.requestsFailed === 3);
  assert.equal(rowOf(store, web)!.nextRotation, isoIn(clock, 400), 'and stops at retryMaxMs');
  assert.equal(store.secureContext(web), first.secureContext, 'still serving the valid certificate');
  assert.equal(await store.ensure(web), first);
  assert.ok(clock.now() < first.notAfter.getTime(), 'the test restarts the CA before expiry');

  await start(ca.port);
  clock.advance(400);
  await eventually('recovery', () => serialOf(store, web) !== first.serial);
  const [after] = store.list();
  assert.equal(after!.state, 'valid');
  assert.equal(after!.lastError, null);
  assert.equal(store.counters.rotations, 1);
  assert.equal(store.counters.requestsOk, 2);
  assert.equal(store.counters.requestsFailed, 3);
});

test('CA down through notAfter: the certificate is reported expired and no longer served', async (t) => {
  const { ca, store, clock } = await fixture(t, { retryInitialMs: 200, retryMaxMs: 400 });
  const first = await store.ensure(web);
  await ca.close();

  clock.advanceTo(first.notAfter.getTime() - 1);
  await eventually('the rotation attempt to fail', () => store.counters.requestsFailed === 1);
  assert.equal(rowOf(store, web)!.state, 'valid', 'valid until its last millisecond');
  assert.equal(store.secureContext(web), first.secureContext);

  clock.advance(1);
  const row = rowOf(store, web)!;
  assert.equal(row.state, 'expired');
  assert.equal(row.serial, first.serial);
  assert.equal(store.secureContext(web), undefined);
  // It waits for its retry rather than asking a CA that just failed.
  await assert.rejects(store.ensure(web), (err: unknown) => err instanceof CertificateUnavailableError && /last request failed/.test(err.message));
  assert.equal(store.counters.requestsFailed, 1);
  // A handshake waits for the retries due within its wait, and fails with the last while the CA stays down.
  let settled: { err: Error | null; context: unknown } | undefined;
  store.sniCallback(sniFor(web), (err, context) => void (settled = { err, context }));
  while (!settled) {
    clock.advance(400);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.match(settled.err?.message ?? '', /the CA request failed/);
  assert.equal(settled.context, undefined);
  assert.ok(store.counters.requestsFailed > 2, 'it waited through more than one retry');
});

test('a connection that can wait gets the scheduled retry\'s certificate instead of an error', async (t) => {
  const { ca, start, store, clock } = await fixture(t, { retryInitialMs: 200, retryMaxMs: 400 });
  const port = Number(new URL(ca.url).port);
  await ca.close();
  await assert.rejects(store.ensure(client), /the CA request failed/);
  await assert.rejects(store.ensure(client), /last request failed/, 'no wait: at once');
  const waiting = store.ensure(client, 1000);
  await start(port);
  clock.advance(200);
  const held = await waiting;
  assert.equal(formatSpiffeId(held.identity), formatSpiffeId(client));
  assert.equal(store.counters.requestsOk, 1);
});

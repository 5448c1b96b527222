// The CA is bounded: it checks who asks and whether that node may hold the
// identity before it does anything with the CSR's key, takes RSA 2048–4096
// with e = 65537 only (refused by the encoding, before any signature work),
// limits the body size and each node's request rate, and caps the TTL.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { CaMetrics } from '../../ca/metrics.ts';
import { createRoot } from '../../ca/root.ts';
import { serveCa } from '../../ca/service.ts';
import { proveCsr, readCsr } from '../../ca/signer.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { newCertificateRequest } from '../../lib/identity/csr.ts';
import { checkKeyPolicy, parsePkcs10, verifyPkcs10 } from '../../lib/identity/pkcs10.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { PodsSource, runningPod, TokenCallers } from '../support/ca-doubles.ts';
import { ecCsr, forgeCsr, modulusOf, rsaSpki } from '../support/csr-forgery.ts';
import { ManualClock } from '../support/manual-clock.ts';

const WEB = 'spiffe://cluster.local/ns/demo/sa/web';
const DB = 'spiffe://cluster.local/ns/demo/sa/db';
const NODE1 = 'token-one-0123456789abcdef';
const NODE2 = 'token-two-0123456789abcdef';

/** A request for `uri` with an RSA key of `bits` bits and exponent `e`, whose signature is random bytes. */
const rsaCsr = (bits: number, e = 65537, uri = WEB) => forgeCsr({ spki: rsaSpki(modulusOf(bits), e), uri });

async function ca(t: TestContext, options: { signBurst?: number; signRatePerSecond?: number; now?: () => number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ca-bounds-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const metrics = new CaMetrics();
  const running = await serveCa({
    host: '127.0.0.1', port: 0, stateDir: join(dir, 'ca'),
    trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: silentLogger, ...options,
  }, {
    root: await createRoot('cluster.local'),
    source: new PodsSource([runningPod('web', 'demo', 'web', 'node-1', '10.244.1.2'), runningPod('db', 'demo', 'db', 'node-2', '10.244.2.2')]),
    callers: new TokenCallers({ [NODE1]: 'node-1', [NODE2]: 'node-2' }),
    metrics,
  });
  t.after(() => running.close());
  const dispatcher = new Agent({ connect: { ca: await readFile(running.bundleFile, 'utf8') } });
  t.after(() => dispatcher.close());
  const sign = async (csr: string, token: string | null = NODE1, ttlSeconds?: number) => {
    const res = await request(`${running.url}/v1/sign`, {
      method: 'POST', dispatcher, body: JSON.stringify({ csr, ...(ttlSeconds ? { ttlSeconds } : {}) }),
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const body = (await res.body.json()) as { error?: string; message?: string; certChain?: string[] };
    return { status: res.statusCode, headers: res.headers, ...body };
  };
  const refusals = async (reason: string) => {
    const text = await metrics.registry.metrics();
    return Number(new RegExp(`meshlet_ca_refusals_total\\{reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  };
  return { sign, refusals };
}

test('a 65,536-bit modulus is refused by its length: no key is built and no signature checked', () => {
  const huge = parsePkcs10(rsaCsr(65_536));
  assert.ok(huge.ok, 'it parses: the structure is fine');
  assert.deepEqual(huge.key.kind === 'rsa' && huge.key.bits, 65_536);
  // The signature is random bytes: had it been checked, the reason would be bad-signature.
  assert.deepEqual(verifyPkcs10(huge), { ok: false, reason: 'key-too-large', message: 'the CSR\'s RSA key has 65536 bits; the CA takes at most 4096' });
  assert.throws(() => proveCsr(huge), { status: 400, reason: 'key-too-large' });
});

test('RSA keys outside 2048–4096 bits or with an exponent other than 65537, and EC keys, are refused with their reason', () => {
  const reasonOf = (pem: string) => {
    const csr = parsePkcs10(pem);
    assert.ok(csr.ok);
    return checkKeyPolicy(csr)?.reason;
  };
  assert.equal(reasonOf(rsaCsr(1024)), 'weak-key');
  assert.equal(reasonOf(rsaCsr(8192)), 'key-too-large');
  assert.equal(reasonOf(rsaCsr(2048, 3)), 'bad-exponent');
  assert.equal(reasonOf(rsaCsr(2048, 1)), 'bad-exponent');
  assert.equal(reasonOf(rsaCsr(2048)), undefined);
  assert.equal(reasonOf(rsaCsr(4096)), undefined);
  assert.equal(reasonOf(ecCsr(WEB)), 'unsupported-key');
  // Within the policy, a random signature is what fails.
  const forged = parsePkcs10(rsaCsr(2048));
  assert.ok(forged.ok);
  assert.equal((verifyPkcs10(forged) as { reason?: string }).reason, 'bad-signature');
});

test('the CA answers key refusals with 400 and their reason, and counts them', async (t) => {
  const { sign, refusals } = await ca(t);
  assert.deepEqual(await sign(rsaCsr(16_384)).then((r) => [r.status, r.error]), [400, 'key-too-large']);
  assert.deepEqual(await sign(rsaCsr(2048, 3)).then((r) => [r.status, r.error]), [400, 'bad-exponent']);
  assert.deepEqual(await sign(ecCsr(WEB)).then((r) => [r.status, r.error]), [400, 'unsupported-key']);
  assert.equal(await refusals('key-too-large'), 1);
  assert.equal(await refusals('bad-exponent'), 1);
  assert.equal(await refusals('unsupported-key'), 1);
  // A 65,536-bit key with a short signature is refused by its length; with a signature of its own size, by the body limit before parsing.
  assert.deepEqual(await sign(rsaCsr(65_536)).then((r) => [r.status, r.error]), [400, 'key-too-large']);
  const full = forgeCsr({ spki: rsaSpki(modulusOf(65_536), 65537), uri: WEB, sign: () => randomBytes(65_536 / 8) });
  assert.deepEqual(await sign(full).then((r) => [r.status, r.error]), [413, 'too-large']);
});

test('who asks and the hosting rule come before the key: an oversized key is refused as unauthenticated or not hosted', async (t) => {
  const { sign } = await ca(t);
  const huge = rsaCsr(16_384, 3, DB);
  assert.deepEqual(await sign(huge, null).then((r) => [r.status, r.error]), [401, 'unauthenticated']);
  assert.deepEqual(await sign(huge, 'no-such-token-0123456789').then((r) => [r.status, r.error]), [401, 'invalid-token']);
  // node-1 hosts no db pod: that is the answer, whatever the key.
  assert.deepEqual(await sign(huge, NODE1).then((r) => [r.status, r.error]), [403, 'not-hosted']);
  assert.deepEqual(await sign(huge, NODE2).then((r) => [r.status, r.error]), [400, 'key-too-large']);
  // The identity is read from the bytes alone, before the key is looked at.
  assert.deepEqual(readCsr(huge, 'cluster.local').id, spiffeId('demo', 'db'));
});

test('a node over --sign-burst is answered 429 with retry-after until its bucket refills; other nodes are not', async (t) => {
  const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
  const { sign, refusals } = await ca(t, { signBurst: 2, signRatePerSecond: 0.5, now: clock.now });
  // The rate applies before the body is read: bad requests spend tokens too.
  assert.equal((await sign('not a csr')).status, 400);
  assert.equal((await sign('not a csr')).status, 400);
  const limited = await sign('not a csr');
  assert.equal(limited.status, 429);
  assert.equal(limited.error, 'rate-limited');
  assert.match(limited.message ?? '', /node node-1 sends signing requests faster than the CA allows/);
  assert.equal(limited.headers['retry-after'], '2');
  assert.equal(await refusals('rate-limited'), 1);
  assert.equal((await sign('not a csr', NODE2)).status, 400, 'node-2 has its own bucket');
  clock.advance(2000);
  assert.equal((await sign('not a csr')).status, 400, 'one token back after 2 s at 0.5/s');
  assert.equal((await sign('not a csr')).status, 429);
});

test('an honest request within the policy is signed, its TTL capped at --max-ttl', async (t) => {
  const { sign } = await ca(t);
  const { csrPem } = await newCertificateRequest(spiffeId('demo', 'web'));
  const signed = await sign(csrPem, NODE1, 365 * 86_400);
  assert.equal(signed.status, 200);
  const leaf = new X509Certificate(signed.certChain![0]!);
  assert.equal((leaf.validToDate.getTime() - leaf.validFromDate.getTime()) / 1000, 7200);
});

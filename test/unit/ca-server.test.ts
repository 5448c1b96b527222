// The CA's HTTPS API through serveCa, on in-memory parts (callers known by
// token, pods the test sets, a root made in process): what it signs, for
// which node, and how it refuses. The Kubernetes parts (TokenReview, the root
// Secret, the pod watch) are test/kube/ca-service.test.ts's.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import forge from 'node-forge';
import { Agent, request } from 'undici';
import { parseDuration } from '../../lib/core/duration.ts';
import { CaMetrics } from '../../ca/metrics.ts';
import { createRoot, ROOT_CERT_FILE } from '../../ca/root.ts';
import { serveCa, type RunningCa } from '../../ca/service.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { createCsr, generateKeyPair, newCertificateRequest } from '../../lib/identity/csr.ts';
import { CaRefusedError, CaUnreachableError } from '../../lib/identity/errors.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { jsonLogger } from '../../lib/core/log.ts';
import { eventually } from '../support/eventually.ts';
import { PodsSource, runningPod, TokenCallers } from '../support/ca-doubles.ts';

const PODS = [runningPod('web', 'demo', 'web', 'node-1', '10.244.1.2'), runningPod('db', 'demo', 'db', 'node-2', '10.244.2.2')];
const TOKENS = { 'node-1': 'token-one-0123456789abcdef', 'node-2': 'token-two-0123456789abcdef' };

async function fixture(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ca-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const out = new Writable({ write(chunk: Buffer, _enc, cb) { logs.push(chunk.toString()); cb(); } });
  const root = await createRoot('cluster.local');
  const source = new PodsSource(PODS);
  const callers = new TokenCallers({ [TOKENS['node-1']]: 'node-1', [TOKENS['node-2']]: 'node-2' });
  const metrics = new CaMetrics();
  const start = async (port = 0): Promise<RunningCa> => {
    const ca = await serveCa({
      host: '127.0.0.1', port, stateDir: join(dir, 'ca'),
      trustDomain: 'cluster.local', defaultTtlSeconds: 86_400, maxTtlSeconds: 3600 * 48, serverNames: [], log: jsonLogger('ca', out),
    }, { root, source, callers, metrics });
    t.after(() => ca.close());
    return ca;
  };
  /** A CA client for `token`, pinned to the CA's bundle file; `tokenFile` is where it reads the token. */
  const client = async (ca: RunningCa, token: string): Promise<CaClient & { tokenFile: string }> => {
    const tokenFile = join(dir, `token-${Math.random().toString(36).slice(2)}`);
    await writeFile(tokenFile, `${token}\n`);
    const c = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile });
    t.after(() => c.close());
    return Object.assign(c, { tokenFile });
  };
  return { dir, logs, root, source, callers, metrics, start, client };
}

const refusal = (status: number, reason: string, message?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof CaRefusedError, String(err));
  assert.equal(err.code, 'MESHLET_CA_REFUSED');
  assert.equal(err.status, status);
  assert.equal(err.reason, reason);
  if (message) assert.match(err.message, message);
  return true;
};

test('signs an X.509-SVID for a node hosting the service account, verifiable with the bundle', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const client = await f.client(ca, TOKENS['node-1']);
  const req = await newCertificateRequest(spiffeId('demo', 'web'));
  const issued = await client.issue({ csrPem: req.csrPem });
  assert.equal(issued.certChain.length, 1);
  assert.equal(issued.trustBundle, await readFile(ca.bundleFile, 'utf8'));
  assert.equal(await client.bundle(), issued.trustBundle);

  const leaf = new X509Certificate(issued.certChain[0]!);
  const root = new X509Certificate(issued.trustBundle);
  assert.ok(root.ca);
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'leaf chains to the bundle');
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/demo/sa/web');
  assert.equal(leaf.ca, false);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth + clientAuth');
  assert.ok(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(req.keyPem)));
  const lifetime = (from: X509Certificate) => (Date.parse(from.validTo) - Date.parse(from.validFrom)) / 1000;
  assert.equal(lifetime(leaf), 86_400, 'default TTL');
  const forgeLeaf = forge.pki.certificateFromPem(issued.certChain[0]!);
  assert.deepEqual(forgeLeaf.getExtension('keyUsage'), { ...forgeLeaf.getExtension('keyUsage'), critical: true, digitalSignature: true, keyEncipherment: true, keyCertSign: false });

  const short = await client.issue({ csrPem: (await newCertificateRequest(spiffeId('demo', 'web'))).csrPem, ttlSeconds: 60 });
  assert.equal(lifetime(new X509Certificate(short.certChain[0]!)), 60);
  const capped = await client.issue({ csrPem: req.csrPem, ttlSeconds: 365 * 86_400 });
  assert.equal(lifetime(new X509Certificate(capped.certChain[0]!)), 48 * 3600, 'capped at --max-ttl');
  assert.ok(f.logs.some((l) => l.includes('"certificate issued"') && l.includes('"node":"node-1"')));
});

test('403 for an identity whose pods run on another node, and follows cluster state changes', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const node1 = await f.client(ca, TOKENS['node-1']);
  const db = (await newCertificateRequest(spiffeId('demo', 'db'))).csrPem;
  await assert.rejects(node1.issue({ csrPem: db }), refusal(403, 'not-hosted', /node node-1 runs no pod in namespace demo with service account db/));
  await assert.rejects(node1.issue({ csrPem: (await newCertificateRequest(spiffeId('other', 'web'))).csrPem }), refusal(403, 'not-hosted'));
  const node2 = await f.client(ca, TOKENS['node-2']);
  await node2.issue({ csrPem: db });

  // The db pod moves to node-1: node-1 may now hold its identity, node-2 no longer.
  f.source.set([PODS[0]!, runningPod('db', 'demo', 'db', 'node-1', '10.244.1.3')]);
  await eventually('node-1 to be allowed db', () => node1.issue({ csrPem: db }).then(() => true));
  await assert.rejects(node2.issue({ csrPem: db }), refusal(403, 'not-hosted'));
});

test('401 without a bearer token; a refused token is answered with the authenticator\'s code and counted', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const csrPem = (await newCertificateRequest(spiffeId('demo', 'web'))).csrPem;
  await assert.rejects((await f.client(ca, 'not-a-token')).issue({ csrPem }), refusal(401, 'invalid-token', /the test knows no such token/));

  const dispatcher = new Agent({ connect: { ca: await readFile(ca.bundleFile, 'utf8') } });
  t.after(() => dispatcher.close());
  const res = await request(`${ca.url}/v1/sign`, { method: 'POST', body: JSON.stringify({ csr: csrPem }), dispatcher });
  assert.equal(res.statusCode, 401);
  assert.match(String(res.headers['www-authenticate']), /^Bearer/);
  assert.deepEqual(await res.body.json(), { error: 'unauthenticated', message: 'no bearer token; send "authorization: Bearer <the ztunnel pod\'s projected ServiceAccount token>"' });
  const metrics = await (await request(`${ca.url}/metrics`, { dispatcher })).body.text();
  assert.match(metrics, /meshlet_ca_refusals_total\{reason="invalid-token"\} 1/);
  assert.match(metrics, /meshlet_ca_refusals_total\{reason="unauthenticated"\} 1/);
  assert.ok(f.logs.some((l) => l.includes('"signing refused"') && l.includes('"reason":"invalid-token"')));
});

test('the client reads its token file on every request, so a token the kubelet rotates applies at once', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const csrPem = (await newCertificateRequest(spiffeId('demo', 'web'))).csrPem;
  const client = await f.client(ca, 'expired-token-of-node-1');
  await assert.rejects(client.issue({ csrPem }), refusal(401, 'invalid-token'));
  await writeFile(client.tokenFile, `${TOKENS['node-1']}\n`);
  await client.issue({ csrPem });
  assert.deepEqual(f.callers.seen, ['expired-token-of-node-1', TOKENS['node-1']]);
});

test('400 for CSRs that are not a single SPIFFE URI in the trust domain, or not self-signed', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const client = await f.client(ca, TOKENS['node-1']);
  const keys = await generateKeyPair();
  const withUris = (uris: string[]) => createCsr(keys, uris);
  await assert.rejects(client.issue({ csrPem: withUris(['https://web.demo.svc']) }), refusal(400, 'bad-san', /scheme must be "spiffe:\/\/"/));
  await assert.rejects(client.issue({ csrPem: withUris(['spiffe://other.domain/ns/demo/sa/web']) }), refusal(400, 'bad-san', /outside this CA's trust domain cluster.local/));
  await assert.rejects(client.issue({ csrPem: withUris(['spiffe://cluster.local/ns/demo/sa/web', 'spiffe://cluster.local/ns/demo/sa/db']) }), refusal(400, 'bad-san', /exactly one URI SAN/));
  await assert.rejects(client.issue({ csrPem: withUris([]) }), refusal(400, 'bad-san'));
  const dnsOnly = forge.pki.createCertificationRequest();
  dnsOnly.publicKey = keys.publicKey;
  dnsOnly.setSubject([{ name: 'commonName', value: 'web.demo' }]);
  dnsOnly.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'web.demo.svc' }] }] }]);
  dnsOnly.sign(keys.privateKey, forge.md.sha256.create());
  await assert.rejects(client.issue({ csrPem: forge.pki.certificationRequestToPem(dnsOnly) }), refusal(400, 'bad-san', /DNS SAN/));

  // Flip a bit of the signature (the DER's last byte): proof of possession fails.
  const good = withUris(['spiffe://cluster.local/ns/demo/sa/web']);
  const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 1]! ^= 1;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(client.issue({ csrPem: tampered }), refusal(400, 'bad-signature'));
  await assert.rejects(client.issue({ csrPem: 'hello' }), refusal(400, 'bad-csr'));
  await assert.rejects(client.issue({ csrPem: good, ttlSeconds: -5 }), refusal(400, 'bad-request'));
  await client.issue({ csrPem: good });

  const dispatcher = new Agent({ connect: { ca: await readFile(ca.bundleFile, 'utf8') } });
  t.after(() => dispatcher.close());
  const huge = await request(`${ca.url}/v1/sign`, {
    method: 'POST', dispatcher, headers: { authorization: `Bearer ${TOKENS['node-1']}` }, body: JSON.stringify({ csr: 'x'.repeat(70_000) }),
  });
  assert.equal(huge.statusCode, 413);
  assert.equal(((await huge.body.json()) as { error: string }).error, 'too-large');
  const missing = await request(`${ca.url}/v2/sign`, { dispatcher });
  assert.equal(missing.statusCode, 404);
  await missing.body.dump();
  const metrics = await (await request(`${ca.url}/metrics`, { dispatcher })).body.text();
  assert.match(metrics, /meshlet_ca_refusals_total\{reason="bad-san"\} 5/);
  assert.match(metrics, /meshlet_ca_refusals_total\{reason="bad-signature"\} 1/);
  assert.match(metrics, /meshlet_ca_certificates_issued_total 1/);
});

test('--state-dir gets the root certificate as the trust bundle, never its key; a restarted CA on the same root keeps it', async (t) => {
  const f = await fixture(t);
  const first = await f.start();
  assert.equal(first.bundleFile, join(f.dir, 'ca', ROOT_CERT_FILE));
  const bundle = await readFile(first.bundleFile, 'utf8');
  assert.equal(bundle, f.root.certPem);
  assert.deepEqual(await readdir(join(f.dir, 'ca')), [ROOT_CERT_FILE]);
  assert.doesNotMatch(bundle, /PRIVATE KEY/);
  const before = await (await f.client(first, TOKENS['node-1'])).issue({ csrPem: (await newCertificateRequest(spiffeId('demo', 'web'))).csrPem });
  await first.close();

  const second = await f.start();
  assert.equal(await readFile(second.bundleFile, 'utf8'), bundle);
  const client = await f.client(second, TOKENS['node-1']);
  assert.equal(await client.bundle(), bundle);
  assert.ok(new X509Certificate(before.certChain[0]!).verify(new X509Certificate(bundle).publicKey));
});

test('the client says when the CA is unreachable or not the pinned one', async (t) => {
  const f = await fixture(t);
  const ca = await f.start();
  const csrPem = (await newCertificateRequest(spiffeId('demo', 'web'))).csrPem;
  const other = await mkdtemp(join(tmpdir(), 'meshlet-ca-other-'));
  t.after(() => rm(other, { recursive: true, force: true }));
  const tokenFile = join(other, 'token');
  await writeFile(tokenFile, TOKENS['node-1']);
  // A bundle from another mesh root.
  const foreign = await createRoot('cluster.local');
  await writeFile(join(other, 'bundle.pem'), foreign.certPem);
  const untrusting = new CaClient({ url: ca.url, bundleFile: join(other, 'bundle.pem'), tokenFile });
  t.after(() => untrusting.close());
  await assert.rejects(untrusting.issue({ csrPem }), (err: unknown) => err instanceof CaUnreachableError && /does not verify against the bundle/.test(err.message));

  const port = ca.port;
  await ca.close();
  const down = new CaClient({ url: `https://127.0.0.1:${port}`, bundleFile: ca.bundleFile, tokenFile });
  t.after(() => down.close());
  await assert.rejects(down.issue({ csrPem }), (err: unknown) => err instanceof CaUnreachableError && err.code === 'MESHLET_CA_UNREACHABLE' && /ECONNREFUSED/.test(err.message));
});

test('durations accept s, m, h and d', () => {
  assert.equal(parseDuration('24h', '--default-ttl'), 86_400);
  assert.equal(parseDuration('90s', '--x'), 90);
  assert.equal(parseDuration('30m', '--x'), 1800);
  assert.equal(parseDuration('2d', '--x'), 172_800);
  assert.equal(parseDuration('15', '--x'), 15);
  assert.throws(() => parseDuration('1w', '--max-ttl'), /--max-ttl "1w" is not a duration/);
  assert.throws(() => parseDuration('0s', '--x'), /not a duration/);
});

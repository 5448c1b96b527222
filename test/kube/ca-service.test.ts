// `meshlet ca` on a real API server, as the command runs it (startCa in
// process, on the meshlet-ca ServiceAccount's kubeconfig, so daemonset/rbac.yaml
// is what lets it work): a ztunnel's pod-bound token gets the certificates of
// the service accounts that have a non-terminated pod on its node, through the
// CA's HTTPS API; every other request is refused with its code, counted in
// meshlet_ca_refusals_total; and the mesh root lives in a Secret that every
// CA started after the first shares, that a replica losing the creation race
// reads back, and that the CA never overwrites when it holds no usable root.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { CaStateError } from '../../ca/errors.ts';
import { ROOT_CERT_KEY, ROOT_KEY_KEY } from '../../ca/root-secret.ts';
import { createRoot, ROOT_CERT_FILE, type MeshRoot } from '../../ca/root.ts';
import { caRefusals } from '../support/ca-refusals.ts';
import { MANAGED_LABEL, MANAGED_VALUE, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY } from '../../ca/waypoint-objects.ts';
import { startCa, type KubeCaConfig, type RunningCa } from '../../ca/service.ts';
import { jsonLogger } from '../../lib/core/log.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { newCertificateRequest } from '../../lib/identity/csr.ts';
import { CaRefusedError } from '../../lib/identity/errors.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { accountToken, mintToken } from '../support/ca-tokens.ts';
import { applyObjects as apply, asServiceAccount, kubectlOk as kubectl, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url).pathname;
const SYSTEM = 'meshlet-system';
const APPS = 'demo';
const ZTUNNEL = 'meshlet-ztunnel';
const ROOT_SECRET = { namespace: SYSTEM, name: 'meshlet-ca-root' };

const node = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name } });
const namespace = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const serviceAccount = (ns: string, name: string) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } });
/** A pod bound to `nodeName`; no kubelet runs it, so it stays Pending unless its status is patched. */
const pod = (ns: string, name: string, account: string, nodeName: string) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns },
  spec: { nodeName, serviceAccountName: account, automountServiceAccountToken: false, containers: [{ name: 'main', image: 'registry.invalid/main' }] },
});

const readSecret = async (cp: TestControlPlane): Promise<{ type: string; data: Record<string, string>; metadata: { resourceVersion: string } }> =>
  JSON.parse(await kubectl(cp, ['-n', ROOT_SECRET.namespace, 'get', 'secret', ROOT_SECRET.name, '-o', 'json'])) as { type: string; data: Record<string, string>; metadata: { resourceVersion: string } };

const readConfigMap = async (cp: TestControlPlane): Promise<{ data: Record<string, string>; metadata: { labels?: Record<string, string> } }> =>
  JSON.parse(await kubectl(cp, ['-n', SYSTEM, 'get', 'configmap', TRUST_BUNDLE_CONFIGMAP, '-o', 'json'])) as { data: Record<string, string>; metadata: { labels?: Record<string, string> } };

/** Replaces the root Secret with one holding `data` (plain strings), as an operator or another tool might. */
async function putSecret(cp: TestControlPlane, data: Record<string, string>): Promise<void> {
  await kubectl(cp, ['-n', ROOT_SECRET.namespace, 'delete', 'secret', ROOT_SECRET.name, '--ignore-not-found']);
  await apply(cp, { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: ROOT_SECRET, stringData: data });
}

const refusedWith = (status: number, reason: string, message: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof CaRefusedError, String(err));
  assert.deepEqual({ status: err.status, reason: err.reason }, { status, reason }, err.message);
  assert.match(err.message, message);
  return true;
};

interface Fixture {
  cp: TestControlPlane;
  dir: string;
  /** The meshlet-ca ServiceAccount's kubeconfig file, what --kubeconfig names. */
  kubeconfig: string;
  logs: string[];
  start(overrides?: Partial<KubeCaConfig>): Promise<RunningCa>;
  /** A ztunnel's CA client, presenting `token` from its token file. */
  client(ca: RunningCa, token: string): Promise<CaClient>;
  /** meshlet_ca_refusals_total by reason, from the CA's /metrics. */
  refusals(ca: RunningCa): Promise<Map<string, number>>;
}

async function fixture(t: TestContext, cp: TestControlPlane): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ca-kube-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'ca.kubeconfig');
  await writeFile(kubeconfig, (await asServiceAccount(cp, 'meshlet-ca', SYSTEM)).kc.exportConfig(), { mode: 0o600 });
  const logs: string[] = [];
  const out = new Writable({ write(chunk: Buffer, _enc, cb) { logs.push(chunk.toString()); cb(); } });
  let tokens = 0;
  return {
    cp, dir, kubeconfig, logs,
    async start(overrides = {}) {
      const ca = await startCa({
        host: '127.0.0.1', port: 0, stateDir: join(dir, 'ca'), kubeconfig, rootSecret: ROOT_SECRET,
        trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: jsonLogger('ca', out), ...overrides,
      });
      t.after(() => ca.close());
      return ca;
    },
    async client(ca, token) {
      const tokenFile = join(dir, `token-${++tokens}`);
      await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
      const client = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile });
      t.after(() => client.close());
      return client;
    },
    refusals: caRefusals,
  };
}

test('meshlet ca signs for the ztunnels whose nodes host the identity, refuses the rest, and keeps its root in a Secret', async (t) => {
  const cp = await startTestControlPlane(t);
  await kubectl(cp, ['apply', '-f', RBAC_FILE]);
  // node-1 runs web (Pending: no kubelet here, but scheduled) and a finished batch pod; node-2 runs db.
  await apply(cp, node('node-1'), node('node-2'), namespace(APPS),
    ...['web', 'db', 'batch'].map((sa) => serviceAccount(APPS, sa)),
    pod(SYSTEM, 'ztunnel-1', ZTUNNEL, 'node-1'), pod(SYSTEM, 'ztunnel-2', ZTUNNEL, 'node-2'),
    pod(APPS, 'web-1', 'web', 'node-1'), pod(APPS, 'db-1', 'db', 'node-2'), pod(APPS, 'batch-1', 'batch', 'node-1'));
  await kubectl(cp, ['-n', APPS, 'patch', 'pod', 'batch-1', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Succeeded"}}']);
  // The authorizer sees the new roles and bindings through its informers, a moment after the apply.
  const ca = (verb: string, resource: string, ns = SYSTEM) => ['auth', 'can-i', verb, resource, '-n', ns, `--as=system:serviceaccount:${SYSTEM}:meshlet-ca`];
  for (const [verb, resource] of [['create', 'tokenreviews.authentication.k8s.io'], ['watch', 'pods'], ['create', 'secrets'], [`get`, `secret/${ROOT_SECRET.name}`]] as const) {
    await eventually(`RBAC to let meshlet-ca ${verb} ${resource}`, async () => (await cp.kubectl(ca(verb, resource))).stdout.trim() === 'yes');
  }
  const f = await fixture(t, cp);
  const first = await f.start();
  const ztunnel1 = await accountToken(cp, SYSTEM, ZTUNNEL, 'ztunnel-1');
  const ztunnel2 = await accountToken(cp, SYSTEM, ZTUNNEL, 'ztunnel-2');
  const csr = async (sa: string) => (await newCertificateRequest(spiffeId(APPS, sa))).csrPem;
  let issuedBefore: string | undefined;

  await t.test('the first CA creates the root Secret; only the certificate reaches --state-dir', async () => {
    const secret = await readSecret(cp);
    assert.equal(secret.type, 'kubernetes.io/tls');
    const bundle = await readFile(first.bundleFile, 'utf8');
    assert.equal(Buffer.from(secret.data[ROOT_CERT_KEY]!, 'base64').toString('utf8'), bundle);
    assert.match(Buffer.from(secret.data[ROOT_KEY_KEY]!, 'base64').toString('utf8'), /BEGIN RSA PRIVATE KEY/);
    assert.deepEqual(await readdir(join(f.dir, 'ca')), [ROOT_CERT_FILE]);
    assert.doesNotMatch(bundle, /PRIVATE KEY/);
    assert.ok(f.logs.some((l) => l.includes('"mesh root created"') && l.includes(`Secret ${SYSTEM}/${ROOT_SECRET.name}`)));
  });

  await t.test('the root certificate, not its key, is published as a ConfigMap in the CA\'s namespace, where the ztunnels mount it', async () => {
    assert.deepEqual(await first.rootConfigMap?.settled, { state: 'published' });
    const map = await readConfigMap(cp);
    assert.deepEqual(Object.keys(map.data), [TRUST_BUNDLE_KEY]);
    assert.equal(map.data[TRUST_BUNDLE_KEY], await readFile(first.bundleFile, 'utf8'));
    assert.equal(map.metadata.labels?.[MANAGED_LABEL], MANAGED_VALUE);
  });

  await t.test('a ztunnel\'s pod-bound token gets the certificate of a service account with a pod on its node', async () => {
    const issued = await (await f.client(first, ztunnel1)).issue({ csrPem: await csr('web') });
    const leaf = new X509Certificate(issued.certChain[0]!);
    assert.equal(leaf.subjectAltName, `URI:spiffe://cluster.local/ns/${APPS}/sa/web`);
    assert.ok(leaf.verify(new X509Certificate(await readFile(first.bundleFile, 'utf8')).publicKey), 'the leaf chains to the bundle');
    issuedBefore = issued.certChain[0];
    await (await f.client(first, ztunnel2)).issue({ csrPem: await csr('db') });
    assert.ok(f.logs.some((l) => l.includes('"certificate issued"') && l.includes('"node":"node-1"') && l.includes('/sa/web')));
  });

  await t.test('each refusal has its code and message, and is counted', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: [what: string, token: string, sa: string, status: number, reason: string, message: RegExp][] = [
      ['node-2\'s ztunnel asking for web, which runs only on node-1', ztunnel2, 'web', 403, 'not-hosted',
        /node node-2 runs no pod in namespace demo with service account web, so it may not hold spiffe:\/\/cluster\.local\/ns\/demo\/sa\/web/],
      ['node-1\'s ztunnel asking for an identity no pod runs as', ztunnel1, 'ghost', 403, 'not-hosted', /node node-1 runs no pod in namespace demo with service account ghost/],
      ['node-1\'s ztunnel asking for a finished pod\'s identity', ztunnel1, 'batch', 403, 'not-hosted', /node node-1 runs no pod in namespace demo with service account batch/],
      ['a token that expired an hour ago', await mintToken(cp, ztunnel1, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), 'web', 401, 'invalid-token',
        /the API server did not authenticate the token: .*expired.*check that the ztunnel sends the token file the kubelet keeps fresh/],
      ['a token for another audience', await accountToken(cp, SYSTEM, ZTUNNEL, 'ztunnel-1', 'vault'), 'web', 401, 'wrong-audience',
        /the token is for audience vault, not meshlet-ca; project the ztunnel's ServiceAccount token with audience meshlet-ca/],
    ];
    for (const [what, token, sa, status, reason, message] of cases) {
      const before = (await f.refusals(first)).get(reason) ?? 0;
      await assert.rejects((await f.client(first, token)).issue({ csrPem: await csr(sa) }), refusedWith(status, reason, message), what);
      assert.equal((await f.refusals(first)).get(reason), before + 1, `${what}: meshlet_ca_refusals_total{reason="${reason}"}`);
      assert.ok(f.logs.some((l) => l.includes('"signing refused"') && l.includes(`"reason":"${reason}"`)), `${what}: logged`);
    }
  });

  await t.test('a pod scheduled later is signed for once the watch sees it', async () => {
    await apply(cp, pod(APPS, 'db-2', 'db', 'node-1'));
    const client = await f.client(first, ztunnel1);
    const db = await csr('db');
    await eventually('node-1 to be allowed db', () => client.issue({ csrPem: db }).then(() => true));
  });

  await t.test('a CA started after the first reads the root from the Secret: the same bundle, earlier certificates still verify', async () => {
    const bundle = await readFile(first.bundleFile, 'utf8');
    await first.close();
    await rm(join(f.dir, 'ca'), { recursive: true });
    const second = await f.start();
    assert.equal(await readFile(second.bundleFile, 'utf8'), bundle);
    assert.ok(new X509Certificate(issuedBefore!).verify(new X509Certificate(bundle).publicKey));
    assert.equal(await (await f.client(second, ztunnel1)).bundle(), bundle);
    assert.ok(f.logs.some((l) => l.includes('"mesh root loaded"')));
    await second.close();
  });

  await t.test('a ConfigMap of that name that meshlet does not manage is left as it is, and the CA says why', async () => {
    await kubectl(cp, ['-n', SYSTEM, 'delete', 'configmap', TRUST_BUNDLE_CONFIGMAP]);
    await apply(cp, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: SYSTEM }, data: { note: 'the user\'s' } });
    const ca = await f.start();
    const state = await ca.rootConfigMap?.settled;
    assert.equal(state?.state, 'refused');
    assert.match(state.state === 'refused' ? state.reason : '', new RegExp(`v1 ConfigMap ${SYSTEM}/${TRUST_BUNDLE_CONFIGMAP} exists and is not managed by meshlet .*delete or rename it, and the CA publishes the mesh root there`));
    assert.deepEqual((await readConfigMap(cp)).data, { note: 'the user\'s' });
    assert.ok(f.logs.some((l) => l.includes('"mesh root not published') && l.includes(TRUST_BUNDLE_CONFIGMAP)));
    await ca.close();
    await kubectl(cp, ['-n', SYSTEM, 'delete', 'configmap', TRUST_BUNDLE_CONFIGMAP]);
  });

  await t.test('a CA that loses the race to create the Secret uses the winner\'s root', async () => {
    await kubectl(cp, ['-n', SYSTEM, 'delete', 'secret', ROOT_SECRET.name]);
    let winner: MeshRoot | undefined;
    // Another replica creates the Secret between this CA's read (404) and its create (409).
    const racing = await f.start({
      newRoot: async (trustDomain) => {
        winner = await createRoot(trustDomain);
        await putSecret(cp, { [ROOT_CERT_KEY]: winner.certPem, [ROOT_KEY_KEY]: winner.keyPem });
        return createRoot(trustDomain);
      },
    });
    assert.equal(await readFile(racing.bundleFile, 'utf8'), winner!.certPem);
    assert.ok(f.logs.some((l) => l.includes('another CA replica created it first')));
    await racing.close();
  });

  await t.test('a Secret that holds no usable root stops the start, says how to fix it, and is left as it is', async () => {
    const fix = /the CA never overwrites it\. Restore the root it held, or delete it \(kubectl -n meshlet-system delete secret meshlet-ca-root\) and the CA creates a new root on its next start: every workload identity is then re-issued/;
    const other = await createRoot('cluster.local');
    const { certPem } = other;
    for (const [what, data, problem] of [
      ['garbage', { [ROOT_CERT_KEY]: 'not a certificate', [ROOT_KEY_KEY]: 'not a key' }, /Secret meshlet-system\/meshlet-ca-root holds no PEM certificate/],
      ['no key', { [ROOT_CERT_KEY]: certPem }, /Secret meshlet-system\/meshlet-ca-root has no tls\.key \(its keys: tls\.crt\), so it holds no mesh root/],
      ['another root\'s key', { [ROOT_CERT_KEY]: certPem, [ROOT_KEY_KEY]: (await createRoot('cluster.local')).keyPem }, /Secret meshlet-system\/meshlet-ca-root holds a key that is not the key of its certificate/],
    ] as const) {
      await putSecret(cp, data);
      const before = await readSecret(cp);
      await assert.rejects(f.start(), (err: unknown) => {
        assert.ok(err instanceof CaStateError, String(err));
        assert.equal(err.code, 'MESHLET_CA_STATE');
        assert.match(err.message, problem, what);
        assert.match(err.message, fix, what);
        return true;
      }, what);
      assert.deepEqual(await readSecret(cp), before, `${what}: the Secret is untouched`);
    }
    await putSecret(cp, { [ROOT_CERT_KEY]: certPem, [ROOT_KEY_KEY]: other.keyPem });
    await assert.rejects(f.start({ trustDomain: 'example.org' }), (err: unknown) => err instanceof CaStateError
      && /Secret meshlet-system\/meshlet-ca-root holds the root of trust domain cluster\.local, but --trust-domain is example\.org/.test(err.message), 'another trust domain');
  });

  await t.test('a CA that may not read the Secret names the Role to fix', async () => {
    await assert.rejects(f.start({ rootSecret: { namespace: 'default', name: 'meshlet-ca-root' } }), (err: unknown) => {
      assert.ok(err instanceof CaStateError, String(err));
      assert.match(err.message, /the CA may not get Secret default\/meshlet-ca-root \(.*forbidden.*\); its ServiceAccount needs get \(resourceNames: \[meshlet-ca-root\]\) and create on secrets in namespace default: the Role meshlet-ca in daemonset\/rbac\.yaml/);
      return true;
    });
  });
});

// `meshlet install` and `meshlet uninstall` against a real API server: every
// rendered object passes server-side dry-run (with the default flags and with
// every flag changed), the roles the server would store are rbac.yaml's, the
// stream applies as documented (`meshlet install | kubectl apply -f -`), the
// agent's kubeconfig reads the API under its ServiceAccount's token and
// nothing more, and the uninstall stream deletes what the install made.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { statusCodeOf } from '../../lib/cluster/sources/kube-client.ts';
import { kubeconfigText } from '../../lib/install/ca-deployment.ts';
import { AGENT_ACCOUNT, SERVICE_ACCOUNT_DIR } from '../../lib/install/names.ts';
import { installDefaults, type InstallOptions } from '../../lib/install/options.ts';
import { RBAC_FILE } from '../../lib/install/rbac.ts';
import { installObjects, renderInstall, renderUninstall } from '../../lib/install/render.ts';
import { kubectlOk, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; rules?: unknown };

const docs = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null);
const id = (o: Obj): string => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** Server-side dry-run of the whole stream; the objects as the server would store them. */
async function dryRun(cp: TestControlPlane, options: InstallOptions): Promise<Obj[]> {
  // Dry-run creates no namespace, and the namespaced objects need theirs to exist.
  await kubectlOk(cp, ['create', 'namespace', options.namespace]);
  const out = await kubectlOk(cp, ['apply', '--server-side', '--dry-run=server', '-o', 'json', '-f', '-'], renderInstall(options));
  const answer = JSON.parse(out) as Obj & { items?: Obj[] };
  return answer.items ?? [answer];
}

test('every rendered object passes server-side dry-run, and the roles are rbac.yaml\'s', async (t) => {
  const cp = await startTestControlPlane(t);
  const defaults = installDefaults();
  const stored = await dryRun(cp, defaults);
  assert.deepEqual(stored.map(id), installObjects(defaults).map(id));
  const rbac = docs(readFileSync(RBAC_FILE, 'utf8'));
  for (const role of rbac.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
    assert.deepEqual(stored.find((o) => id(o) === id(role))?.rules, role.rules, `${id(role)} as the server stores it`);
  }
  const changed: InstallOptions = {
    image: 'registry.example/meshlet:0.1.0', namespace: 'mesh-ops', trustDomain: 'example.org', cgroupDriver: 'systemd', certTtl: 3600,
    serviceCidrs: '10.0.0.0/16,fd00:10::/112', kubeletCgroupRoot: '/kubelet.slice', apiServer: 'https://192.0.2.1:6443', inboundSourceIp4: '169.254.7.6',
    cniConfDir: '/var/lib/rancher/k3s/agent/etc/cni/net.d', cniBinDir: '/var/lib/rancher/k3s/data/current/bin',
  };
  assert.deepEqual((await dryRun(cp, changed)).map(id), installObjects(changed).map(id));
});

test('the stream applies with kubectl, the agent reads the API with its kubeconfig, and the uninstall stream deletes it all', async (t) => {
  const cp = await startTestControlPlane(t);
  const options = installDefaults();
  await kubectlOk(cp, ['apply', '-f', '-'], renderInstall(options));

  // The agent's kubeconfig, with the credentials the kubelet would project: its ServiceAccount's token and the cluster's CA.
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-install-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'token'), (await kubectlOk(cp, ['create', 'token', AGENT_ACCOUNT, '-n', options.namespace])).trim());
  await copyFile(cp.pki.caCert, join(dir, 'ca.crt'));
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigText(cp.server).replaceAll(SERVICE_ACCOUNT_DIR, dir));
  const core = kc.makeApiClient(CoreV1Api);
  assert.ok(Array.isArray((await core.listNode()).items), 'the agent lists nodes');
  await assert.rejects(core.listNamespacedSecret({ namespace: options.namespace }), (err: unknown) => statusCodeOf(err) === 403, 'and reads no Secret');

  await kubectlOk(cp, ['delete', '--ignore-not-found', '--wait=false', '-f', '-'], renderUninstall(options.namespace));
  for (const o of installObjects(options).filter((x) => x.metadata.namespace === undefined && x.kind !== 'Namespace')) {
    const got = await cp.kubectl(['get', o.kind.toLowerCase(), o.metadata.name]);
    assert.match(got.stderr, /NotFound/, `${o.kind} ${o.metadata.name} is gone`);
  }
  // Without the namespace controller the namespace stays Terminating, its contents with it; the delete was accepted.
  const phase = await cp.kubectl(['get', 'namespace', options.namespace, '-o', 'jsonpath={.status.phase}']);
  assert.ok(phase.stdout === 'Terminating' || /NotFound/.test(phase.stderr), `namespace ${options.namespace}: ${phase.stdout}${phase.stderr}`);
});

// The control plane the sandbox and the kube suites run: real etcd and
// kube-apiserver from the cached build, with the controllers when asked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually } from '../support/eventually.ts';
import { startTestControlPlane } from '../support/control-plane.ts';

test('the API server serves kubectl, validates Istio objects against the real schema, and the controllers run', async (t) => {
  const cp = await startTestControlPlane(t, { crds: true, controllers: true });
  const version = await cp.kubectl(['version', '-o', 'json']);
  assert.equal((JSON.parse(version.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion, 'v1.37.2');
  const bad = await cp.kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'bad', namespace: 'default' }, spec: { action: 'PERMIT' },
  }));
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr, /spec\.action: Unsupported value: "PERMIT"/);
  // The controller manager creates each namespace's default ServiceAccount.
  await cp.kubectl(['create', 'namespace', 'demo']);
  await eventually('the default ServiceAccount in demo', async () => (await cp.kubectl(['-n', 'demo', 'get', 'serviceaccount', 'default'])).exitCode === 0, 30_000);
});

test('a node\'s own credentials are held to the Node authorizer', async (t) => {
  const cp = await startTestControlPlane(t);
  const node = await cp.userKubeconfig('system:node:node-1', ['system:nodes']);
  const asNode = (args: string[]) => cp.kubectl(['--kubeconfig', node, ...args]);
  // Its own Node object is its to read (not there yet: NotFound); another node's, or every node, is not.
  assert.match((await asNode(['get', 'node', 'node-1'])).stderr, /NotFound/);
  assert.match((await asNode(['get', 'node', 'node-2'])).stderr, /Forbidden.*only its own Node object/);
  assert.match((await asNode(['get', 'nodes'])).stderr, /Forbidden/);
  assert.match((await asNode(['get', 'secrets', '-A'])).stderr, /Forbidden/);
});

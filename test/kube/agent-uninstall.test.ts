// The agent tells an uninstall from an upgrade as it stops, by reading its own
// DaemonSet on a real API server under its own ServiceAccount
// (daemonset/rbac.yaml): present is an upgrade or restart (capture stays),
// being deleted or gone is an uninstall; anything it cannot read keeps
// capture (fail closed).
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { test } from 'node:test';
import { DaemonSetWatch, stopKind } from '../../agent/uninstall.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { applyObjects as apply, asServiceAccount, kubectlOk as kubectl, startTestControlPlane } from '../support/control-plane.ts';
import { eventually } from '../support/eventually.ts';

const RBAC_FILE = new URL('../../daemonset/rbac.yaml', import.meta.url).pathname;
const SYSTEM = 'meshlet-system';
const DAEMONSET = { namespace: SYSTEM, name: 'meshlet-node' };
const FINALIZER = 'meshlet.dev/test-hold';

const daemonSet = (name: string, finalizers: string[] = []) => ({
  apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name, namespace: SYSTEM, finalizers },
  spec: {
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'agent', image: 'registry.invalid/meshlet' }] } },
  },
});

test('the agent\'s stop is an uninstall only when its DaemonSet is being deleted or gone', async (t) => {
  const cp = await startTestControlPlane(t);
  await kubectl(cp, ['apply', '-f', RBAC_FILE]);
  await apply(cp, daemonSet(DAEMONSET.name, [FINALIZER]), daemonSet('other'));
  const { kc } = await asServiceAccount(cp, 'meshlet-agent', SYSTEM);
  await eventually('RBAC to let meshlet-agent get its DaemonSet', async () => (await stopKind(kc, DAEMONSET)).why.includes('still there'));

  await t.test('present: an upgrade or restart, capture stays', async () => {
    assert.deepEqual(await stopKind(kc, DAEMONSET), { uninstall: false, why: `DaemonSet ${SYSTEM}/meshlet-node is still there (an upgrade or a restart): capture stays for the next agent` });
  });

  await t.test('a DaemonSet its Role does not name cannot be read, and capture stays', async () => {
    const kind = await stopKind(kc, { namespace: SYSTEM, name: 'other' });
    assert.equal(kind.uninstall, false);
    assert.match(kind.why, /^cannot read DaemonSet meshlet-system\/other \(HTTP 403: .*forbidden.*\): capture stays$/);
  });

  await t.test('an API server that does not answer keeps capture', async () => {
    const gone = new KubeConfig();
    gone.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }], users: [{ name: 'u', token: 'x' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
    });
    const kind = await stopKind(gone, DAEMONSET);
    assert.equal(kind.uninstall, false);
    assert.match(kind.why, /^cannot tell whether DaemonSet meshlet-system\/meshlet-node is being deleted \(.+\): capture stays$/);
  });

  const watch = new DaemonSetWatch(kc, DAEMONSET, silentLogger);
  t.after(() => watch.close());
  await t.test('the watch (get, list and watch on its name only) sees the DaemonSet', async () => {
    watch.start();
    await eventually('the watch to see the DaemonSet', async () => watch.seen === 'present');
    assert.equal((await watch.stopKind()).uninstall, false);
  });

  await t.test('being deleted (a finalizer holds it): an uninstall', async () => {
    await kubectl(cp, ['-n', SYSTEM, 'delete', 'daemonset', DAEMONSET.name, '--wait=false']);
    assert.deepEqual(await stopKind(kc, DAEMONSET), { uninstall: true, why: `DaemonSet ${SYSTEM}/meshlet-node is being deleted` });
    await eventually('the watch to see the deletion', async () => watch.seen === 'deleting');
  });

  await t.test('gone: an uninstall', async () => {
    await kubectl(cp, ['-n', SYSTEM, 'patch', 'daemonset', DAEMONSET.name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    await eventually('the DaemonSet to be gone', async () => (await stopKind(kc, DAEMONSET)).uninstall && (await stopKind(kc, DAEMONSET)).why.endsWith('is gone'));
    assert.deepEqual(await stopKind(kc, DAEMONSET), { uninstall: true, why: `DaemonSet ${SYSTEM}/meshlet-node is gone` });
    await eventually('the watch to see it gone', async () => watch.seen === 'gone');
  });

  await t.test('with its Role deleted before the stop (kubectl delete -f), the watch still knows', async () => {
    await kubectl(cp, ['-n', SYSTEM, 'delete', 'rolebinding,role', 'meshlet-agent']);
    await eventually('meshlet-agent to lose its Role', async () => (await stopKind(kc, DAEMONSET)).why.startsWith('cannot read'));
    assert.deepEqual(await watch.stopKind(), { uninstall: true, why: `DaemonSet ${SYSTEM}/meshlet-node was deleted` });
  });
});

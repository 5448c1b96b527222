// The agent puts the meshlet CNI plugin on the node and chains it into the
// node's primary CNI config, keeps the list of ambient namespaces beside it,
// and on uninstall takes all of it away, leaving the network's own config as
// it was.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, constants, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { CNI_PLUGIN_TYPE, CniInstall } from '../../agent/cni-install.ts';
import { silentLogger } from '../../lib/core/log.ts';

const NETWORK = { cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'portmap' }] };

async function node(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cni-install-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'net.d');
  const binDir = join(dir, 'bin');
  await mkdir(confDir);
  await mkdir(binDir);
  const install = new CniInstall({ confDir, binDir, agentSocket: '/run/meshlet/agent.sock', excludeNamespaces: ['kube-system', 'meshlet-system'], log: silentLogger });
  t.after(() => install.stop());
  return { confDir, binDir, install };
}

test('chained last into the primary config, with an executable plugin; uninstall restores the config and removes the files', async (t) => {
  const { confDir, binDir, install } = await node(t);
  const original = `${JSON.stringify(NETWORK, null, 2)}\n`;
  await writeFile(join(confDir, '10-podnet.conflist'), original);
  await writeFile(join(confDir, '99-other.conflist'), original);
  await install.start();

  const chained = JSON.parse(await readFile(join(confDir, '10-podnet.conflist'), 'utf8')) as typeof NETWORK;
  assert.deepEqual(chained.plugins.map((p) => p.type), ['bridge', 'portmap', CNI_PLUGIN_TYPE]);
  assert.deepEqual(chained.plugins[2], {
    type: CNI_PLUGIN_TYPE, agentSocket: '/run/meshlet/agent.sock', ambientNamespacesFile: join(confDir, 'meshlet.d', 'ambient-namespaces.json'), excludeNamespaces: ['kube-system', 'meshlet-system'],
  });
  assert.equal(await readFile(join(confDir, '99-other.conflist'), 'utf8'), original, 'only the primary config is edited');
  await access(join(binDir, CNI_PLUGIN_TYPE), constants.X_OK);
  // The runtime runs it by its type name, with nothing but the CNI environment.
  const { stdout } = await promisify(execFile)(join(binDir, CNI_PLUGIN_TYPE), [], { env: { CNI_COMMAND: 'VERSION' } });
  assert.equal((JSON.parse(stdout) as { cniVersion: string }).cniVersion, '1.0.0');

  await install.setAmbientNamespaces(['apps', 'shop']);
  assert.deepEqual(JSON.parse(await readFile(install.ambientFile, 'utf8')), { namespaces: ['apps', 'shop'] });
  assert.deepEqual((await readdir(confDir)).sort(), ['10-podnet.conflist', '99-other.conflist', 'meshlet.d'], 'nothing a runtime would read as a config');

  await install.remove();
  assert.deepEqual(JSON.parse(await readFile(join(confDir, '10-podnet.conflist'), 'utf8')), NETWORK);
  assert.deepEqual((await readdir(confDir)).sort(), ['10-podnet.conflist', '99-other.conflist']);
  assert.deepEqual(await readdir(binDir), []);
});

test('a single-plugin .conf becomes a .conflist with the plugin chained; a config that appears later is chained then', async (t) => {
  const { confDir, install } = await node(t);
  await install.start();
  assert.deepEqual(await readdir(confDir), ['meshlet.d'], 'no config: nothing written but the state dir');
  await writeFile(join(confDir, '05-flannel.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'cbr0', type: 'flannel' }));
  const deadline = Date.now() + 10_000;
  while (!(await readdir(confDir)).includes('05-flannel.conflist') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual((await readdir(confDir)).sort(), ['05-flannel.conflist', 'meshlet.d']);
  const list = JSON.parse(await readFile(join(confDir, '05-flannel.conflist'), 'utf8')) as { cniVersion: string; name: string; plugins: { type: string }[] };
  assert.equal(list.cniVersion, '0.4.0');
  assert.deepEqual(list.plugins.map((p) => p.type), ['flannel', CNI_PLUGIN_TYPE]);
});

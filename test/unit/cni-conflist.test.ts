// The agent's edits of the node's primary CNI config: the meshlet plugin is
// chained last (or in its old place), a single-plugin config becomes a list,
// an edit that changes nothing rewrites nothing, and the runtime's choice of
// primary config is followed.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CniConfigError, conflistPath, findPrimaryConfig, withMeshletPlugin, withoutMeshletPlugin } from '../../lib/cni/conflist.ts';

const ENTRY = { type: 'meshlet-cni', agentSocket: '/run/meshlet/agent.sock', ambientNamespacesFile: '/etc/cni/net.d/meshlet.d/ambient-namespaces.json' };
const CALICO = { type: 'calico', ipam: { type: 'calico-ipam' } };
const PORTMAP = { type: 'portmap', capabilities: { portMappings: true } };
const conflist = (...plugins: object[]): string => `${JSON.stringify({ name: 'k8s-pod-network', cniVersion: '0.3.1', plugins }, null, 2)}\n`;

test('withMeshletPlugin chains the entry into a plugin list', () => {
  const cases: { name: string; before: string; after: object[]; changed: boolean }[] = [
    { name: 'appended last', before: conflist(CALICO, PORTMAP), after: [CALICO, PORTMAP, ENTRY], changed: true },
    { name: 'an old entry replaced in place', before: conflist(CALICO, { type: 'meshlet-cni', agentSocket: '/old.sock' }, PORTMAP), after: [CALICO, ENTRY, PORTMAP], changed: true },
    { name: 'duplicates folded into the first', before: conflist(CALICO, ENTRY, PORTMAP, ENTRY), after: [CALICO, ENTRY, PORTMAP], changed: true },
    { name: 'the same entry again', before: conflist(CALICO, PORTMAP, ENTRY), after: [CALICO, PORTMAP, ENTRY], changed: false },
  ];
  for (const c of cases) {
    const edit = withMeshletPlugin(c.before, '10-calico.conflist', ENTRY);
    assert.equal(edit.changed, c.changed, c.name);
    assert.equal(edit.text, conflist(...c.after), c.name);
    assert.deepEqual(withMeshletPlugin(edit.text, '10-calico.conflist', ENTRY), { text: edit.text, changed: false }, `${c.name}: idempotent`);
  }
});

test('an unchanged config keeps its own formatting and its other keys in their order', () => {
  const text = `{"plugins":[${JSON.stringify(CALICO)},${JSON.stringify(ENTRY)}],"cniVersion":"1.0.0","name":"net"}`;
  assert.deepEqual(withMeshletPlugin(text, '05-cilium.conflist', ENTRY), { text, changed: false });
  const edit = withMeshletPlugin(text, '05-cilium.conflist', { ...ENTRY, excludeNamespaces: ['kube-system'] });
  assert.deepEqual(Object.keys(JSON.parse(edit.text)), ['plugins', 'cniVersion', 'name']);
});

test('a single-plugin config becomes a plugin list written as .conflist', () => {
  const flannel = { cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } };
  const edit = withMeshletPlugin(JSON.stringify(flannel), '10-flannel.conf', ENTRY);
  assert.equal(edit.changed, true);
  assert.equal(edit.text, `${JSON.stringify({ cniVersion: '0.3.1', name: 'cbr0', plugins: [{ type: 'flannel', delegate: flannel.delegate }, ENTRY] }, null, 2)}\n`);
  assert.deepEqual(withMeshletPlugin(edit.text, '10-flannel.conflist', ENTRY), { text: edit.text, changed: false });
  assert.equal(conflistPath('/etc/cni/net.d/10-flannel.conf'), '/etc/cni/net.d/10-flannel.conflist');
  assert.equal(conflistPath('/etc/cni/net.d/10-net.json'), '/etc/cni/net.d/10-net.conflist');
  assert.equal(conflistPath('/etc/cni/net.d/10-calico.conflist'), '/etc/cni/net.d/10-calico.conflist');
  // A .json file may hold a plugin list already.
  assert.equal(withMeshletPlugin(conflist(CALICO), '10-calico.json', ENTRY).text, conflist(CALICO, ENTRY));
});

test('withoutMeshletPlugin takes out every entry of its type and leaves anything else alone', () => {
  const cases: { name: string; before: string; after: string; changed: boolean }[] = [
    { name: 'chained', before: conflist(CALICO, ENTRY, PORTMAP), after: conflist(CALICO, PORTMAP), changed: true },
    { name: 'twice', before: conflist(ENTRY, CALICO, ENTRY), after: conflist(CALICO), changed: true },
    { name: 'not chained', before: conflist(CALICO, PORTMAP), after: conflist(CALICO, PORTMAP), changed: false },
    { name: 'a single-plugin config', before: JSON.stringify(CALICO), after: JSON.stringify(CALICO), changed: false },
    { name: 'not JSON', before: '{"plugins": [', after: '{"plugins": [', changed: false },
  ];
  for (const c of cases) assert.deepEqual(withoutMeshletPlugin(c.before, 'meshlet-cni'), { text: c.after, changed: c.changed }, c.name);
});

test('a config that cannot be edited is a CniConfigError naming the file and the fix', () => {
  const cases: { name: string; text: string; file: string; message: RegExp }[] = [
    { name: 'not JSON', text: '{"plugins": [', file: '10-calico.conflist', message: /^CNI config 10-calico\.conflist: not JSON \(.+\); fix it or reinstall the node's network plugin/ },
    { name: 'not an object', text: '[]', file: '10-calico.conflist', message: /10-calico\.conflist: not a JSON object/ },
    { name: 'plugins not a list', text: '{"name": "k8s", "plugins": {"type": "calico"}}', file: '10-calico.conflist', message: /"plugins" is not a list of plugin objects/ },
    { name: 'a .conflist without plugins', text: '{"name": "k8s", "type": "calico"}', file: '10-calico.conflist', message: /"plugins" is not a list/ },
    { name: 'a .conf without type', text: '{"name": "k8s"}', file: '10-bridge.conf', message: /10-bridge\.conf: neither a plugin list \("plugins"\) nor a plugin \("type"\)/ },
  ];
  for (const c of cases) {
    assert.throws(() => withMeshletPlugin(c.text, c.file, ENTRY), (err: unknown) => {
      assert.ok(err instanceof CniConfigError, c.name);
      assert.equal(err.code, 'MESHLET_CNI_CONFIG', c.name);
      assert.equal(err.file, c.file, c.name);
      assert.match(err.message, c.message, c.name);
      return true;
    });
  }
});

test('findPrimaryConfig picks the first config file in byte order, as the runtime does', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cni-conf-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  assert.equal(await findPrimaryConfig(join(dir, 'absent')), undefined, 'no directory yet');
  assert.equal(await findPrimaryConfig(dir), undefined, 'no config yet');

  await mkdir(join(dir, '00-meshlet.d'));
  await mkdir(join(dir, '01-dir.conflist'));
  for (const name of ['README', '05-old.conf.bak', '.05-tmp.conflist.123.tmp', '20-b.conf', '10-z.json', 'Z-upper.conf']) await writeFile(join(dir, name), '{}');
  assert.equal(await findPrimaryConfig(dir), join(dir, '10-z.json'), 'directories and other files are not configs');
  await writeFile(join(dir, '10-a.conflist'), '{}');
  assert.equal(await findPrimaryConfig(dir), join(dir, '10-a.conflist'));
  await writeFile(join(dir, '10-A.conf'), '{}');
  assert.equal(await findPrimaryConfig(dir), join(dir, '10-A.conf'), 'upper case sorts first, by byte');
});

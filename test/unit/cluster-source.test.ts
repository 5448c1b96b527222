// The file source as a ClusterSource: the snapshot within start(), synced,
// unreadable documents named by file and number, a replaced file delivered
// as a new full snapshot, and readOnce for one-shot readers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateFileSource } from '../../lib/cluster/sources/file.ts';
import { readOnce, type ClusterUpdate } from '../../lib/cluster/sources/source.ts';

async function stateFile(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-source-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'cluster.yaml');
}

test('an existing file is delivered within start(), with unreadable documents named', async (t) => {
  const file = await stateFile(t);
  await writeFile(file, 'kind: Namespace\nmetadata: {name: a}\n---\n- not a map\n');
  const source = new StateFileSource(file);
  t.after(() => source.stop());
  assert.deepEqual(source.status(), { name: `file ${file}`, synced: false });
  const updates: ClusterUpdate[] = [];
  await source.start((u) => updates.push(u));
  assert.equal(updates.length, 1);
  assert.deepEqual(updates[0]!.objects, [{ kind: 'Namespace', metadata: { name: 'a' } }]);
  assert.deepEqual(updates[0]!.unreadable, [{ object: `${file} document 2`, reason: 'not a YAML mapping' }]);
  assert.equal(typeof updates[0]!.changedAtMs, 'number');
  assert.equal(source.synced, true);
  assert.deepEqual(source.status(), { name: `file ${file}`, synced: true });
});

test('a missing file leaves the source unsynced until it appears, then the whole file arrives', async (t) => {
  const file = await stateFile(t);
  const source = new StateFileSource(file);
  t.after(() => source.stop());
  const next = Promise.withResolvers<ClusterUpdate>();
  await source.start((u) => next.resolve(u));
  assert.equal(source.synced, false);

  await writeFile(`${file}.tmp`, '{"kind":"Namespace","metadata":{"name":"a"}}\n---\n{"kind":"Namespace","metadata":{"name":"b"}}\n');
  await rename(`${file}.tmp`, file);
  const update = await next.promise;
  assert.deepEqual(update.objects.map((o) => (o.metadata as { name: string }).name), ['a', 'b']);
  assert.equal(source.synced, true);
});

test('readOnce returns what start delivered and stops the source; undefined when there is nothing yet', async (t) => {
  const file = await stateFile(t);
  assert.equal(await readOnce(new StateFileSource(file)), undefined);
  await writeFile(file, '{"kind":"Namespace","metadata":{"name":"a"}}\n');
  const update = await readOnce(new StateFileSource(file));
  assert.deepEqual(update?.objects, [{ kind: 'Namespace', metadata: { name: 'a' } }]);
});

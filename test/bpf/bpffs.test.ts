// The agent pins only on the node's bpffs and never mounts one of its own: in
// a container a private mount would vanish with it, and its successor would
// attach every program again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkOnBpffs } from '../../agent/bpf/bpffs.ts';
import { BpfError } from '../../lib/core/errors.ts';

const BPF_FS_MAGIC = 0xcafe4a11;
const mounted = await statfs('/sys/fs/bpf').then((s) => s.type === BPF_FS_MAGIC, () => false);
if (!mounted && process.env.CI === 'true') throw new Error('CI must not skip: bpffs is not mounted at /sys/fs/bpf');

test('a pin directory that is not on bpffs is refused with the fix, and nothing is created', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bpffs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(checkOnBpffs(join(dir, 'meshlet', 'node')), (err: unknown) => {
    assert.ok(err instanceof BpfError, String(err));
    assert.match(err.message, new RegExp(`${dir}/meshlet/node is not on a bpffs mount \\(${dir} is not bpffs\\): mount bpffs on the node at /sys/fs/bpf .*hostPath volume`));
    return true;
  });
  assert.deepEqual(await readdir(dir), []);
});

test('a pin directory below the node\'s bpffs, not yet made, passes', { skip: mounted ? false : 'bpffs is not mounted at /sys/fs/bpf' }, async () => {
  await checkOnBpffs(join('/sys/fs/bpf', `meshlet-test-${randomBytes(4).toString('hex')}`, 'node'));
});

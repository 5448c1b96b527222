// The sandbox's per-namespace hosts files change in place, in one write: a
// pod's bind mount keeps seeing the same file, and a shorter list leaves a
// comment where the old bytes were, never a cut line or an empty file.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { V1Service } from '@kubernetes/client-node';
import { HostsFiles, hostsText } from '../../sandbox/hosts.ts';

const service = (name: string, namespace: string, ip: string): V1Service => ({ metadata: { name, namespace }, spec: { clusterIPs: [ip] } });

test('an update rewrites a namespace\'s hosts file in place, padding a shorter list with a comment', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-hosts-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = new HostsFiles(dir);
  const many = [service('web', 'shop', '10.96.0.10'), service('meshlet-ca', 'meshlet-system', '10.96.0.11')];
  files.update(many);
  const { hosts } = files.filesFor('shop');
  const inode = (await stat(hosts)).ino;
  assert.equal(await readFile(hosts, 'utf8'), hostsText(many, 'shop'));

  const few = [service('web', 'shop', '10.96.0.10')];
  files.update(few);
  const text = await readFile(hosts, 'utf8');
  assert.equal((await stat(hosts)).ino, inode, 'the same file: bind mounts see it');
  assert.ok(text.startsWith(hostsText(few, 'shop')));
  assert.match(text.slice(hostsText(few, 'shop').length), /^# *\n$/, 'the rest is one comment line');
  assert.equal(text.length, hostsText(many, 'shop').length);

  files.update(many);
  assert.equal(await readFile(hosts, 'utf8'), hostsText(many, 'shop'), 'a longer list is written whole');
});

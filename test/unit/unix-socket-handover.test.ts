// A rolling update hands a node's Unix sockets (the ztunnel's admin and
// control sockets, the agent's admin socket) from the old process to the new
// one: the old one closing must not delete the socket its successor serves,
// and a process that exits as the socket's owner leaves no file behind.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { closeServer, listenUnix } from '../../lib/core/listen.ts';

async function socketDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-unix-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A server that answers every connection with its name. */
function named(name: string): Server {
  return createServer((socket) => socket.end(name));
}

function answer(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    createConnection(path).on('data', (d) => (text += String(d))).on('end', () => resolve(text)).on('error', reject);
  });
}

test('a successor\'s socket survives its predecessor closing', async (t) => {
  const path = join(await socketDir(t), 'admin.sock');
  const old = named('old');
  await listenUnix(old, path);
  assert.equal(await answer(path), 'old');
  const successor = named('new');
  await listenUnix(successor, path);
  t.after(() => closeServer(successor));
  assert.equal(await answer(path), 'new', 'new connections reach the successor at once');
  await closeServer(old);
  assert.equal(await answer(path), 'new', 'the old process exiting leaves the successor\'s socket in place');
});

test('the owner closing removes its socket; a stale file is replaced; the mode is set before the socket appears', async (t) => {
  const dir = await socketDir(t);
  const path = join(dir, 'control.sock');
  await writeFile(path, 'left by a crashed run');
  const server = named('only');
  await listenUnix(server, path, 0o600);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(await answer(path), 'only');
  await closeServer(server);
  assert.equal(existsSync(path), false);
  assert.deepEqual(await readdir(dir), [], 'no staging name is left behind');
});

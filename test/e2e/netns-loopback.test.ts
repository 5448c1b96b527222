// What `meshlet flows` reads the waypoints' admin APIs with: HTTP from the
// host to a port on 127.0.0.1 inside another network namespace (a pod's),
// through sandbox/api.ts, against a real namespace holding a real server
// bound to its loopback only (at the waypoint's admin port). Listed,
// streamed, bounded, refused, timed out, and as the CLI's L7 records with a
// warning for a waypoint it cannot reach; nothing (no socat, no namespace)
// left behind. Needs root; run it under the namespace lock.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import { test } from 'node:test';
import { followRequests, listRequests } from '../../cli/waypoint-requests.ts';
import { run } from '../../lib/core/exec.ts';
import { LoopbackUnreachableError, sandboxLoopbackGet, sandboxLoopbackStream } from '../../sandbox/api.ts';
import { eventually, leftovers, runName } from '../support/harness.ts';

const NAME = runName('lbk');
const NETNS = `${NAME}-pod`;
const PORT = 15000;

/** Answers like a waypoint's admin API, on the namespace's loopback only; /hang never answers, /big is 64 KiB. */
const SERVER = `
const http = require('node:http');
const followers = new Set();
http.createServer((req, res) => {
  if (req.url === '/requests') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 'a-1', path: '/x' }]));
  if (req.url === '/requests?follow=1') {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write('{"id":"a-2"}\\n{"id":');
    // The rest of a line split across writes, then one more whenever the test asks (a line on stdin).
    setImmediate(() => res.write('"a-3"}\\n'));
    followers.add(res);
    return;
  }
  if (req.url === '/ended') return res.writeHead(200).end('{"id":"e-1"}\\n{"id":"e-2"}');
  if (req.url === '/big') return res.writeHead(200).end('x'.repeat(65536));
  if (req.url === '/hang') return;
  res.writeHead(404).end('no such endpoint');
}).listen(${PORT}, '127.0.0.1', () => process.stdout.write('listening\\n'));
process.stdin.on('data', () => { for (const f of followers) f.write('{"id":"a-4"}\\n'); });
`;

/** Pids of the processes in network namespace `netns` (same namespace inode), as /proc shows them. */
async function processesIn(netns: string): Promise<number[]> {
  const { ino } = await stat(`/run/netns/${netns}`);
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ns = await stat(`/proc/${entry}/ns/net`).catch(() => undefined);
    if (ns?.ino === ino) pids.push(Number(entry));
  }
  return pids;
}

async function startServer(): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', NETNS, process.execPath, '-e', SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: string) => {
      out += c;
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the server in ${NETNS} exited with ${code}`)));
  });
  return child;
}

test('GET and follow a loopback port inside a pod\'s network namespace from the host', async (t) => {
  let server: ChildProcess | undefined;
  t.after(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGKILL');
      await once(server, 'exit');
    }
    await run('ip', ['netns', 'delete', NETNS], { allowFailure: true });
  });
  await run('ip', ['netns', 'add', NETNS]);
  await run('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
  server = await startServer();
  const target = { netns: NETNS, port: PORT };

  await t.test('a GET answers its status and body; a 404 is an answer, not an error', async () => {
    assert.deepEqual(await sandboxLoopbackGet(target, '/requests'), { status: 200, body: '[{"id":"a-1","path":"/x"}]' });
    assert.deepEqual(await sandboxLoopbackGet(target, '/nope'), { status: 404, body: 'no such endpoint' });
  });

  await t.test('a GET is bounded: a body over the limit and a server that never answers fail, naming the namespace', async () => {
    await assert.rejects(sandboxLoopbackGet(target, '/big', { maxBytes: 1024 }), (err: unknown) => err instanceof LoopbackUnreachableError && err.code === 'MESHLET_SANDBOX' && /GET \/big on 127\.0\.0\.1:15000 in network namespace lbk\w+-pod: the body exceeds 1024 bytes/.test(err.message));
    assert.equal((await sandboxLoopbackGet(target, '/big')).body.length, 65536);
    await assert.rejects(sandboxLoopbackGet(target, '/hang', { timeoutMs: 300 }), (err: unknown) => err instanceof LoopbackUnreachableError && /timed out/.test(err.message));
  });

  await t.test('nothing listening, or no such namespace: an error that says what to check', async () => {
    await assert.rejects(sandboxLoopbackGet({ netns: NETNS, port: PORT + 1 }, '/requests'), (err: unknown) => err instanceof LoopbackUnreachableError && /127\.0\.0\.1:15001 .*Connection refused.*is the process listening there/.test(err.message));
    await assert.rejects(sandboxLoopbackGet({ netns: `${NAME}-gone`, port: PORT }, '/requests'), (err: unknown) => err instanceof LoopbackUnreachableError && /network namespace lbk\w+-gone/.test(err.message));
  });

  await t.test('a stream hands over whole lines as they come, until the caller stops it', async () => {
    const abort = new AbortController();
    const lines: string[] = [];
    const following = sandboxLoopbackStream(target, '/requests?follow=1', (line) => lines.push(line), abort.signal);
    await eventually('the first lines', () => lines.length === 2);
    server!.stdin!.write('more\n');
    await eventually('a line written later', () => lines.length === 3);
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { id: string }).id), ['a-2', 'a-3', 'a-4']);
    abort.abort();
    await following;
  });

  await t.test('a stream the server ends resolves with its last line; one that is not a 200 fails', async () => {
    const lines: string[] = [];
    await sandboxLoopbackStream(target, '/ended', (line) => lines.push(line), new AbortController().signal);
    assert.deepEqual(lines, ['{"id":"e-1"}', '{"id":"e-2"}']);
    await assert.rejects(sandboxLoopbackStream(target, '/nope', () => undefined, new AbortController().signal), (err: unknown) => err instanceof LoopbackUnreachableError && /HTTP 404/.test(err.message));
  });

  await t.test('meshlet flows reads each waypoint\'s /requests on its admin port; one it cannot reach is a warning naming it', async () => {
    const reachable = { namespace: 'shop', name: 'waypoint', pod: 'waypoint-1', node: 'node-1', netns: NETNS };
    const gone = { namespace: 'shop', name: 'other', pod: 'other-1', node: 'node-2', netns: `${NAME}-gone` };
    const warnings: string[] = [];
    const records = await listRequests([reachable, gone], (w) => warnings.push(w));
    assert.deepEqual(records, [{ type: 'l7', waypoint: { namespace: 'shop', name: 'waypoint', pod: 'waypoint-1', node: 'node-1' }, id: 'a-1', path: '/x' }]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^cannot read the recent requests of waypoint shop\/other \(pod other-1 on node-2\): GET \/requests on 127\.0\.0\.1:15000 in network namespace lbk\w+-gone/);
    // Following: the reachable one streams, the other is warned about once, and aborting ends it all.
    const abort = new AbortController();
    const followed: string[] = [];
    const following = followRequests([reachable, gone], (r) => followed.push(`${r.type} ${r.waypoint.name} ${r.id}`), abort.signal, (w) => warnings.push(w));
    await eventually('the followed requests', () => followed.length === 2);
    assert.deepEqual(followed, ['l7 waypoint a-2', 'l7 waypoint a-3']);
    abort.abort();
    await following;
    assert.equal(warnings.length, 2);
    assert.match(warnings[1]!, /^stopped following the requests of waypoint shop\/other/);
  });

  await t.test('no relay outlives its request', async () => {
    // Each request's socat runs in the namespace: once the timed-out, refused and aborted ones are gone, the server is alone there.
    await eventually('the server alone in the namespace', async () => {
      const pids = await processesIn(NETNS);
      return (pids.length === 1 && pids[0] === server!.pid) || undefined;
    });
  });
});

test('the run leaves nothing behind', async () => {
  assert.deepEqual(await eventually('no leftovers', async () => {
    const left = await leftovers(NAME);
    return left.length === 0 ? left : undefined;
  }), []);
});

// Reading a tunnel's first bytes without losing them: HTTP verdicts put the
// bytes back in the stream for the server, TCP verdicts hand them over as
// `head`; a client that sends too little is decided by the (manual) clock,
// and one that half-closes or resets early by what it sent.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { H2_PREFACE } from '../../waypoint/downstream/first-bytes.ts';
import { sniff, type SniffResult } from '../../waypoint/downstream/sniff.ts';
import { ManualClock } from '../support/manual-clock.ts';

function watch(p: Promise<SniffResult>): { result: SniffResult | undefined } {
  const box: { result: SniffResult | undefined } = { result: undefined };
  void p.then((r) => (box.result = r));
  return box;
}

async function readAll(stream: PassThrough): Promise<string> {
  stream.end();
  let text = '';
  for await (const c of stream) text += c;
  return text;
}

test('a preface in pieces is waited for, then put back whole', async () => {
  const clock = new ManualClock(0);
  const stream = new PassThrough();
  const box = watch(sniff(stream, 'detect', 500, clock.scheduler));
  stream.write(H2_PREFACE.subarray(0, 7));
  await turn();
  assert.equal(box.result, undefined);
  stream.write(H2_PREFACE.subarray(7));
  await turn();
  assert.deepEqual(box.result, { kind: 'h2' });
  assert.equal(await readAll(stream), H2_PREFACE.toString('latin1'));
  assert.equal(clock.pending, 0, 'the timer is cleared');
});

test('an HTTP/1 request line is put back with what came after it', async () => {
  const clock = new ManualClock(0);
  const stream = new PassThrough();
  const box = watch(sniff(stream, 'detect', 500, clock.scheduler));
  stream.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await turn();
  assert.deepEqual(box.result, { kind: 'http1' });
  assert.equal(await readAll(stream), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
});

test('detect: too little by the timeout is TCP, the bytes handed over as head', async () => {
  const clock = new ManualClock(0);
  const stream = new PassThrough();
  const box = watch(sniff(stream, 'detect', 500, clock.scheduler));
  stream.write('GE');
  await turn();
  clock.advance(499);
  await turn();
  assert.equal(box.result, undefined);
  clock.advance(1);
  await turn();
  assert.deepEqual(box.result, { kind: 'tcp', why: 'sniff_timeout', head: Buffer.from('GE'), ended: false });
  stream.write('later');
  assert.equal(await readAll(stream), 'later', 'what follows stays in the stream');
});

test('a declared HTTP port: anything but the preface is HTTP/1 at once, and the timeout also means HTTP/1', async () => {
  const clock = new ManualClock(0);
  const s1 = new PassThrough();
  const b1 = watch(sniff(s1, 'http', 500, clock.scheduler));
  s1.write('\x16\x03\x01');
  await turn();
  assert.deepEqual(b1.result, { kind: 'http1' }, 'the HTTP/1 parser judges it (and answers 400)');
  const s2 = new PassThrough();
  const b2 = watch(sniff(s2, 'http', 500, clock.scheduler));
  s2.write('PR');
  await turn();
  clock.advance(500);
  await turn();
  assert.deepEqual(b2.result, { kind: 'http1' });
  assert.equal(await readAll(s2), 'PR');
});

test('detect: a client that half-closes early is TCP with what it sent; on a declared HTTP port nothing is served', async () => {
  const clock = new ManualClock(0);
  const s1 = new PassThrough();
  const b1 = watch(sniff(s1, 'detect', 500, clock.scheduler));
  s1.end('QUIT');
  await turn();
  await turn();
  assert.deepEqual(b1.result, { kind: 'tcp', why: 'not_http', head: Buffer.from('QUIT'), ended: true });
  const s2 = new PassThrough();
  const b2 = watch(sniff(s2, 'http', 500, clock.scheduler));
  s2.end();
  s2.resume();
  await turn();
  await turn();
  assert.deepEqual(b2.result, { kind: 'closed' });
});

test('a reset before any verdict is closed', async () => {
  const clock = new ManualClock(0);
  const stream = new PassThrough();
  const box = watch(sniff(stream, 'detect', 500, clock.scheduler));
  stream.destroy();
  await turn();
  assert.deepEqual(box.result, { kind: 'closed' });
  assert.equal(clock.pending, 0);
});

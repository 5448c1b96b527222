// The kubelet API's log reader on real files: --tail counts lines from the
// end (a final newline starts none, across read chunks), --limit-bytes
// stops early, and -f follows what is appended until the instance ends.
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { streamLog, type LogRequest } from '../../sandbox/kubelet/container-log.ts';

async function logFile(t: { after: (fn: () => Promise<void>) => void }, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-log-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, '0.log');
  await writeFile(file, text);
  return file;
}

async function read(file: string, request: Partial<LogRequest>, running = () => false): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => void (text += chunk.toString()));
  await streamLog({ file, running }, { follow: false, ...request }, out, new AbortController().signal, () => undefined);
  return text;
}

test('tailLines counts lines from the end, with or without a final newline, and 0 gives nothing', async (t) => {
  const lines = await logFile(t, 'a\nb\nc\n');
  assert.equal(await read(lines, { tailLines: 2 }), 'b\nc\n');
  assert.equal(await read(lines, { tailLines: 3 }), 'a\nb\nc\n');
  assert.equal(await read(lines, { tailLines: 10 }), 'a\nb\nc\n');
  assert.equal(await read(lines, { tailLines: 0 }), '');
  const unterminated = await logFile(t, 'a\nb\nc');
  assert.equal(await read(unterminated, { tailLines: 1 }), 'c');
  assert.equal(await read(unterminated, {}), 'a\nb\nc');
});

test('tailLines finds lines across read chunks', async (t) => {
  const all = Array.from({ length: 30_000 }, (_, i) => `line ${i}`);
  const file = await logFile(t, `${all.join('\n')}\n`);
  assert.equal(await read(file, { tailLines: 25_000 }), `${all.slice(5_000).join('\n')}\n`);
});

test('limitBytes stops after that many bytes, after the tail', async (t) => {
  const file = await logFile(t, 'first\nsecond\nthird\n');
  assert.equal(await read(file, { limitBytes: 3 }), 'fir');
  assert.equal(await read(file, { tailLines: 1, limitBytes: 3 }), 'thi');
});

test('follow streams what is appended and ends once the instance has ended and all it wrote is read', async (t) => {
  const file = await logFile(t, 'before\n');
  let running = true;
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => void (text += chunk.toString()));
  const done = streamLog({ file, running: () => running }, { follow: true }, out, new AbortController().signal, () => undefined);
  await appendFile(file, 'during\n');
  while (!text.includes('during')) await new Promise((r) => setTimeout(r, 50));
  await appendFile(file, 'last words\n');
  running = false;
  await done;
  assert.equal(text, 'before\nduring\nlast words\n');
});

test('a follow ends when its reader leaves', async (t) => {
  const file = await logFile(t, 'x\n');
  const left = new AbortController();
  const done = streamLog({ file, running: () => true }, { follow: true }, new PassThrough(), left.signal, () => undefined);
  left.abort();
  await done;
});

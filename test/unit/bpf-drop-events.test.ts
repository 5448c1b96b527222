// Decoding what `bpftool map event_pipe` (7.1) prints, arriving in arbitrary
// chunks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventPipeParser, type PipeRecord, watchDropEvents } from '../../agent/bpf/drop-watch.ts';
import { BpfError } from '../../lib/core/errors.ts';
import { type DropRecord } from '../../agent/bpf/codec.ts';
import { eventually } from '../support/eventually.ts';

// As bpftool printed them for real drops: 48 bytes of drop_event, 4 of perf padding.
const sample4 =
  '== @2195.358475186 CPU: 1 index: 1 =====\n' +
  'f6 2b 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n' +
  '00 00 ff ff 0a 4d 00 09  00 00 00 00 00 00 00 00\n' +
  '00 00 ff ff 0a 4d 02 02  79 a3 90 1f 02 00 01 00\n' +
  '00 00 00 00\n';
const record4: DropRecord = { cgroupId: 11254n, source: { ip: '10.77.0.9', port: 41849 }, destination: { ip: '10.77.2.2', port: 8080 }, reason: 'not_from_ztunnel' };
const sample6 =
  '== @2196.868721971 CPU: 1 index: 1 =====\n' +
  'f6 2b 00 00 00 00 00 00  fd 77 00 00 00 00 00 00\n' +
  '00 00 00 00 00 00 00 09  fd 77 00 02 00 00 00 00\n' +
  '00 00 00 00 00 00 00 02  6b 86 90 1f 0a 00 01 00\n' +
  '00 00 00 00\n';
const record6: DropRecord = { cgroupId: 11254n, source: { ip: 'fd77::9', port: 34411 }, destination: { ip: 'fd77:2::2', port: 8080 }, reason: 'not_from_ztunnel' };
const stream = `${sample4}lost 17 events\nunknown event type=3 size=8\n${sample6}`;
const expected: PipeRecord[] = [
  { kind: 'drop', record: record4 },
  { kind: 'lost', count: 17 },
  { kind: 'drop', record: record6 },
];

describe('drop event pipe', () => {
  test('decodes samples and losses at every chunk boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const parser = new EventPipeParser();
      assert.deepEqual([...parser.push(stream.slice(0, cut)), ...parser.push(stream.slice(cut))], expected, `cut at ${cut}`);
    }
  });

  test('a sample is out as soon as its 48 bytes are', () => {
    const lines = sample4.split('\n');
    const parser = new EventPipeParser();
    assert.deepEqual(parser.push(lines.slice(0, 4).join('\n') + '\n'), [{ kind: 'drop', record: record4 }]);
    assert.deepEqual(parser.push('00 00 00 00\n'), [], 'padding is skipped');
  });

  test('rejects short samples and unexpected output', () => {
    assert.throws(() => new EventPipeParser().push('== @1.1 CPU: 0 index: 0 =====\n01 02\nlost 1 events\n'), { code: 'MESHLET_BPF' });
    assert.throws(() => new EventPipeParser().push('Error: something\n'), { code: 'MESHLET_BPF' });
  });

  test('a reader that cannot run reports a BpfError once', async () => {
    const errors: BpfError[] = [];
    const watch = watchDropEvents('/nonexistent/meshlet/drop_events', () => assert.fail('no events expected'), (err) => errors.push(err));
    await eventually('the reader to report its failure', () => errors.length > 0);
    watch.stop();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof BpfError);
    assert.equal(errors[0].code, 'MESHLET_BPF');
    assert.equal(watch.lost, 0);
  });
});

// Decoding what `bpftool -j map event_pipe` (7.1) streams: an unterminated
// JSON array without newlines, arriving in arbitrary chunks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePipeRecord, JsonArraySplitter } from '../../agent/bpf/drop-watch.ts';
import { dropEventCodec, type DropRecord } from '../../agent/bpf/codec.ts';

const record: DropRecord = { cgroupId: 9202n, source: { ip: '10.99.0.2', port: 34198 }, destination: { ip: '10.99.0.1', port: 8080 }, reason: 'not_from_ztunnel' };
// As bpftool printed it for a real drop: 48 bytes of drop_event, 4 of perf padding.
const sample = `{"type":9,"cpu":1,"index":1,"timestamp":1694441949965,"data":[${[...dropEventCodec.encode(record), 0, 0, 0, 0].join(',')}]}`;
const lost = '{"type":2,"cpu":0,"index":0,"lost":{"id":5,"count":17}}';
const stream = `[${sample},${lost},${sample}`;

describe('drop event pipe', () => {
  test('splits the stream at every chunk boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const splitter = new JsonArraySplitter();
      const parts = [...splitter.push(stream.slice(0, cut)), ...splitter.push(stream.slice(cut)), ...splitter.push(']')];
      assert.deepEqual(parts, [sample, lost, sample], `cut at ${cut}`);
    }
  });

  test('a brace inside a string does not end an element', () => {
    const odd = '{"type":1,"note":"a}\\"{"}';
    assert.deepEqual(new JsonArraySplitter().push(`[${odd},${lost}`), [odd, lost]);
  });

  test('decodes samples, counts lost records, ignores other types', () => {
    assert.deepEqual(decodePipeRecord(JSON.parse(sample)), { kind: 'drop', record });
    assert.deepEqual(decodePipeRecord(JSON.parse(lost)), { kind: 'lost', count: 17 });
    assert.equal(decodePipeRecord({ type: 3, cpu: 0 }), null);
  });

  test('rejects malformed records', () => {
    assert.throws(() => decodePipeRecord({ cpu: 0 }), { code: 'MESHLET_BPF' });
    assert.throws(() => decodePipeRecord({ type: 9, data: [1, 2, 3] }), { code: 'MESHLET_BPF' });
    assert.throws(() => decodePipeRecord({ type: 9, data: new Array(48).fill(300) }), { code: 'MESHLET_BPF' });
    assert.throws(() => decodePipeRecord({ type: 2, lost: {} }), { code: 'MESHLET_BPF' });
  });
});

// The TypeScript codec of every map and of the drop event record against the
// compiled object's BTF, and encode/decode round trips.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../lib/core/exec.ts';
import {
  type Codec,
  dropEventCodec,
  flowKeyCodec,
  fromHexTokens,
  type Layout,
  MAP_CODECS,
  nodeConfigCodec,
  ORIG_DST_FLAGS,
  origDstCodec,
  podInfoCodec,
  portKeyCodec,
  portModeCodec,
  presentCodec,
  toHexArgs,
  u32Codec,
  u64Codec,
} from '../../agent/bpf/codec.ts';
import { buildBpf, OBJECT, toolchainMissing } from '../bpf/build.ts';

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  vars?: { type_id: number }[];
}

/** Map name → its key and value types, from the .maps section's BTF; and struct layouts by name. */
function btfLayouts(types: BtfType[]): { maps: Map<string, { key: Layout; value: Layout }>; structs: Map<string, Layout> } {
  const byId = new Map(types.map((t) => [t.id, t]));
  const get = (id: number | undefined): BtfType => {
    const t = id === undefined ? undefined : byId.get(id);
    assert.ok(t, `BTF type ${id} missing`);
    return t;
  };
  const sizeOf = (t: BtfType): number => (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE' ? sizeOf(get(t.type_id)) : (t.size ?? NaN));
  const layoutOf = (t: BtfType): Layout => {
    let body = t;
    while (body.kind === 'TYPEDEF') body = get(body.type_id);
    const members = Object.fromEntries((body.kind === 'STRUCT' ? (body.members ?? []) : []).map((m) => [m.name, m.bits_offset / 8]));
    return { cType: t.name, size: sizeOf(t), members };
  };
  const maps = types.find((t) => t.kind === 'DATASEC' && t.name === '.maps');
  assert.ok(maps?.vars, 'object has no .maps section');
  const structs = new Map(types.filter((t) => t.kind === 'STRUCT' && t.name !== '').map((t) => [t.name, layoutOf(t)]));
  const byMap = new Map(
    maps.vars.map((v) => {
      const mapVar = get(v.type_id);
      const def = get(mapVar.type_id);
      const member = (name: string): BtfType => get(get(def.members?.find((m) => m.name === name)?.type_id).type_id);
      return [mapVar.name, { key: layoutOf(member('key')), value: layoutOf(member('value')) }];
    }),
  );
  return { maps: byMap, structs };
}

describe('BPF map codec', () => {
  let btf: Map<string, { key: Layout; value: Layout }> | undefined;
  let structs: Map<string, Layout> | undefined;
  let skip: string | null = null;

  before(async () => {
    skip = await toolchainMissing();
    if (skip && process.env.CI === 'true') throw new Error(`CI must not skip: ${skip}`);
    if (skip) return;
    await buildBpf();
    const { stdout } = await run('bpftool', ['btf', 'dump', 'file', OBJECT, '-j']);
    ({ maps: btf, structs } = btfLayouts((JSON.parse(stdout) as { types: BtfType[] }).types));
  });

  test('the object defines exactly the maps the codec knows', (t) => {
    if (skip) return t.skip(skip);
    assert.deepEqual([...(btf?.keys() ?? [])].sort(), Object.keys(MAP_CODECS).sort());
  });

  for (const [name, codecs] of Object.entries(MAP_CODECS)) {
    for (const part of ['key', 'value'] as const) {
      test(`${name} ${part}: size and member offsets match BTF`, (t) => {
        if (skip) return t.skip(skip);
        const fromBtf = btf?.get(name)?.[part];
        assert.ok(fromBtf, `map ${name} not in the object`);
        const layout = codecs[part].layout;
        assert.deepEqual({ ...layout, members: { ...layout.members } }, fromBtf);
      });
    }
  }

  test('drop_event (perf record, not a map type): size and member offsets match BTF', (t) => {
    if (skip) return t.skip(skip);
    const layout = dropEventCodec.layout;
    assert.deepEqual({ ...layout, members: { ...layout.members } }, structs?.get('drop_event'));
  });

  // Expected bytes assume a little-endian host (x86-64, arm64).
  const roundTrip = <T>(codec: Codec<T>, value: T, hex?: string): void => {
    const bytes = codec.encode(value);
    assert.equal(bytes.length, codec.layout.size);
    if (hex !== undefined) assert.equal(toHexArgs(bytes).join(''), hex);
    assert.deepEqual(codec.decode(fromHexTokens(toHexArgs(bytes).map((b) => `0x${b}`))), value);
  };

  test('scalars', () => {
    roundTrip(u32Codec, 0, '00000000');
    roundTrip(u64Codec, 0x0102030405060708n, '0807060504030201');
    roundTrip(u64Codec, 0xffffffffffffffffn);
  });

  test('node_config', () => {
    const none = { inboundSourceIp4: null, inboundSourceIp6: null, probeSourceIp4: null, probeSourceIp6: null };
    roundTrip(
      nodeConfigCodec,
      { captureIp4: '10.0.0.1', captureIp6: 'fd00::1', outboundPort: 15001, inboundSourceIp4: '10.0.0.6', inboundSourceIp6: 'fd00::6', probeSourceIp4: '10.0.0.2', probeSourceIp6: 'fd00::2' },
      'fd000000000000000000000000000001' + '0a000001' + '993a' + '0000' +
        'fd000000000000000000000000000006' + 'fd000000000000000000000000000002' + '0a000006' + '0a000002',
    );
    roundTrip(nodeConfigCodec, { captureIp4: '10.0.0.1', captureIp6: null, outboundPort: 15001, ...none });
    assert.throws(() => nodeConfigCodec.encode({ captureIp4: '10.0.0.1', captureIp6: '::ffff:10.0.0.1', outboundPort: 1, ...none }), { code: 'MESHLET_BPF' });
    assert.throws(() => nodeConfigCodec.encode({ captureIp4: '10.0.0.1', captureIp6: null, outboundPort: 1, ...none, probeSourceIp6: '::ffff:10.0.0.2' }), { code: 'MESHLET_BPF' });
  });

  test('pods', () => {
    roundTrip(podInfoCodec, { flags: 1, ip4: null, ip6: null }, '01000000' + '00000000' + '00000000000000000000000000000000');
    roundTrip(podInfoCodec, { flags: 3, ip4: '10.0.1.5', ip6: 'fd00:1::5' }, '03000000' + '0a000105' + 'fd000001000000000000000000000005');
    roundTrip(podInfoCodec, { flags: 1, ip4: null, ip6: 'fd00:1::5' });
    assert.throws(() => podInfoCodec.encode({ flags: 1, ip4: null, ip6: '::ffff:10.0.1.5' }), { code: 'MESHLET_BPF' });
  });

  test('port_mode and probe_ports', () => {
    roundTrip(portKeyCodec, { cgroupId: 4242n, port: 8080 }, '9210000000000000' + '901f' + '000000000000');
    roundTrip(portModeCodec, 'STRICT', '01');
    roundTrip(portModeCodec, 'PERMISSIVE', '02');
    roundTrip(presentCodec, true, '01');
    assert.throws(() => portModeCodec.decode(Uint8Array.of(3)), { code: 'MESHLET_BPF' });
    assert.throws(() => portModeCodec.encode('DISABLE' as 'STRICT'), { code: 'MESHLET_BPF' });
  });

  test('drop_event', () => {
    roundTrip(
      dropEventCodec,
      { cgroupId: 7n, source: { ip: '10.0.0.9', port: 40000 }, destination: { ip: '10.0.2.2', port: 8080 }, reason: 'not_from_ztunnel' },
      '0700000000000000' + '00000000000000000000ffff0a000009' + '00000000000000000000ffff0a000202' + '409c' + '901f' + '0200' + '0100',
    );
    roundTrip(dropEventCodec, { cgroupId: 7n, source: { ip: 'fd00::9', port: 1 }, destination: { ip: 'fd00:2::2', port: 2 }, reason: 'unparsed_headers' });
    const bytes = dropEventCodec.encode({ cgroupId: 1n, source: { ip: 'fd00::9', port: 1 }, destination: { ip: 'fd00::2', port: 2 }, reason: 'not_from_ztunnel' });
    bytes[44] = 2; // AF_INET with IPv6 addresses
    assert.throws(() => dropEventCodec.decode(bytes), { code: 'MESHLET_BPF' });
    bytes[44] = 10;
    bytes[46] = 99;
    assert.throws(() => dropEventCodec.decode(bytes), { code: 'MESHLET_BPF' });
    assert.throws(() => dropEventCodec.encode({ cgroupId: 1n, source: { ip: '10.0.0.1', port: 1 }, destination: { ip: 'fd00::2', port: 2 }, reason: 'not_from_ztunnel' }), { code: 'MESHLET_BPF' });
  });

  test('excluded_ports', () => {
    roundTrip(portKeyCodec, { cgroupId: 4242n, port: 5432 }, '9210000000000000' + '3815' + '000000000000');
    assert.throws(() => portKeyCodec.encode({ cgroupId: 1n, port: 70000 }), { code: 'MESHLET_BPF' });
  });

  test('flow_dst and cookie_dst', () => {
    roundTrip(flowKeyCodec, { address: '10.1.2.3', port: 40000 }, '00000000000000000000ffff0a010203' + '409c' + '0000');
    roundTrip(flowKeyCodec, { address: 'fd00:1::2', port: 1 });
    roundTrip(origDstCodec, { address: '10.9.8.7', port: 8080, family: 4, flags: 0, cgroupId: 4242n }, '00000000000000000000ffff0a090807' + '901f' + '0200' + '00000000' + '9210000000000000');
    roundTrip(
      origDstCodec,
      { address: 'fd00:2::7', port: 443, family: 6, flags: ORIG_DST_FLAGS.sourceMismatch, cgroupId: 7n },
      'fd000002000000000000000000000007' + 'bb01' + '0a00' + '01000000' + '0700000000000000',
    );
    assert.throws(() => origDstCodec.encode({ address: 'fd00::1', port: 1, family: 4, flags: 0, cgroupId: 1n }), { code: 'MESHLET_BPF' });
  });

  test('decode rejects wrong sizes and bad hex', () => {
    assert.throws(() => flowKeyCodec.decode(new Uint8Array(19)), { code: 'MESHLET_BPF' });
    assert.throws(() => fromHexTokens(['0xzz']), { code: 'MESHLET_BPF' });
  });
});

// Byte layouts of every map key and value, mirroring bpf/map_*.h and
// bpf/orig_dst.h, and their conversion to and from the hex bytes bpftool takes
// and prints. Host-order fields follow this machine's byte order, as the
// kernel reads them; addresses stay in network order. test/unit/bpf-codec
// checks every layout against the compiled object's BTF.
import { endianness } from 'node:os';
import { BpfError } from '../errors.ts';
import { formatIp16, formatIp4, ip16Bytes, ip4Bytes, isV4Mapped, isZero } from './inet.ts';

/** A C type as BTF describes it: its name, size and member byte offsets. */
export interface Layout {
  cType: string;
  size: number;
  members: Readonly<Record<string, number>>;
}

export interface Codec<T> {
  layout: Layout;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

export interface NodeConfig {
  /** null: no IPv4 capture. */
  ztunnelIp4: string | null;
  /** null: no IPv6 capture. */
  ztunnelIp6: string | null;
  outboundPort: number;
}

export const POD_FLAGS = { captureOutbound: 1 } as const;

export interface PodInfo {
  flags: number;
}

export interface ExcludedPortKey {
  cgroupId: bigint;
  port: number;
}

/** One side of a connection; IPv4 as dotted text, also when v4-mapped. */
export interface Endpoint {
  address: string;
  port: number;
}

export interface OrigDst extends Endpoint {
  family: 4 | 6;
}

const LITTLE_ENDIAN = endianness() === 'LE';
const AF_INET = 2;
const AF_INET6 = 10;

const scalar = (cType: string, size: number): Layout => ({ cType, size, members: {} });

export const LAYOUTS = {
  u8: scalar('__u8', 1),
  u32: scalar('__u32', 4),
  u64: scalar('__u64', 8),
  nodeConfig: { cType: 'node_config', size: 24, members: { ztunnel_ip6: 0, ztunnel_ip4: 16, outbound_port: 20, pad: 22 } },
  podInfo: { cType: 'pod_info', size: 8, members: { flags: 0, pad: 4 } },
  excludedPortKey: { cType: 'excluded_port_key', size: 16, members: { cgroup_id: 0, port: 8, pad: 10 } },
  flowKey: { cType: 'flow_key', size: 20, members: { addr: 0, port: 16, pad: 18 } },
  origDst: { cType: 'orig_dst', size: 20, members: { addr: 0, port: 16, family: 18 } },
} as const satisfies Record<string, Layout>;

function alloc(layout: Layout): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(layout.size);
  return { bytes, view: new DataView(bytes.buffer) };
}

function view(layout: Layout, bytes: Uint8Array): DataView {
  if (bytes.length !== layout.size) {
    throw new BpfError(`${layout.cType}: expected ${layout.size} bytes, got ${bytes.length}`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new BpfError(`invalid port: ${port}`);
  return port;
}

export const u32Codec: Codec<number> = {
  layout: LAYOUTS.u32,
  encode(value) {
    const { bytes, view } = alloc(LAYOUTS.u32);
    view.setUint32(0, value, LITTLE_ENDIAN);
    return bytes;
  },
  decode: (bytes) => view(LAYOUTS.u32, bytes).getUint32(0, LITTLE_ENDIAN),
};

/** Cgroup ids and socket cookies. */
export const u64Codec: Codec<bigint> = {
  layout: LAYOUTS.u64,
  encode(value) {
    const { bytes, view } = alloc(LAYOUTS.u64);
    view.setBigUint64(0, value, LITTLE_ENDIAN);
    return bytes;
  },
  decode: (bytes) => view(LAYOUTS.u64, bytes).getBigUint64(0, LITTLE_ENDIAN),
};

/** excluded_ports values: present means excluded. */
export const excludedCodec: Codec<true> = {
  layout: LAYOUTS.u8,
  encode: () => Uint8Array.of(1),
  decode(bytes) {
    view(LAYOUTS.u8, bytes);
    return true;
  },
};

export const nodeConfigCodec: Codec<NodeConfig> = {
  layout: LAYOUTS.nodeConfig,
  encode(cfg) {
    const m = LAYOUTS.nodeConfig.members;
    const { bytes, view } = alloc(LAYOUTS.nodeConfig);
    if (cfg.ztunnelIp6 !== null) {
      const ip6 = ip16Bytes(cfg.ztunnelIp6);
      if (isV4Mapped(ip6)) throw new BpfError(`ztunnel IPv6 capture address must be IPv6: ${cfg.ztunnelIp6}`);
      bytes.set(ip6, m.ztunnel_ip6);
    }
    if (cfg.ztunnelIp4 !== null) bytes.set(ip4Bytes(cfg.ztunnelIp4), m.ztunnel_ip4);
    view.setUint16(m.outbound_port, checkPort(cfg.outboundPort), LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.nodeConfig.members;
    const v = view(LAYOUTS.nodeConfig, bytes);
    const ip6 = bytes.subarray(m.ztunnel_ip6, m.ztunnel_ip6 + 16);
    const ip4 = bytes.subarray(m.ztunnel_ip4, m.ztunnel_ip4 + 4);
    return {
      ztunnelIp4: isZero(ip4) ? null : formatIp4(ip4),
      ztunnelIp6: isZero(ip6) ? null : formatIp16(ip6),
      outboundPort: v.getUint16(m.outbound_port, LITTLE_ENDIAN),
    };
  },
};

export const podInfoCodec: Codec<PodInfo> = {
  layout: LAYOUTS.podInfo,
  encode(info) {
    const { bytes, view } = alloc(LAYOUTS.podInfo);
    view.setUint32(LAYOUTS.podInfo.members.flags, info.flags, LITTLE_ENDIAN);
    return bytes;
  },
  decode: (bytes) => ({ flags: view(LAYOUTS.podInfo, bytes).getUint32(LAYOUTS.podInfo.members.flags, LITTLE_ENDIAN) }),
};

export const excludedPortKeyCodec: Codec<ExcludedPortKey> = {
  layout: LAYOUTS.excludedPortKey,
  encode(key) {
    const m = LAYOUTS.excludedPortKey.members;
    const { bytes, view } = alloc(LAYOUTS.excludedPortKey);
    view.setBigUint64(m.cgroup_id, key.cgroupId, LITTLE_ENDIAN);
    view.setUint16(m.port, checkPort(key.port), LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.excludedPortKey.members;
    const v = view(LAYOUTS.excludedPortKey, bytes);
    return { cgroupId: v.getBigUint64(m.cgroup_id, LITTLE_ENDIAN), port: v.getUint16(m.port, LITTLE_ENDIAN) };
  },
};

export const flowKeyCodec: Codec<Endpoint> = {
  layout: LAYOUTS.flowKey,
  encode(key) {
    const m = LAYOUTS.flowKey.members;
    const { bytes, view } = alloc(LAYOUTS.flowKey);
    bytes.set(ip16Bytes(key.address), m.addr);
    view.setUint16(m.port, checkPort(key.port), LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.flowKey.members;
    const v = view(LAYOUTS.flowKey, bytes);
    return { address: formatIp16(bytes.subarray(m.addr, m.addr + 16)), port: v.getUint16(m.port, LITTLE_ENDIAN) };
  },
};

export const origDstCodec: Codec<OrigDst> = {
  layout: LAYOUTS.origDst,
  encode(dst) {
    const m = LAYOUTS.origDst.members;
    const { bytes, view } = alloc(LAYOUTS.origDst);
    const addr = ip16Bytes(dst.address);
    if ((dst.family === 4) !== isV4Mapped(addr)) throw new BpfError(`address ${dst.address} is not IPv${dst.family}`);
    bytes.set(addr, m.addr);
    view.setUint16(m.port, checkPort(dst.port), LITTLE_ENDIAN);
    view.setUint16(m.family, dst.family === 4 ? AF_INET : AF_INET6, LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.origDst.members;
    const v = view(LAYOUTS.origDst, bytes);
    const family = v.getUint16(m.family, LITTLE_ENDIAN);
    if (family !== AF_INET && family !== AF_INET6) throw new BpfError(`orig_dst: unknown address family ${family}`);
    return {
      address: formatIp16(bytes.subarray(m.addr, m.addr + 16)),
      port: v.getUint16(m.port, LITTLE_ENDIAN),
      family: family === AF_INET ? 4 : 6,
    };
  },
};

/** Key and value codec of every map the object defines, by map name. */
export const MAP_CODECS = {
  node_config: { key: u32Codec, value: nodeConfigCodec },
  pods: { key: u64Codec, value: podInfoCodec },
  excluded_ports: { key: excludedPortKeyCodec, value: excludedCodec },
  cookie_dst: { key: u64Codec, value: origDstCodec },
  flow_dst: { key: flowKeyCodec, value: origDstCodec },
} as const;

export type MapName = keyof typeof MAP_CODECS;

/** Bytes as bpftool's `hex` arguments: one two-digit token per byte. */
export function toHexArgs(bytes: Uint8Array): string[] {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0'));
}

/** Bytes from bpftool's JSON dump (`["0x01", …]`). */
export function fromHexTokens(tokens: readonly string[]): Uint8Array {
  return Uint8Array.from(tokens, (t) => {
    const n = Number.parseInt(t, 16);
    if (!/^(0x)?[0-9a-f]{1,2}$/i.test(t) || Number.isNaN(n)) throw new BpfError(`bad byte from bpftool: ${t}`);
    return n;
  });
}

// Byte layouts of every map key and value and of the drop event record,
// mirroring bpf/map_*.h, bpf/orig_dst.h and bpf/pod_port_key.h, and their conversion to and from the hex bytes bpftool takes
// and prints. Host-order fields follow this machine's byte order, as the
// kernel reads them; addresses stay in network order. test/unit/bpf-codec
// checks every layout against the compiled object's BTF.
import { endianness } from 'node:os';
import { BpfError } from '../../lib/core/errors.ts';
import type { InboundMode } from '../../lib/mesh/agent-status.ts';
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
  captureIp4: string | null;
  /** null: no IPv6 capture. */
  captureIp6: string | null;
  outboundPort: number;
  /** The ztunnel's source address towards local pods; null never matches. */
  inboundSourceIp4: string | null;
  inboundSourceIp6: string | null;
  /** Where kubelet probes come from, admitted on probe ports; null never matches. */
  probeSourceIp4: string | null;
  probeSourceIp6: string | null;
}

export const POD_FLAGS = { captureOutbound: 1, strictInbound: 2 } as const;

export interface PodInfo {
  flags: number;
  /** The pod's own addresses: a redirected connection from any other source is marked sourceMismatch. null: none. */
  ip4: string | null;
  ip6: string | null;
}

/** Key of excluded_ports, port_mode and probe_ports. */
export interface PodPortKey {
  cgroupId: bigint;
  port: number;
}
export type ExcludedPortKey = PodPortKey;

/** PORT_MODE_* in bpf/map_port_mode.h. */
const PORT_MODES: Readonly<Record<InboundMode, number>> = { STRICT: 1, PERMISSIVE: 2 };

export type DropReason = 'not_from_ztunnel' | 'unparsed_headers';
/** DROP_* in bpf/map_drop_events.h. */
const DROP_REASONS: Readonly<Record<DropReason, number>> = { not_from_ztunnel: 1, unparsed_headers: 2 };

/** A drop_events record: an inbound connection attempt the kernel dropped. */
export interface DropRecord {
  cgroupId: bigint;
  source: { ip: string; port: number };
  destination: { ip: string; port: number };
  reason: DropReason;
}

/** One side of a connection; IPv4 as dotted text, also when v4-mapped. */
export interface Endpoint {
  address: string;
  port: number;
}

/** ORIG_DST_F_* in bpf/orig_dst.h. */
export const ORIG_DST_FLAGS = {
  /** Set by sockops: the connection's source address is not one of the capturing pod's own (pods ip4/ip6). */
  sourceMismatch: 1,
} as const;

export interface OrigDst extends Endpoint {
  family: 4 | 6;
  /** ORIG_DST_FLAGS. */
  flags: number;
  /** The enrolled pod whose connect was captured. */
  cgroupId: bigint;
}

const LITTLE_ENDIAN = endianness() === 'LE';
const AF_INET = 2;
const AF_INET6 = 10;

const scalar = (cType: string, size: number): Layout => ({ cType, size, members: {} });

export const LAYOUTS = {
  u8: scalar('__u8', 1),
  u32: scalar('__u32', 4),
  u64: scalar('__u64', 8),
  nodeConfig: {
    cType: 'node_config',
    size: 64,
    members: { capture_ip6: 0, capture_ip4: 16, outbound_port: 20, pad: 22, inbound_source_ip6: 24, probe_source_ip6: 40, inbound_source_ip4: 56, probe_source_ip4: 60 },
  },
  podInfo: { cType: 'pod_info', size: 24, members: { flags: 0, ip4: 4, ip6: 8 } },
  podPortKey: { cType: 'pod_port_key', size: 16, members: { cgroup_id: 0, port: 8, pad: 10 } },
  flowKey: { cType: 'flow_key', size: 20, members: { addr: 0, port: 16, pad: 18 } },
  origDst: { cType: 'orig_dst', size: 32, members: { addr: 0, port: 16, family: 18, flags: 20, cgroup_id: 24 } },
  dropEvent: { cType: 'drop_event', size: 48, members: { cgroup_id: 0, src: 8, dst: 24, sport: 40, dport: 42, family: 44, reason: 46 } },
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

/** Enumerations cross as small integers; checked both ways, as callers may be untyped. */
function codeOf<N extends string>(table: Readonly<Record<N, number>>, name: N, what: string): number {
  const code = Object.hasOwn(table, name) ? table[name] : undefined;
  if (code === undefined) throw new BpfError(`invalid ${what}: ${String(name)}`);
  return code;
}

function nameOf<N extends string>(table: Readonly<Record<N, number>>, code: number, what: string): N {
  const name = (Object.keys(table) as N[]).find((n) => table[n] === code);
  if (name === undefined) throw new BpfError(`${what} ${code} unknown`);
  return name;
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

/** Values of set-like maps (excluded_ports, probe_ports): present means in the set. */
export const presentCodec: Codec<true> = {
  layout: LAYOUTS.u8,
  encode: () => Uint8Array.of(1),
  decode(bytes) {
    view(LAYOUTS.u8, bytes);
    return true;
  },
};

/** An IPv6 field of node_config: v4-mapped would never match an IPv6 packet. */
function setIp6(bytes: Uint8Array, offset: number, ip: string | null, what: string): void {
  if (ip === null) return;
  const ip6 = ip16Bytes(ip);
  if (isV4Mapped(ip6)) throw new BpfError(`${what} must be IPv6: ${ip}`);
  bytes.set(ip6, offset);
}

function setIp4(bytes: Uint8Array, offset: number, ip: string | null): void {
  if (ip !== null) bytes.set(ip4Bytes(ip), offset);
}

function getIp6(bytes: Uint8Array, offset: number): string | null {
  const ip6 = bytes.subarray(offset, offset + 16);
  return isZero(ip6) ? null : formatIp16(ip6);
}

function getIp4(bytes: Uint8Array, offset: number): string | null {
  const ip4 = bytes.subarray(offset, offset + 4);
  return isZero(ip4) ? null : formatIp4(ip4);
}

export const nodeConfigCodec: Codec<NodeConfig> = {
  layout: LAYOUTS.nodeConfig,
  encode(cfg) {
    const m = LAYOUTS.nodeConfig.members;
    const { bytes, view } = alloc(LAYOUTS.nodeConfig);
    setIp6(bytes, m.capture_ip6, cfg.captureIp6, 'IPv6 capture address');
    setIp4(bytes, m.capture_ip4, cfg.captureIp4);
    view.setUint16(m.outbound_port, checkPort(cfg.outboundPort), LITTLE_ENDIAN);
    setIp6(bytes, m.inbound_source_ip6, cfg.inboundSourceIp6, 'inbound source IPv6 address');
    setIp6(bytes, m.probe_source_ip6, cfg.probeSourceIp6, 'probe source IPv6 address');
    setIp4(bytes, m.inbound_source_ip4, cfg.inboundSourceIp4);
    setIp4(bytes, m.probe_source_ip4, cfg.probeSourceIp4);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.nodeConfig.members;
    const v = view(LAYOUTS.nodeConfig, bytes);
    return {
      captureIp4: getIp4(bytes, m.capture_ip4),
      captureIp6: getIp6(bytes, m.capture_ip6),
      outboundPort: v.getUint16(m.outbound_port, LITTLE_ENDIAN),
      inboundSourceIp4: getIp4(bytes, m.inbound_source_ip4),
      inboundSourceIp6: getIp6(bytes, m.inbound_source_ip6),
      probeSourceIp4: getIp4(bytes, m.probe_source_ip4),
      probeSourceIp6: getIp6(bytes, m.probe_source_ip6),
    };
  },
};

export const podInfoCodec: Codec<PodInfo> = {
  layout: LAYOUTS.podInfo,
  encode(info) {
    const m = LAYOUTS.podInfo.members;
    const { bytes, view } = alloc(LAYOUTS.podInfo);
    view.setUint32(m.flags, info.flags, LITTLE_ENDIAN);
    setIp4(bytes, m.ip4, info.ip4);
    setIp6(bytes, m.ip6, info.ip6, 'pod IPv6 address');
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.podInfo.members;
    return { flags: view(LAYOUTS.podInfo, bytes).getUint32(m.flags, LITTLE_ENDIAN), ip4: getIp4(bytes, m.ip4), ip6: getIp6(bytes, m.ip6) };
  },
};

/** The key of excluded_ports, port_mode and probe_ports. */
export const portKeyCodec: Codec<PodPortKey> = {
  layout: LAYOUTS.podPortKey,
  encode(key) {
    const { bytes, view } = alloc(LAYOUTS.podPortKey);
    view.setBigUint64(LAYOUTS.podPortKey.members.cgroup_id, key.cgroupId, LITTLE_ENDIAN);
    view.setUint16(LAYOUTS.podPortKey.members.port, checkPort(key.port), LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const v = view(LAYOUTS.podPortKey, bytes);
    return { cgroupId: v.getBigUint64(LAYOUTS.podPortKey.members.cgroup_id, LITTLE_ENDIAN), port: v.getUint16(LAYOUTS.podPortKey.members.port, LITTLE_ENDIAN) };
  },
};

/** port_mode values. */
export const portModeCodec: Codec<InboundMode> = {
  layout: LAYOUTS.u8,
  encode(mode) {
    return Uint8Array.of(codeOf(PORT_MODES, mode, 'inbound mode'));
  },
  decode: (bytes) => nameOf(PORT_MODES, view(LAYOUTS.u8, bytes).getUint8(0), 'port_mode: mode'),
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
    view.setUint32(m.flags, dst.flags, LITTLE_ENDIAN);
    view.setBigUint64(m.cgroup_id, dst.cgroupId, LITTLE_ENDIAN);
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
      flags: v.getUint32(m.flags, LITTLE_ENDIAN),
      cgroupId: v.getBigUint64(m.cgroup_id, LITTLE_ENDIAN),
    };
  },
};

export const dropEventCodec: Codec<DropRecord> = {
  layout: LAYOUTS.dropEvent,
  encode(e) {
    const m = LAYOUTS.dropEvent.members;
    const { bytes, view } = alloc(LAYOUTS.dropEvent);
    const src = ip16Bytes(e.source.ip);
    const dst = ip16Bytes(e.destination.ip);
    if (isV4Mapped(src) !== isV4Mapped(dst)) throw new BpfError(`drop event mixes address families: ${e.source.ip} → ${e.destination.ip}`);
    view.setBigUint64(m.cgroup_id, e.cgroupId, LITTLE_ENDIAN);
    bytes.set(src, m.src);
    bytes.set(dst, m.dst);
    view.setUint16(m.sport, checkPort(e.source.port), LITTLE_ENDIAN);
    view.setUint16(m.dport, checkPort(e.destination.port), LITTLE_ENDIAN);
    view.setUint16(m.family, isV4Mapped(src) ? AF_INET : AF_INET6, LITTLE_ENDIAN);
    view.setUint16(m.reason, codeOf(DROP_REASONS, e.reason, 'drop reason'), LITTLE_ENDIAN);
    return bytes;
  },
  decode(bytes) {
    const m = LAYOUTS.dropEvent.members;
    const v = view(LAYOUTS.dropEvent, bytes);
    const family = v.getUint16(m.family, LITTLE_ENDIAN);
    const src = bytes.subarray(m.src, m.src + 16);
    const dst = bytes.subarray(m.dst, m.dst + 16);
    if ((family !== AF_INET && family !== AF_INET6) || (family === AF_INET) !== isV4Mapped(src) || isV4Mapped(src) !== isV4Mapped(dst)) {
      throw new BpfError(`drop_event: family ${family} does not match its addresses`);
    }
    const reason = nameOf(DROP_REASONS, v.getUint16(m.reason, LITTLE_ENDIAN), 'drop_event: reason');
    return {
      cgroupId: v.getBigUint64(m.cgroup_id, LITTLE_ENDIAN),
      source: { ip: formatIp16(src), port: v.getUint16(m.sport, LITTLE_ENDIAN) },
      destination: { ip: formatIp16(dst), port: v.getUint16(m.dport, LITTLE_ENDIAN) },
      reason,
    };
  },
};

/** Key and value codec of every map the object defines, by map name. */
export const MAP_CODECS = {
  node_config: { key: u32Codec, value: nodeConfigCodec },
  pods: { key: u64Codec, value: podInfoCodec },
  excluded_ports: { key: portKeyCodec, value: presentCodec },
  cookie_dst: { key: u64Codec, value: origDstCodec },
  flow_dst: { key: flowKeyCodec, value: origDstCodec },
  port_mode: { key: portKeyCodec, value: portModeCodec },
  probe_ports: { key: portKeyCodec, value: presentCodec },
  drop_count: { key: u64Codec, value: u64Codec },
  /** Perf event fds by CPU: read with event_pipe, never dumped. */
  drop_events: { key: u32Codec, value: u32Codec },
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

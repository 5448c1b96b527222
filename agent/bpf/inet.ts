// IP addresses as the BPF maps hold them: 16 bytes in network order, IPv4 as
// v4-mapped IPv6 (::ffff:a.b.c.d), so one key layout serves both families.
import { isIPv4, isIPv6 } from 'node:net';
import { BpfError } from '../../lib/core/errors.ts';

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

export function ip4Bytes(ip: string): Uint8Array {
  if (!isIPv4(ip)) throw new BpfError(`not an IPv4 address: ${ip}`);
  return Uint8Array.from(ip.split('.').map(Number));
}

/** Any IPv4 or IPv6 address as 16 bytes; IPv4 becomes v4-mapped. */
export function ip16Bytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from([...V4_MAPPED_PREFIX, ...ip4Bytes(ip)]);
  if (!isIPv6(ip)) throw new BpfError(`not an IP address: ${ip}`);
  const zone = ip.indexOf('%');
  const text = zone === -1 ? ip : ip.slice(0, zone);
  const [head = '', tail] = text.split('::') as [string, string | undefined];
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = ip4Bytes(piece);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(Number.parseInt(piece, 16));
      }
    }
    return out;
  };
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const words = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

export function isV4Mapped(bytes: Uint8Array): boolean {
  return V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b);
}

export function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

export function formatIp4(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join('.');
}

/** 16 bytes back to text: v4-mapped as a.b.c.d, IPv6 in the RFC 5952 form Node reports. */
export function formatIp16(bytes: Uint8Array): string {
  if (isV4Mapped(bytes)) return formatIp4(bytes.subarray(12));
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // The WHATWG URL serializer compresses the longest zero run, as RFC 5952 asks.
  return new URL(`http://[${words.map((w) => w.toString(16)).join(':')}]`).hostname.slice(1, -1);
}

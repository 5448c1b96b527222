// A small, strict DER reader for the few structures meshlet reads itself
// (PKCS#10 requests, lib/identity/pkcs10.ts): one TLV at a time, every length
// checked against the buffer, no recursion, so no input makes it throw or
// run long. Readers return undefined for anything that is not DER.

export interface Tlv {
  /** The identifier octet: class, constructed bit and tag number (low-tag-number form only). */
  tag: number;
  /** The contents octets. */
  value: Buffer;
  /** The whole encoding, identifier and length octets included (what a signature covers). */
  der: Buffer;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** The identifier octet of context-specific tag [n]. */
export const contextTag = (n: number, constructed: boolean): number => 0x80 | (constructed ? 0x20 : 0) | n;

/** Lengths beyond 4 octets would describe more than any buffer holds. */
const MAX_LENGTH_OCTETS = 4;

/** The TLV at `offset`, or undefined if what is there is not a complete DER TLV inside `buf`. */
export function readTlv(buf: Buffer, offset = 0): Tlv | undefined {
  if (offset < 0 || offset + 2 > buf.length) return undefined;
  const tag = buf[offset]!;
  // High-tag-number form: nothing meshlet reads uses it.
  if ((tag & 0x1f) === 0x1f) return undefined;
  const first = buf[offset + 1]!;
  let length = first;
  let header = 2;
  if (first & 0x80) {
    const octets = first & 0x7f;
    // 0x80 is BER's indefinite length, never DER.
    if (octets === 0 || octets > MAX_LENGTH_OCTETS || offset + 2 + octets > buf.length) return undefined;
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + buf[offset + 2 + i]!;
    header += octets;
  }
  const end = offset + header + length;
  if (end > buf.length) return undefined;
  return { tag, value: buf.subarray(offset + header, end), der: buf.subarray(offset, end) };
}

/** The one TLV that is all of `buf`, with tag `tag` if given. */
export function readWhole(buf: Buffer, tag?: number): Tlv | undefined {
  const tlv = readTlv(buf);
  if (!tlv || tlv.der.length !== buf.length || (tag !== undefined && tlv.tag !== tag)) return undefined;
  return tlv;
}

/** The TLVs that exactly fill `contents` (a constructed value's contents octets), or undefined. */
export function readChildren(contents: Buffer): Tlv[] | undefined {
  const children: Tlv[] = [];
  for (let offset = 0; offset < contents.length;) {
    const tlv = readTlv(contents, offset);
    if (!tlv) return undefined;
    children.push(tlv);
    offset += tlv.der.length;
  }
  return children;
}

/** The children of a constructed TLV with tag `tag`, or undefined. */
export function childrenOf(tlv: Tlv | undefined, tag: number): Tlv[] | undefined {
  return tlv && tlv.tag === tag ? readChildren(tlv.value) : undefined;
}

/** An OBJECT IDENTIFIER's dotted form, or undefined if `tlv` is not one. */
export function oidOf(tlv: Tlv | undefined): string | undefined {
  if (!tlv || tlv.tag !== TAG.OID || tlv.value.length === 0) return undefined;
  const arcs: number[] = [];
  let arc = 0;
  let octets = 0;
  for (const byte of tlv.value) {
    // A leading 0x80 pads an arc; more than 7 octets would pass Number's safe integers.
    if ((octets === 0 && byte === 0x80) || ++octets > 7) return undefined;
    arc = arc * 128 + (byte & 0x7f);
    if (byte & 0x80) continue;
    arcs.push(arc);
    arc = 0;
    octets = 0;
  }
  if (octets !== 0) return undefined;
  const head = arcs.shift()!;
  const top = Math.min(2, Math.floor(head / 40));
  return [top, head - top * 40, ...arcs].join('.');
}

/**
 * A non-negative INTEGER's magnitude without leading zero octets (empty for
 * zero), or undefined if `tlv` is not an INTEGER or is negative.
 */
export function unsignedOf(tlv: Tlv | undefined): Buffer | undefined {
  if (!tlv || tlv.tag !== TAG.INTEGER || tlv.value.length === 0 || (tlv.value[0]! & 0x80) !== 0) return undefined;
  let start = 0;
  while (start < tlv.value.length && tlv.value[start] === 0) start++;
  return tlv.value.subarray(start);
}

/** How many bits a magnitude from unsignedOf spans. */
export function bitLength(magnitude: Buffer): number {
  if (magnitude.length === 0) return 0;
  return (magnitude.length - 1) * 8 + (32 - Math.clz32(magnitude[0]!));
}

/** A BIT STRING's bits as octets, if it has no unused bits (keys and signatures never do). */
export function octetsOfBitString(tlv: Tlv | undefined): Buffer | undefined {
  if (!tlv || tlv.tag !== TAG.BIT_STRING || tlv.value.length === 0 || tlv.value[0] !== 0) return undefined;
  return tlv.value.subarray(1);
}

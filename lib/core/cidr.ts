// Address ranges as the agent checks who owns an address: the cluster's
// Service range, a node's pod ranges, and the addresses no pod may have.
import { canonicalIp, isV6 } from './ip.ts';

export interface Cidr {
  /** Canonical `address/prefix`, host bits as written. */
  text: string;
  family: 4 | 6;
}

/** `address/prefix` with a canonical IP and a prefix the family allows, or undefined. A bare address is not a range here. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = canonicalIp(text.slice(0, slash));
  const bits = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,3}$/.test(bits)) return undefined;
  const family = isV6(address) ? 6 : 4;
  if (Number(bits) > (family === 4 ? 32 : 128)) return undefined;
  return { text: `${address}/${Number(bits)}`, family };
}

/** An address as one number: 32 bits for IPv4, 128 for IPv6 (its canonical form). */
function addressBits(ip: string): { family: 4 | 6; bits: bigint } {
  if (!isV6(ip)) return { family: 4, bits: BigInt(ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0)) };
  // Canonical IPv6 has at most one "::"; an embedded IPv4 tail counts as two groups.
  const [head = '', tail] = ip.split('::');
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? v4Groups(g) : [parseInt(g, 16)])));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  return { family: 6, bits: all.reduce((n, g) => (n << 16n) | BigInt(g), 0n) };
}

function v4Groups(dotted: string): number[] {
  const [a = 0, b = 0, c = 0, d = 0] = dotted.split('.').map(Number);
  return [a * 256 + b, c * 256 + d];
}

/**
 * A set of ranges; `has` takes canonical addresses. Compares prefixes itself
 * rather than through node:net's BlockList, which builds a SocketAddress per
 * check: the agent asks for every pod address on every update.
 */
export class CidrSet {
  readonly cidrs: readonly Cidr[];
  readonly #ranges: { family: 4 | 6; shift: bigint; prefix: bigint }[];

  constructor(cidrs: readonly Cidr[]) {
    this.cidrs = cidrs;
    this.#ranges = cidrs.map((c) => {
      const [address, bits] = c.text.split('/') as [string, string];
      const shift = BigInt((c.family === 4 ? 32 : 128) - Number(bits));
      return { family: c.family, shift, prefix: addressBits(address).bits >> shift };
    });
  }

  get size(): number {
    return this.cidrs.length;
  }

  has(ip: string): boolean {
    return this.rangeOf(ip) !== undefined;
  }

  /** The first range that holds `ip`. */
  rangeOf(ip: string): Cidr | undefined {
    const { family, bits } = addressBits(ip);
    const i = this.#ranges.findIndex((r) => r.family === family && bits >> r.shift === r.prefix);
    return i < 0 ? undefined : this.cidrs[i];
  }

  toString(): string {
    return this.cidrs.map((c) => c.text).join(',');
  }
}

/** Ranges that are never one pod's own address on a network: each a host's own, or not unicast. */
const NOT_A_POD_ADDRESS: readonly [string, string][] = [
  ['0.0.0.0/8', 'is "this network" (unspecified)'],
  ['127.0.0.0/8', 'is loopback: every host\'s own'],
  ['169.254.0.0/16', 'is link-local'],
  ['224.0.0.0/4', 'is multicast'],
  ['240.0.0.0/4', 'is reserved (or broadcast)'],
  ['::/128', 'is unspecified'],
  ['::1/128', 'is loopback: every host\'s own'],
  ['fe80::/10', 'is link-local'],
  ['ff00::/8', 'is multicast'],
];

const SPECIAL = new CidrSet(NOT_A_POD_ADDRESS.map(([cidr]) => parseCidr(cidr)!));
const WHY = new Map(NOT_A_POD_ADDRESS);

/** Why canonical `ip` can be no pod's address, or undefined. */
export function specialAddressProblem(ip: string): string | undefined {
  const range = SPECIAL.rangeOf(ip);
  return range && WHY.get(range.text);
}

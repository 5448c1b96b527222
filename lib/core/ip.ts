// IP literals as the data path compares them: one canonical spelling per
// address, so a lookup by `socket.remoteAddress` finds what the agent sent.
import { isIPv4, isIPv6 } from 'node:net';
import type { Endpoint } from '../telemetry/flow.ts';

const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * Canonical form of an IP literal (IPv6 lower-case and compressed, IPv4-mapped
 * IPv6 as IPv4), or undefined if it is not one. A zone (`fe80::1%eth0`) names
 * an interface of one host, never a pod's address, so it is not one either.
 */
export function canonicalIp(text: string): string | undefined {
  if (isIPv4(text)) return text;
  if (!isIPv6(text) || text.includes('%')) return undefined;
  const mapped = V4_MAPPED.exec(text);
  if (mapped) return mapped[1];
  // The WHATWG URL parser serialises IPv6 hosts in RFC 5952 form.
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

export const isV6 = (ip: string): boolean => ip.includes(':');

/** `ip:port`, with IPv6 in brackets (HTTP authority, RFC 7239 node). */
export const hostPort = (ip: string, port: number): string => (isV6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`);

/** A TCP/UDP port number: an integer from 1 to 65535. */
export const isPort = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 65535;

/** Parses `ip:port` / `[ip6]:port` with an IP literal (no names) and a non-zero port. */
export function parseHostPort(text: string): Endpoint | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const bracketed = m[1] !== undefined;
  const ip = canonicalIp(m[1] ?? m[2]);
  const port = Number(m[3]);
  if (ip === undefined || isV6(ip) !== bracketed || !isPort(port)) return undefined;
  return { ip, port };
}

/** A socket's address pair as an Endpoint, if it still has one (a socket closed early has none). */
export function endpointOf(address: string | undefined, port: number | undefined): Endpoint | undefined {
  if (address === undefined || port === undefined) return undefined;
  const ip = canonicalIp(address);
  return ip === undefined ? undefined : { ip, port };
}

/**
 * endpointOf with an IPv6 zone dropped, for a socket a pod connected from its
 * link-local address, which Node reports with its interface (fe80::1%veth0):
 * the address alone is what the kernel's capture record and mesh state speak
 * of, so it is looked up, and refused, as such.
 */
export function endpointWithoutZone(address: string | undefined, port: number | undefined): Endpoint | undefined {
  return endpointOf(address?.replace(/%.*$/, ''), port);
}

// Address allocation: pod IPs from a node's pod CIDRs, Service ClusterIPs
// from 10.96.0.0/16 (and fd00:96::/112 for dual-stack Services). The lowest
// free address wins, so addresses are predictable in a fresh sandbox.
import { isIPv4, isIPv6 } from 'node:net';
import type { SandboxNodeInfo } from './info.ts';
import { LAST_POD_HOST, podAddresses } from './layout.ts';

export const SERVICE_CIDR = '10.96.0.0/16';
export const SERVICE_CIDR6 = 'fd00:96::/112';
// Kubernetes keeps .1 for the API server and .10 for DNS; start after them.
const FIRST_SERVICE_HOST = 11;
const LAST_SERVICE_HOST = 65_534;

export function allocatePodAddresses(node: SandboxNodeInfo, used: ReadonlySet<string>): { ip: string; ip6?: string } | undefined {
  for (let host = 2; host <= LAST_POD_HOST; host++) {
    const addrs = podAddresses(node, host);
    if (!used.has(addrs.ip) && (addrs.ip6 === undefined || !used.has(addrs.ip6))) return addrs;
  }
  return undefined;
}

export function allocateClusterIp(family: 4 | 6, used: ReadonlySet<string>): string | undefined {
  for (let host = FIRST_SERVICE_HOST; host <= LAST_SERVICE_HOST; host++) {
    const ip = family === 4 ? `10.96.${host >> 8}.${host & 255}` : `fd00:96::${host.toString(16)}`;
    if (!used.has(ip)) return ip;
  }
  return undefined;
}

export const ipFamily = (ip: string): 4 | 6 | undefined => (isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : undefined);

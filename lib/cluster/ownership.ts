// Who may claim an address: a pod only one its node hands out, a Service
// only one of the cluster's Service range. Anything else would let one
// object take traffic meant for another (a ClusterIP that is a pod's IP), or
// point the mesh at a host itself (127.0.0.1 as a pod IP, a node's address).
import { CidrSet, specialAddressProblem, type Cidr } from '../core/cidr.ts';

/** Stable names of the ownership rules, as status shows them. */
export type OwnershipRule =
  | 'pod-ip-not-unicast'
  | 'pod-ip-is-node-address'
  | 'pod-ip-is-mesh-address'
  | 'pod-ip-in-service-cidr'
  | 'pod-ip-outside-node-cidr'
  | 'vip-not-unicast'
  | 'vip-outside-service-cidr'
  | 'vip-is-node-address';

export interface OwnershipProblem {
  rule: OwnershipRule;
  reason: string;
}

/** What the addresses of one update belong to. */
export interface AddressOwners {
  /** The cluster's Service ranges; undefined: not known, so VIPs are not checked against them. */
  serviceCidrs: CidrSet | undefined;
  /** Every known node's addresses, to the node. */
  nodeAddresses: ReadonlyMap<string, string>;
  /** Per node that declares them (spec.podCIDRs), its pod ranges. */
  podCidrs: ReadonlyMap<string, CidrSet>;
  /** This node's mesh addresses: the ztunnel's capture and inbound source addresses, the probe source. */
  meshAddresses: ReadonlySet<string>;
}

export function addressOwners(
  nodes: readonly { name: string; addresses: readonly string[]; podCidrs: readonly Cidr[] }[],
  serviceCidrs: readonly Cidr[] | undefined,
  meshAddresses: readonly string[],
): AddressOwners {
  const nodeAddresses = new Map<string, string>();
  const podCidrs = new Map<string, CidrSet>();
  for (const n of nodes) {
    for (const ip of n.addresses) if (!nodeAddresses.has(ip)) nodeAddresses.set(ip, n.name);
    if (n.podCidrs.length > 0) podCidrs.set(n.name, new CidrSet(n.podCidrs));
  }
  return { serviceCidrs: serviceCidrs && new CidrSet(serviceCidrs), nodeAddresses, podCidrs, meshAddresses: new Set(meshAddresses) };
}

/**
 * Why pod IP `ip` (canonical) on node `node` is not the pod's to claim, or
 * undefined. A node that declares no pod ranges (its CNI allocates addresses
 * itself) is not checked on that rule; every other rule still holds.
 */
export function podAddressProblem(ip: string, node: string, owners: AddressOwners): OwnershipProblem | undefined {
  const special = specialAddressProblem(ip);
  if (special) return { rule: 'pod-ip-not-unicast', reason: `pod IP ${ip} ${special}, never a pod's own address` };
  const nodeOwner = owners.nodeAddresses.get(ip);
  if (nodeOwner !== undefined) return { rule: 'pod-ip-is-node-address', reason: `pod IP ${ip} is node ${nodeOwner}'s address, not a pod's (a hostNetwork pod is never a workload)` };
  if (owners.meshAddresses.has(ip)) return { rule: 'pod-ip-is-mesh-address', reason: `pod IP ${ip} is one of this node's mesh addresses (the ztunnel's capture or inbound source address, or the probe source)` };
  if (owners.serviceCidrs?.has(ip)) return { rule: 'pod-ip-in-service-cidr', reason: `pod IP ${ip} lies in the Service range ${owners.serviceCidrs.toString()}, whose addresses are Services'` };
  const ranges = owners.podCidrs.get(node);
  if (ranges && !ranges.has(ip)) return { rule: 'pod-ip-outside-node-cidr', reason: `pod IP ${ip} is outside node ${node}'s pod CIDRs ${ranges.toString()} (spec.podCIDRs)` };
  return undefined;
}

/** Why Service VIP `vip` (canonical) is not the Service's to claim, or undefined. That it is no workload's IP is a contradiction between objects (mesh/consistency.ts). */
export function vipProblem(vip: string, owners: AddressOwners): OwnershipProblem | undefined {
  const special = specialAddressProblem(vip);
  if (special) return { rule: 'vip-not-unicast', reason: `ClusterIP ${vip} ${special}, never a Service's` };
  if (owners.serviceCidrs && owners.serviceCidrs.size > 0 && !owners.serviceCidrs.has(vip)) {
    return { rule: 'vip-outside-service-cidr', reason: `ClusterIP ${vip} is outside the cluster's Service range ${owners.serviceCidrs.toString()} (--service-cidrs)` };
  }
  const nodeOwner = owners.nodeAddresses.get(vip);
  if (nodeOwner !== undefined) return { rule: 'vip-is-node-address', reason: `ClusterIP ${vip} is node ${nodeOwner}'s address` };
  return undefined;
}

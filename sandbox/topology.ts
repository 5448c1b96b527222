// The sandbox's network: an underlay namespace holding one bridge (the
// "physical" L2 segment), and per node a namespace wired to it by a veth, with
// a pod bridge whose address is the pods' gateway. Pod CIDRs of other nodes
// are routed via their underlay addresses, as a flat-routed CNI would.
import type { SandboxNodeInfo } from './info.ts';
import { addNetns, ipBatch, sysctl } from './netns.ts';

export const UNDERLAY_BRIDGE = 'br0';
export const POD_BRIDGE = 'cni0';
const UNDERLAY_PREFIX4 = 24;
const UNDERLAY_PREFIX6 = 64;

/**
 * A fixed, locally administered MAC: a bridge without one takes the lowest MAC
 * of its ports, so adding a pod could change the gateway's MAC under pods that
 * have it cached, and their traffic would vanish until the ARP entry expired.
 */
const bridgeMac = (n: number): string => `02:6d:6c:00:00:${n.toString(16).padStart(2, '0')}`;

/** `address` (with prefix length) is the control plane's own address on the bridge. */
export async function createUnderlay(netns: string, address: string): Promise<void> {
  await addNetns(netns);
  await ipBatch(netns, ['link set lo up', `link add ${UNDERLAY_BRIDGE} address ${bridgeMac(0)} type bridge`, `addr add ${address} dev ${UNDERLAY_BRIDGE}`, `link set ${UNDERLAY_BRIDGE} up`]);
}

/** Port name of node `node` on the underlay bridge. */
const underlayPort = (node: SandboxNodeInfo): string => `u-${node.name}`.slice(0, 15);

export async function createNode(underlayNetns: string, node: SandboxNodeInfo, peers: readonly SandboxNodeInfo[]): Promise<void> {
  await addNetns(node.netns);
  const port = underlayPort(node);
  await ipBatch(underlayNetns, [
    `link add ${port} type veth peer name eth0 netns ${node.netns}`,
    `link set ${port} master ${UNDERLAY_BRIDGE}`,
    `link set ${port} up`,
  ]);
  // nodad: the addresses are ours alone, and duplicate detection would leave
  // them tentative (unusable) for a second or two.
  const commands = [
    'link set lo up',
    `addr add ${node.nodeIp4}/${UNDERLAY_PREFIX4} dev eth0`,
    'link set eth0 up',
    `link add ${POD_BRIDGE} address ${bridgeMac(Number(node.nodeIp4.split('.')[3]))} type bridge`,
    `addr add ${node.podGatewayIp4}/${node.podCidr.split('/')[1]} dev ${POD_BRIDGE}`,
    `link set ${POD_BRIDGE} up`,
  ];
  if (node.nodeIp6) commands.push(`addr add ${node.nodeIp6}/${UNDERLAY_PREFIX6} dev eth0 nodad`);
  if (node.podGatewayIp6 && node.podCidr6) commands.push(`addr add ${node.podGatewayIp6}/${node.podCidr6.split('/')[1]} dev ${POD_BRIDGE} nodad`);
  // Secondary addresses: the gateway stays the source of the node's own (probe) traffic.
  if (node.inboundSourceIp4) commands.push(`addr add ${node.inboundSourceIp4}/${node.podCidr.split('/')[1]} dev ${POD_BRIDGE}`);
  if (node.inboundSourceIp6 && node.podCidr6) commands.push(`addr add ${node.inboundSourceIp6}/${node.podCidr6.split('/')[1]} dev ${POD_BRIDGE} nodad`);
  for (const peer of peers) {
    if (peer.name === node.name) continue;
    commands.push(`route add ${peer.podCidr} via ${peer.nodeIp4} dev eth0`);
    if (peer.podCidr6 && peer.nodeIp6 && node.nodeIp6) commands.push(`route add ${peer.podCidr6} via ${peer.nodeIp6} dev eth0`);
  }
  await sysctl(node.netns, {
    'net.ipv4.ip_forward': '1',
    'net.ipv6.conf.all.forwarding': '1',
    // An empty bridge has no carrier; keep its addresses usable meanwhile.
    'net.ipv6.conf.default.keep_addr_on_down': '1',
  });
  await ipBatch(node.netns, commands);
}

export interface PodLink {
  nodeNetns: string;
  podNetns: string;
  /** Host-side veth name, in the node namespace. */
  veth: string;
  ip: string;
  prefix: number;
  gateway: string;
  ip6?: string;
  prefix6?: number;
  gateway6?: string;
}

/** Creates the pod namespace and its eth0, a veth to the node's pod bridge, with default routes via the gateways. */
export async function createPodNetwork(link: PodLink): Promise<void> {
  await addNetns(link.podNetns);
  await ipBatch(link.nodeNetns, [
    `link add ${link.veth} type veth peer name eth0 netns ${link.podNetns}`,
    `link set ${link.veth} master ${POD_BRIDGE}`,
    `link set ${link.veth} up`,
  ]);
  const commands = ['link set lo up', `addr add ${link.ip}/${link.prefix} dev eth0`];
  if (link.ip6) commands.push(`addr add ${link.ip6}/${link.prefix6} dev eth0 nodad`);
  commands.push('link set eth0 up', `route add default via ${link.gateway} dev eth0`);
  if (link.ip6 && link.gateway6) commands.push(`route add default via ${link.gateway6} dev eth0`);
  await ipBatch(link.podNetns, commands);
}

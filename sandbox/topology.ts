// The sandbox's network: an underlay namespace holding one bridge (the
// "physical" L2 segment), and per node a namespace wired to it by a veth.
// Pod CIDRs of other nodes are routed via their underlay addresses, as a
// flat-routed CNI would. Pods are routed as Calico and Cilium route them: no
// L2 is shared with other pods or with the node's addresses. Each pod's veth
// is a point-to-point link; the pod holds its addresses as /32 and /128 with
// default routes via a link-local gateway on the node's end of its veth, and
// the node has a host route to each pod over its veth. The node drops what a
// pod sends from an address not routed over the pod's veth (IPv4: strict
// rp_filter; IPv6, which has none: an nftables fib check), so a pod can claim
// no other pod's address nor the node's. The node's mesh addresses (capture,
// probe source, inbound source) live on its loopback: pods reach the capture
// address through their gateway, and new connections to the inbound source
// address are dropped, so it is only ever the ztunnel's source toward pods.
// The underlay routes each node's pod CIDR via that node, as a control-plane
// host on a routed pod network does: pods reach the API server and the CA at
// their underlay address (IPv4: the control plane has no other), and the
// answers come back.
import { isIPv6 } from 'node:net';
import type { SandboxNodeInfo } from './info.ts';
import { CONTROL_PLANE_NETWORK, POD_VETH_PREFIX } from './layout.ts';
import { addNetns, ipBatch, nftApply, sysctl } from './netns.ts';

export const UNDERLAY_BRIDGE = 'br0';
const UNDERLAY_PREFIX4 = 24;
const UNDERLAY_PREFIX6 = 64;
/** Every pod's gateway, an address of the node's end of each pod veth (the CNI ptp plugin's layout; Calico's 169.254.1.1). */
const POD_GATEWAY4 = '169.254.1.1';
const POD_GATEWAY6 = 'fe80::1';
/** The node's nftables table: the IPv6 source check and the inbound source address's guard. */
const NODE_NFT_TABLE = 'meshlet';

/**
 * A fixed, locally administered MAC: a bridge without one takes the lowest MAC
 * of its ports, so adding a node could change it under the control plane's
 * peers that have it cached, and their traffic would vanish until the ARP
 * entry expired.
 */
const UNDERLAY_BRIDGE_MAC = '02:6d:6c:00:00:00';

/** `address` (with prefix length) is the control plane's own address on the bridge. */
export async function createUnderlay(netns: string, address: string): Promise<void> {
  await addNetns(netns);
  await ipBatch(netns, ['link set lo up', `link add ${UNDERLAY_BRIDGE} address ${UNDERLAY_BRIDGE_MAC} type bridge`, `addr add ${address} dev ${UNDERLAY_BRIDGE}`, `link set ${UNDERLAY_BRIDGE} up`]);
}

/** Port name of node `node` on the underlay bridge. */
const underlayPort = (node: SandboxNodeInfo): string => `u-${node.name}`.slice(0, 15);

/** The node's mesh addresses but its own (eth0's), each once: they live on its loopback. */
const meshAddresses = (node: SandboxNodeInfo): string[] =>
  [...new Set([node.captureIp4, node.probeSourceIp4, node.inboundSourceIp4, node.captureIp6, node.probeSourceIp6, node.inboundSourceIp6])]
    .filter((ip): ip is string => ip !== undefined && ip !== node.nodeIp4 && ip !== node.nodeIp6);

/**
 * The node's filter: a pod's IPv6 packet whose source is not routed back over
 * the veth it came in on is dropped (what rp_filter=1 does for IPv4), and so
 * is a new connection to the inbound source address from anywhere but the
 * node itself; replies to the ztunnel's connections from it pass.
 */
function nodeRuleset(node: SandboxNodeInfo): string {
  const inbound = [
    ...(node.inboundSourceIp4 ? [`    iifname != "lo" ip daddr ${node.inboundSourceIp4} ct state new counter drop`] : []),
    ...(node.inboundSourceIp6 ? [`    iifname != "lo" ip6 daddr ${node.inboundSourceIp6} ct state new counter drop`] : []),
  ];
  return [
    `table inet ${NODE_NFT_TABLE} {`,
    '  chain pod_source {',
    '    type filter hook prerouting priority filter; policy accept;',
    `    iifname "${POD_VETH_PREFIX}*" meta nfproto ipv6 fib saddr . iif oif missing counter drop`,
    '  }',
    '  chain inbound_source {',
    '    type filter hook input priority filter; policy accept;',
    ...inbound,
    '  }',
    '}',
    '',
  ].join('\n');
}

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
  const commands = ['link set lo up', `addr add ${node.nodeIp4}/${UNDERLAY_PREFIX4} dev eth0`, 'link set eth0 up'];
  if (node.nodeIp6) commands.push(`addr add ${node.nodeIp6}/${UNDERLAY_PREFIX6} dev eth0 nodad`);
  for (const ip of meshAddresses(node)) commands.push(isIPv6(ip) ? `addr add ${ip}/128 dev lo nodad` : `addr add ${ip}/32 dev lo`);
  for (const peer of peers) {
    if (peer.name === node.name) continue;
    commands.push(`route add ${peer.podCidr} via ${peer.nodeIp4} dev eth0`);
    if (peer.podCidr6 && peer.nodeIp6 && node.nodeIp6) commands.push(`route add ${peer.podCidr6} via ${peer.nodeIp6} dev eth0`);
  }
  // A node's own connection to a ClusterIP needs a route before kube-proxy's DNAT picks the endpoint (a real node's default route).
  for (const cidr of CONTROL_PLANE_NETWORK.serviceCidrs.split(',')) {
    if (!isIPv6(cidr.split('/')[0]!)) commands.push(`route add ${cidr} dev eth0 src ${node.nodeIp4}`);
    else if (node.nodeIp6) commands.push(`route add ${cidr} dev eth0 src ${node.nodeIp6}`);
  }
  await sysctl(node.netns, {
    'net.ipv4.ip_forward': '1',
    'net.ipv6.conf.all.forwarding': '1',
    // Strict on every link, pod veths included (they take `default`): the
    // kernel uses the higher of `all` and the link's own value.
    'net.ipv4.conf.all.rp_filter': '1',
    'net.ipv4.conf.default.rp_filter': '1',
    // As daemonset/README.md asks of nodes: a connection queued on a closing listener moves to another of its port's group (an upgrade's old ztunnel).
    'net.ipv4.tcp_migrate_req': '1',
  });
  await ipBatch(node.netns, commands);
  await nftApply(node.netns, nodeRuleset(node));
  await ipBatch(underlayNetns, [`route add ${node.podCidr} via ${node.nodeIp4} dev ${UNDERLAY_BRIDGE}`]);
}

export interface PodLink {
  nodeNetns: string;
  podNetns: string;
  /** Host-side veth name, in the node namespace. */
  veth: string;
  ip: string;
  ip6?: string;
  /** The node's source address toward its pods (its probe source), on the host routes: the node's own connections to pods come from it. */
  nodeSource4: string;
  nodeSource6?: string;
}

/**
 * Creates the pod namespace and its eth0, a veth whose node end carries the
 * gateway addresses and the host routes to the pod's addresses; the pod's
 * default routes go via the gateway.
 */
export async function createPodNetwork(link: PodLink): Promise<void> {
  await addNetns(link.podNetns);
  const host = [`link add ${link.veth} type veth peer name eth0 netns ${link.podNetns}`, `addr add ${POD_GATEWAY4}/32 dev ${link.veth}`];
  if (link.ip6) host.push(`addr add ${POD_GATEWAY6}/64 dev ${link.veth} nodad`);
  host.push(`link set ${link.veth} up`, `route add ${link.ip}/32 dev ${link.veth} src ${link.nodeSource4}`);
  if (link.ip6) host.push(`route add ${link.ip6}/128 dev ${link.veth}${link.nodeSource6 ? ` src ${link.nodeSource6}` : ''}`);
  await ipBatch(link.nodeNetns, host);
  const pod = ['link set lo up', `addr add ${link.ip}/32 dev eth0`];
  if (link.ip6) pod.push(`addr add ${link.ip6}/128 dev eth0 nodad`);
  pod.push('link set eth0 up', `route add ${POD_GATEWAY4} dev eth0 scope link`, `route add default via ${POD_GATEWAY4} dev eth0`);
  if (link.ip6) pod.push(`route add default via ${POD_GATEWAY6} dev eth0`);
  await ipBatch(link.podNetns, pod);
}

// Every name, path and address a sandbox uses, derived from its name alone so
// that `down` can find what a crashed sandbox left behind without sandbox.json.
import { join, normalize } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { kubepodsCgroup, podCgroupPathOf, type CgroupDriver } from '../lib/cluster/cgroup-layout.ts';
import { REPO_ROOT } from '../lib/core/repo.ts';
import { ConfigError } from '../lib/core/errors.ts';
import type { SandboxNodeInfo } from './info.ts';
import { AGENT_ADMIN_SOCKET, ZTUNNEL_ADMIN_SOCKET } from '../lib/install/names.ts';
import type { Component, ControlPlaneNetwork } from './controlplane/components.ts';

export const RUN_ROOT = '/run/meshlet';
export const BPF_ROOT = '/sys/fs/bpf/meshlet';
/** Where a node has its bpffs and its cgroup v2 root, as a real node mounts them. */
const NODE_BPFFS = '/sys/fs/bpf';
const NODE_CGROUP2_ROOT = '/sys/fs/cgroup';
export const NETNS_DIR = '/run/netns';
export const DEFAULT_NAME = 'meshlet';
export const MAX_NODES = 20;

/** The meshlet checkout: pods run with it as working directory. */
export { REPO_ROOT };
/** The CLI from source; node processes run its compiled copy (compiled.ts). */
export const CLI_MAIN = join(REPO_ROOT, 'cli', 'main.ts');

// No hyphen: "meshlet-<name>-" must not be a prefix of another sandbox's names.
const NAME_RE = /^[a-z0-9]{1,16}$/;

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new ConfigError(`sandbox name "${name}" is invalid: use 1-16 lowercase letters or digits (no "-": it separates the name from what the sandbox creates)`);
  }
  return name;
}

export function checkNodeCount(nodes: number): number {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) {
    throw new ConfigError(`--nodes must be an integer from 1 to ${MAX_NODES}, got ${nodes}`);
  }
  return nodes;
}

/** Prefix of every network namespace of the sandbox; also its cgroup directory name. */
export const prefixOf = (name: string): string => `meshlet-${name}`;

export interface SandboxPaths {
  name: string;
  prefix: string;
  runDir: string;
  infoFile: string;
  /** Admin kubeconfig for the host: the API server through the control-plane supervisor's loopback relay. */
  kubeconfig: string;
  controlPlaneDir: string;
  underlayNetns: string;
  bpfDir: string;
}

export function sandboxPaths(name: string): SandboxPaths {
  const prefix = prefixOf(name);
  const runDir = join(RUN_ROOT, name);
  return {
    name,
    prefix,
    runDir,
    infoFile: join(runDir, 'sandbox.json'),
    kubeconfig: join(runDir, 'kubeconfig'),
    controlPlaneDir: join(runDir, 'controlplane'),
    underlayNetns: `${prefix}-underlay`,
    bpfDir: join(BPF_ROOT, name),
  };
}

export const nodeName = (index: number): string => `node-${index}`;
export const nodeDir = (name: string, node: string): string => join(RUN_ROOT, name, 'nodes', node);
export const pidsFile = (name: string, node: string): string => join(nodeDir(name, node), 'pids.json');
export const controlPlanePidsFile = (name: string): string => join(RUN_ROOT, name, 'controlplane', 'pids.json');
export const podNetns = (name: string, uid: string): string => `${prefixOf(name)}-${uid.slice(0, 8)}`;
/** What every pod veth's host side is called by: the node's filter (topology.ts) matches it. */
export const POD_VETH_PREFIX = 'veth';
/** Host side of a pod's veth, inside the node namespace (15 chars max). */
export const podVeth = (uid: string): string => `${POD_VETH_PREFIX}${uid.slice(0, 8)}`;

/** Odd nodes lay their pods out as the systemd driver does, even ones as cgroupfs does: every sandbox with two nodes runs both. */
const cgroupDriverOf = (index: number): CgroupDriver => (index % 2 === 1 ? 'systemd' : 'cgroupfs');

/**
 * Node `index` (1-based): its namespace, addresses, credentials and cgroup
 * under `cgroupRoot` (the sandbox's). The mesh addresses are the ones the
 * DaemonSet renders: pods reach the ztunnel at the node's own address and the
 * kubelet probes from it (status.hostIPs); the inbound sources are the
 * install's --inbound-source-ip4/-ip6. The agent's and the ztunnel's admin
 * sockets are where the DaemonSet's hostPath puts them, the node's /run/meshlet.
 */
export function planNode(name: string, index: number, cgroupRoot: string): SandboxNodeInfo {
  const node = nodeName(index);
  const dir = nodeDir(name, node);
  const nodeIp4 = `10.200.0.${10 + index}`;
  const nodeIp6 = `fd00:200::${10 + index}`;
  const bpfDir = join(BPF_ROOT, name, node);
  const cgroup = join(cgroupRoot, node);
  const hostPath = (path: string): string => nodeHostPath(name, { name: node, bpfDir, cgroup }, path).path;
  return {
    name: node,
    netns: `${prefixOf(name)}-${node}`,
    nodeIp4,
    nodeIp6,
    podCidr: `10.244.${index}.0/24`,
    podCidr6: `fd00:244:${index}::/64`,
    captureIp4: nodeIp4,
    captureIp6: nodeIp6,
    probeSourceIp4: nodeIp4,
    probeSourceIp6: nodeIp6,
    inboundSourceIp4: INBOUND_SOURCE4,
    inboundSourceIp6: INBOUND_SOURCE6,
    kubeletKubeconfig: join(dir, 'kubelet.kubeconfig'),
    kubeletServingCert: join(dir, 'kubelet.crt'),
    kubeletServingKey: join(dir, 'kubelet.key'),
    kubeProxyKubeconfig: join(dir, 'kube-proxy.kubeconfig'),
    kubeProxyLog: join(dir, 'kube-proxy.log'),
    ztunnelAdminSocket: hostPath(ZTUNNEL_ADMIN_SOCKET),
    agentAdminSocket: hostPath(AGENT_ADMIN_SOCKET),
    bpfDir,
    cgroup,
    cgroupDriver: cgroupDriverOf(index),
  };
}

/** The node's own addresses on the underlay, IPv4 first: its InternalIPs, and its hostNetwork pods' IPs. */
export const nodeAddresses = (node: Pick<SandboxNodeInfo, 'nodeIp4' | 'nodeIp6'>): string[] => [node.nodeIp4, ...(node.nodeIp6 ? [node.nodeIp6] : [])];

/**
 * Where a sandbox node's container runtime keeps its CNI configs and plugins
 * (containerd's conf_dir and bin_dir): under /run, as a sandbox container can
 * mount a volume only there or at a directory the host has, and the host
 * need not have /etc/cni. `meshlet install --cni-conf-dir/--cni-bin-dir`.
 */
export const NODE_CNI_CONF_DIR = '/run/cni/net.d';
export const NODE_CNI_BIN_DIR = '/run/cni/bin';

/** The node's own root filesystem, where its hostPath volumes are made. */
export const nodeRootDir = (name: string, node: string): string => join(nodeDir(name, node), 'root');

/**
 * Where `path` of node `node` is on this machine (a hostPath volume's): the
 * node's bpffs and cgroup v2 root are its directories of the host's (a
 * bpffs or a cgroup tree has no copies), everything else is below its own
 * root directory, so two nodes on one machine share nothing. `path` is
 * absolute; `..` cannot climb out of the node.
 */
export function nodeHostPath(name: string, node: Pick<SandboxNodeInfo, 'name' | 'bpfDir' | 'cgroup'>, path: string): { path: string; root: string } {
  const normal = normalize(`/${path}`).replace(/(.)\/+$/, '$1');
  const own: readonly (readonly [string, string])[] = [[NODE_BPFFS, node.bpfDir], [NODE_CGROUP2_ROOT, node.cgroup]];
  for (const [at, root] of own) {
    if (normal === at || normal.startsWith(`${at}/`)) return { path: join(root, normal.slice(at.length)), root };
  }
  const root = nodeRootDir(name, node.name);
  return { path: join(root, normal), root };
}

/** Pods get hosts 2..LAST_POD_HOST of their node's pod CIDRs; .1 stays free, as a CNI keeps its bridge's. */
export const LAST_POD_HOST = 254;

/**
 * The ztunnel's inbound source addresses on every node of a sandbox
 * (`meshlet install --inbound-source-ip4/-ip6`): one flag
 * for all nodes, so one address per family each node holds on its loopback
 * and nothing else uses, as daemonset/README.md advises (the node's own
 * address would admit every host-network process under STRICT): link-local
 * for IPv4, from a unique-local prefix no node or pod uses for IPv6.
 */
export const INBOUND_SOURCE4 = '169.254.7.7';
export const INBOUND_SOURCE6 = 'fd00:a9fe::7';

/** The API server listens on the underlay bridge, as a control-plane node on the node network would. */
export const CONTROL_PLANE_IP = '10.200.0.2';
export const API_SERVER_PORT = 6443;

/** Every node's pod CIDRs together (planNode's 10.244.<n>.0/24 and fd00:244:<n>::/64): kube-proxy's --cluster-cidr. */
export const CLUSTER_CIDRS = '10.244.0.0/16,fd00:244::/48';

/**
 * The control plane's network in the underlay namespace: the API server on
 * the bridge, the rest on the namespace's own loopback (so fixed ports never
 * collide with the host's). Node pod CIDRs are the sandbox's (planNode), set
 * by each node's kubelet at registration, so the controller manager does not
 * allocate them.
 */
export const CONTROL_PLANE_NETWORK: ControlPlaneNetwork = {
  apiServerIp: CONTROL_PLANE_IP,
  apiServerPort: API_SERVER_PORT,
  etcdClientPort: 2379,
  etcdPeerPort: 2380,
  controllerManagerPort: 10257,
  schedulerPort: 10259,
  serviceCidrs: '10.96.0.0/16,fd00:96::/112',
};

/** Host number `host` (2..LAST_POD_HOST) of a node's pod CIDRs. */
export function podAddresses(node: SandboxNodeInfo, host: number): { ip: string; ip6?: string } {
  const base4 = node.podCidr.split('/')[0]!.split('.').slice(0, 3).join('.');
  const ip = `${base4}.${host}`;
  if (node.podCidr6 === undefined) return { ip };
  return { ip, ip6: `${node.podCidr6.split('/')[0]}${host.toString(16)}` };
}

export const controlPlaneCgroups = (cgroupRoot: string) => ({
  supervisor: join(cgroupRoot, 'controlplane', 'supervisor'),
  component: (c: Component): string => join(cgroupRoot, 'controlplane', c),
});

export const nodeCgroups = (node: SandboxNodeInfo) => ({
  supervisor: join(node.cgroup, 'supervisor'),
  kubeProxy: join(node.cgroup, 'kube-proxy'),
  // Made with the node, as kubelet makes it at start: the agent can tell the driver before the first pod.
  kubepods: join(node.cgroup, kubepodsCgroup(node.cgroupDriver)),
});

/** A pod's cgroup, as the kubelet names it for the node's driver, under the node's cgroup (its kubelet cgroup root). */
export const podCgroup = (node: SandboxNodeInfo, pod: V1Pod): string => join(node.cgroup, podCgroupPathOf(pod, node.cgroupDriver));

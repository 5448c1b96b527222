// `meshlet agent`'s configuration: its flags, parsed and validated, and what a
// launcher passes (configArgs) to start one.
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.ts';
import type { NodeAddresses } from './addresses.ts';
import { ipFlag, objectRefFlag, type FlagTable } from './flags.ts';
import { CGROUP_DRIVERS, type CgroupDriver } from '../cluster/cgroup-layout.ts';
import { ConfigError } from '../core/errors.ts';
import { parseCidr, type Cidr } from '../core/cidr.ts';

/** The kubelet's cgroup driver, or 'auto': detected from the kubelet cgroup root. */
export type CgroupDriverSetting = CgroupDriver | 'auto';
const CGROUP_DRIVER_SETTINGS: readonly string[] = [...CGROUP_DRIVERS, 'auto'];

const cgroupDriverFlag = (text: string, flag: string): CgroupDriverSetting => {
  if (!CGROUP_DRIVER_SETTINGS.includes(text)) throw new ConfigError(`${flag} must be one of ${CGROUP_DRIVER_SETTINGS.join(', ')} (the kubelet's --cgroup-driver), got "${text}"`);
  return text as CgroupDriverSetting;
};

/**
 * The cluster's Service ranges, as kube-apiserver's --service-cluster-ip-range
 * gives them: one CIDR, or two of different families, IPv4 first.
 */
export function parseServiceCidrs(text: string, flag = '--service-cidrs'): Cidr[] {
  const parts = text.split(',').map((p) => p.trim());
  const cidrs = parts.map((p) => parseCidr(p));
  const bad = parts.find((_, i) => cidrs[i] === undefined);
  if (bad !== undefined) throw new ConfigError(`${flag}: ${JSON.stringify(bad)} is not a CIDR (address/prefix); give the API server's --service-cluster-ip-range, e.g. 10.96.0.0/12,fd00:10:96::/112`);
  const ok = cidrs as Cidr[];
  if (ok.length > 2 || (ok.length === 2 && (ok[0]!.family !== 4 || ok[1]!.family !== 6))) {
    throw new ConfigError(`${flag} "${text}" must be one CIDR, or an IPv4 and an IPv6 one, IPv4 first (as the API server's --service-cluster-ip-range)`);
  }
  return ok;
}

/** "<namespace>/<name>" of the agent's DaemonSet (--daemonset). */
export const parseDaemonSetRef = objectRefFlag('a DaemonSet', 'meshlet-system/meshlet-node');

const serviceCidrsFlag = (text: string, flag: string): string => (parseServiceCidrs(text, flag), text);

export interface AgentConfig extends Omit<NodeAddresses, 'nodeIp4' | 'nodeIp6'> {
  /** This node's name, as in the cluster. */
  node: string;
  /** The agent's credentials for the Kubernetes API (its ServiceAccount's). */
  kubeconfig: string;
  /** The node's kubelet cgroup root: the cgroup v2 directory holding kubepods.slice or kubepods. */
  kubeletCgroupRoot: string;
  cgroupDriver: CgroupDriverSetting;
  ztunnelCgroup: string;
  bpfDir: string;
  rootNamespace: string;
  /** The cluster's Service ranges, comma-separated, IPv4 first (parseServiceCidrs): every ClusterIP must lie in one. */
  serviceCidrs: string;
  controlSocket: string;
  adminSocket: string;
  /** "<namespace>/<name>" of the DaemonSet the agent runs in; unset: capture always outlives the agent. */
  daemonset?: string;
  /** The node's CNI config dir, where the agent chains its CNI plugin; unset: no plugin holds new pods for the agent. */
  cniConfDir?: string;
  /** The node's CNI plugin dir, where the plugin's executable goes. */
  cniBinDir?: string;
}

export const AGENT_FLAGS: FlagTable<AgentConfig> = {
  node: { value: '<name>', description: 'this node\'s name, as in the cluster', required: true },
  kubeconfig: { value: '<path>', description: 'kubeconfig the agent reads the Kubernetes API with: the meshlet-agent ServiceAccount\'s credentials', required: true },
  kubeletCgroupRoot: { value: '<dir>', description: 'the node\'s kubelet cgroup root: the cgroup v2 directory holding kubepods.slice (systemd driver) or kubepods (cgroupfs)', required: true },
  cgroupDriver: { value: '<systemd|cgroupfs|auto>', description: 'the kubelet\'s cgroup driver, which names pod cgroups; auto: the one whose kubepods exists under the root', default: 'auto', parse: cgroupDriverFlag },
  ztunnelCgroup: { value: '<dir>', description: 'cgroup v2 directory of the node\'s ztunnel', required: true },
  bpfDir: { value: '<dir>', description: 'bpffs directory to pin programs and maps in', required: true },
  captureIp4: { value: '<ip>', description: 'address the ztunnel accepts captured IPv4 connections on', required: true, parse: ipFlag(4) },
  captureIp6: { value: '<ip>', description: 'address the ztunnel accepts captured IPv6 connections on', parse: ipFlag(6) },
  inboundSourceIp4: { value: '<ip>', description: 'address the ztunnel connects to local pods from: STRICT admits it', parse: ipFlag(4) },
  inboundSourceIp6: { value: '<ip>', description: 'IPv6 address the ztunnel connects to local pods from', parse: ipFlag(6) },
  probeSourceIp4: { value: '<ip>', description: 'address kubelet probes come from: admitted on declared probe ports under STRICT', parse: ipFlag(4) },
  probeSourceIp6: { value: '<ip>', description: 'IPv6 address kubelet probes come from', parse: ipFlag(6) },
  rootNamespace: { value: '<ns>', description: 'namespace whose selector-less policies apply mesh-wide', default: DEFAULT_ROOT_NAMESPACE },
  serviceCidrs: { value: '<cidr[,cidr6]>', description: 'the cluster\'s Service ranges (kube-apiserver --service-cluster-ip-range), IPv4 first: a Service whose ClusterIP lies outside them is refused, and no pod may have an address in them', required: true, parse: serviceCidrsFlag },
  controlSocket: { value: '<path>', description: 'the ztunnel\'s control socket', required: true },
  adminSocket: { value: '<path>', description: 'Unix socket for this agent\'s admin API (status)', required: true },
  daemonset: {
    value: '<namespace/name>',
    description: 'the DaemonSet this agent runs in: when it is gone or being deleted as the agent stops (uninstall), the agent detaches its programs from every cgroup and removes its pins; otherwise (upgrade, restart), and when unset, they stay for the next agent',
    parse: (text, flag) => (parseDaemonSetRef(text, flag), text),
  },
  cniConfDir: { value: '<dir>', description: 'the node\'s CNI config dir (containerd\'s conf_dir, e.g. /etc/cni/net.d): the agent chains the meshlet CNI plugin into its primary config, so a new pod of an ambient namespace starts only once this agent captured it; unset: new pods are captured when the agent sees them' },
  cniBinDir: { value: '<dir>', description: 'the node\'s CNI plugin dir (containerd\'s bin_dir, e.g. /opt/cni/bin), where the plugin goes; needed with --cni-conf-dir' },
};

// `meshlet install`'s settings: what differs between clusters, as flags. Each
// reuses the flag spec of the component it configures where one exists (the
// agent's --cgroup-driver, the ztunnel's --cert-ttl, the CA's trust domain),
// so a value means the same in the manifests as on the component's own
// command line. Everything else a node knows only at run time (its name, its
// address) comes from the pod through the downward API, never from here.
import { AGENT_FLAGS, type CgroupDriverSetting } from '../config/agent.ts';
import { CA_FLAGS, DEFAULT_WAYPOINT_IMAGE } from '../config/ca.ts';
import { httpsOriginFlag, type FlagTable } from '../config/flags.ts';
import { ZTUNNEL_FLAGS, ZTUNNEL_LIMIT_FLAGS, type ZtunnelLimits } from '../config/ztunnel.ts';
import { dnsLabelProblem } from '../cluster/names.ts';
import { ConfigError } from '../core/errors.ts';

/** The ztunnels' bounds (their own flags, under the same names): absent, each ztunnel's default. */
export interface InstallOptions extends Partial<ZtunnelLimits> {
  /** The one meshlet image (daemonset/Dockerfile): agent, ztunnel, CA and waypoints. */
  image: string;
  namespace: string;
  trustDomain: string;
  cgroupDriver: CgroupDriverSetting;
  /** Workload certificate lifetime, seconds. */
  certTtl: number;
  /** kube-apiserver's --service-cluster-ip-range. */
  serviceCidrs: string;
  /** The kubelet's --cgroup-root, relative to the node's cgroup v2 root. */
  kubeletCgroupRoot: string;
  /** How the agent and the CA reach the API server. */
  apiServer: string;
  /** Absent: each node's own address (status.hostIP). */
  inboundSourceIp4?: string;
  /** On dual-stack nodes; absent: each node's own IPv6 address (from status.hostIPs). */
  inboundSourceIp6?: string;
  /** The nodes' CNI config dir, where each agent chains the meshlet CNI plugin. */
  cniConfDir: string;
  /** The nodes' CNI plugin dir. */
  cniBinDir: string;
}

export const DEFAULT_NAMESPACE = 'meshlet-system';
/** kubeadm's default --service-cidr. */
export const DEFAULT_SERVICE_CIDRS = '10.96.0.0/12';
/** The `kubernetes` Service, as cluster DNS names it for a pod with dnsPolicy ClusterFirstWithHostNet. */
export const DEFAULT_API_SERVER = 'https://kubernetes.default.svc:443';
/** The CA's default certificate lifetime (meshlet ca --default-ttl). */
const DEFAULT_CERT_TTL = CA_FLAGS.defaultTtl.default!;
/** Longest lifetime the CA grants with its default --max-ttl: a longer one would be capped silently. */
const MAX_CERT_TTL = CA_FLAGS.maxTtl.default!;

const namespaceFlag = (text: string, flag: string): string => {
  const problem = dnsLabelProblem(text, flag);
  if (problem) throw new ConfigError(problem);
  return text;
};

const certTtlFlag = (text: string, flag: string): number => {
  const seconds = ZTUNNEL_FLAGS.certTtl.parse!(text, flag);
  if (seconds > MAX_CERT_TTL) throw new ConfigError(`${flag} ${JSON.stringify(text)} is longer than the CA grants (its --max-ttl, ${MAX_CERT_TTL / 3600}h)`);
  return seconds;
};

const kubeletCgroupRootFlag = (text: string, flag: string): string => {
  // It becomes part of a shell word in the agent's entry (lib/install/node.ts): plain path characters only.
  if (!/^\/[\w./@:+-]*$/.test(text) || text.split('/').some((part) => part === '..' || part === '.')) {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} must be the kubelet's --cgroup-root: an absolute path below the cgroup v2 root, of letters, digits and ._@:+- without . or .. parts (default /)`);
  }
  return text;
};

/** A node directory the DaemonSet mounts: absolute and plain, as kubelet takes a hostPath. */
const nodeDirFlag = (text: string, flag: string): string => {
  if (!/^\/[\w./@:+-]*$/.test(text) || text.split('/').some((part) => part === '..')) throw new ConfigError(`${flag} ${JSON.stringify(text)} must be an absolute directory of the nodes, of letters, digits and ._@:+- without .. parts`);
  return text.replace(/(.)\/+$/, '$1');
};

const apiServerFlag = httpsOriginFlag('the Kubernetes API server', DEFAULT_API_SERVER);

export const INSTALL_FLAGS: FlagTable<InstallOptions> = {
  image: { value: '<image>', description: 'the meshlet image (daemonset/Dockerfile) every component runs, e.g. registry.example/meshlet:0.1.0', default: DEFAULT_WAYPOINT_IMAGE, parse: CA_FLAGS.waypointImage.parse! },
  namespace: { value: '<namespace>', description: 'namespace of the agents, the CA and their accounts', default: DEFAULT_NAMESPACE, parse: namespaceFlag },
  trustDomain: { ...CA_FLAGS.trustDomain, description: 'SPIFFE trust domain of the mesh (the CA\'s, the ztunnels\' and the waypoints\')' },
  cgroupDriver: AGENT_FLAGS.cgroupDriver,
  certTtl: {
    value: '<duration>', description: 'workload certificate lifetime (the ztunnels ask for it, and the CA gives it to waypoints); rotation at half',
    default: DEFAULT_CERT_TTL, defaultLabel: `${DEFAULT_CERT_TTL / 3600}h`, parse: certTtlFlag,
  },
  serviceCidrs: {
    ...AGENT_FLAGS.serviceCidrs, required: false, default: DEFAULT_SERVICE_CIDRS,
    description: 'the cluster\'s Service ranges, exactly kube-apiserver\'s --service-cluster-ip-range (IPv4 first): the agents refuse every Service whose ClusterIP lies outside them, so a wrong value stops the mesh',
  },
  kubeletCgroupRoot: { value: '<path>', description: 'the kubelet\'s --cgroup-root, below the node\'s cgroup v2 root: where kubepods.slice or kubepods is', default: '/', parse: kubeletCgroupRootFlag },
  apiServer: {
    value: '<url>', default: DEFAULT_API_SERVER, parse: apiServerFlag,
    description: 'the API server as the agents (host network) and the CA reach it; give the control plane\'s own address where host-network pods cannot resolve or reach the kubernetes Service',
  },
  inboundSourceIp4: {
    ...AGENT_FLAGS.inboundSourceIp4,
    description: 'address the ztunnel connects to local pods from, which STRICT admits: an address every node holds and nothing else uses (e.g. on lo). Default: the node\'s own address, so STRICT also admits anything else on the node that connects from it (host-network pods, traffic SNATed to the node)',
  },
  inboundSourceIp6: {
    ...AGENT_FLAGS.inboundSourceIp6,
    description: 'the same on dual-stack nodes, for IPv6 (default: the node\'s own IPv6 address, with the same caveat)',
  },
  cniConfDir: {
    value: '<dir>', default: '/etc/cni/net.d', parse: nodeDirFlag,
    description: 'the nodes\' CNI config dir (containerd\'s conf_dir; k3s: /var/lib/rancher/k3s/agent/etc/cni/net.d): each agent chains the meshlet CNI plugin into the primary config there, so a new pod of an ambient namespace starts only once its node captured it',
  },
  cniBinDir: { value: '<dir>', default: '/opt/cni/bin', parse: nodeDirFlag, description: 'the nodes\' CNI plugin dir (containerd\'s bin_dir; k3s: /var/lib/rancher/k3s/data/current/bin)' },
  ...ZTUNNEL_LIMIT_FLAGS,
};

/** Every setting at its default, as `meshlet install` with no flags has them. */
export function installDefaults(): InstallOptions {
  const defaults = Object.entries(INSTALL_FLAGS).flatMap(([key, spec]) => (spec.default === undefined ? [] : [[key, spec.default] as const]));
  return Object.fromEntries(defaults) as unknown as InstallOptions;
}

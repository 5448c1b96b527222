// What `sandbox up` records about a running sandbox, for the CLI and tests.
import type { NodeAddresses } from '../lib/config/addresses.ts';
import type { CgroupDriver } from '../lib/cluster/cgroup-layout.ts';
import type { ZtunnelLimits } from '../lib/config/ztunnel.ts';

/**
 * A node's mesh addresses (NodeAddresses): nodeIp on the underlay bridge; the
 * capture address (also the probe source) and the inbound source on the node
 * namespace's loopback, routed to from its pods' links (topology.ts).
 */
export interface SandboxNodeInfo extends NodeAddresses {
  name: string;
  /** Network namespace name (`ip netns`). */
  netns: string;
  podCidr: string;
  podCidr6?: string;
  /** The ztunnel's credential for the CA: a token bound to the node's meshlet pod (audience meshlet-ca), kept fresh by the node supervisor. */
  caTokenFile?: string;
  /** The kubelet's credentials: system:node:<name>, so the Node authorizer applies. */
  kubeletKubeconfig: string;
  /** The kubelet API's serving certificate and key (PEM files), from the cluster CA, for the node's name and addresses. */
  kubeletServingCert: string;
  kubeletServingKey: string;
  /** The agent's credentials: the meshlet-agent ServiceAccount. */
  agentKubeconfig: string;
  /** kube-proxy's credentials: user system:kube-proxy, which the bootstrap RBAC binds to system:node-proxier. */
  kubeProxyKubeconfig: string;
  kubeProxyLog: string;
  agentPid?: number;
  ztunnelPid?: number;
  supervisorPid?: number;
  /** HTTP admin API of the ztunnel (flows, state) over a Unix socket. */
  ztunnelAdminSocket: string;
  /** HTTP admin API of the agent (status) over a Unix socket. */
  agentAdminSocket: string;
  /** bpffs directory the agent pins into. */
  bpfDir: string;
  /** The node's cgroup: its kubelet cgroup root, holding the pods' kubepods tree beside the agent's and ztunnel's cgroups. */
  cgroup: string;
  /** The kubelet cgroup driver whose layout the node's pod cgroups follow. */
  cgroupDriver: CgroupDriver;
  /** Unix socket the agent pushes snapshots to the ztunnel on. */
  controlSocket?: string;
  agentLog?: string;
  ztunnelLog?: string;
  /** Times the supervisor restarted each child. */
  agentRestarts?: number;
  ztunnelRestarts?: number;
}

export interface SandboxPodInfo {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  netns: string;
  cgroup: string;
  ip: string;
  ip6?: string;
  enrolled: boolean;
  serviceAccount?: string;
  /** Some process of the pod is alive in its cgroup. */
  running?: boolean;
  /** Containers' stdout and stderr: <container>/<restart>.log below it. */
  logDir?: string;
}

export interface SandboxServiceInfo {
  name: string;
  namespace: string;
  /** ClusterIPs, IPv4 first. */
  clusterIPs: string[];
  ports: { name?: string; port: number; targetPort?: number | string; protocol?: string }[];
}

/** The sandbox's Kubernetes control plane, in the underlay namespace. */
export interface SandboxControlPlaneInfo {
  dir: string;
  /** The built binaries it runs (scripts/controlplane/build.sh's cache). */
  bin: string;
  /** The API server as nodes and meshlet reach it, on the underlay bridge. */
  server: string;
  /** The same API server from the host: a loopback port the control-plane supervisor relays into the underlay. */
  hostServer: string;
  /** Admin kubeconfig against hostServer (`meshlet sandbox kubeconfig`). */
  kubeconfig: string;
  supervisorPid?: number;
}

export interface SandboxInfo {
  name: string;
  runDir: string;
  controlPlane: SandboxControlPlaneInfo;
  nodes: SandboxNodeInfo[];
  pods: SandboxPodInfo[];
  services?: SandboxServiceInfo[];
  underlayNetns?: string;
  /** The sandbox's cgroup-v2 directory; every process it runs is below it. */
  cgroup?: string;
  ca?: SandboxCaInfo;
  /** Workload certificate lifetime the ztunnels ask for (e.g. "24h"). */
  certTtl?: string;
  /** The ztunnels' timeouts and caps where they are not the defaults (lib/config/ztunnel.ts). */
  ztunnelLimits?: Partial<ZtunnelLimits>;
  trustDomain?: string;
  /**
   * How meshlet runs: `supervised` (absent), the node supervisors run each
   * node's agent and ztunnel and the sandbox runs the CA; `daemonset`, from
   * the manifests `meshlet install` renders (the node DaemonSet and the CA
   * Deployment), applied through the API server, and nothing else.
   */
  meshlet?: MeshletMode;
}

export const MESHLET_MODES = ['supervised', 'daemonset'] as const;
export type MeshletMode = (typeof MESHLET_MODES)[number];

/** The mesh CA, running on its own in the underlay namespace. */
export interface SandboxCaInfo {
  url: string;
  listen: string;
  stateDir: string;
  /** The mesh root every ztunnel trusts. */
  bundleFile: string;
  /** The CA's credentials: the meshlet-ca ServiceAccount. */
  kubeconfig: string;
  cgroup: string;
  log: string;
  pid?: number;
  supervisorPid?: number;
}

// What `sandbox up` records about a running sandbox, for the CLI and tests.
import type { NodeAddresses } from '../lib/config/addresses.ts';
import type { CgroupDriver } from '../lib/cluster/cgroup-layout.ts';
import type { ZtunnelLimits } from '../lib/config/ztunnel.ts';

/**
 * A node's mesh addresses (NodeAddresses), as the DaemonSet renders them:
 * nodeIp on the underlay bridge, also the capture address and the probe
 * source; the inbound source on the node namespace's loopback (topology.ts).
 */
export interface SandboxNodeInfo extends NodeAddresses {
  name: string;
  /** Network namespace name (`ip netns`). */
  netns: string;
  podCidr: string;
  podCidr6?: string;
  /** The kubelet's credentials: system:node:<name>, so the Node authorizer applies. */
  kubeletKubeconfig: string;
  /** The kubelet API's serving certificate and key (PEM files), from the cluster CA, for the node's name and addresses. */
  kubeletServingCert: string;
  kubeletServingKey: string;
  /** kube-proxy's credentials: user system:kube-proxy, which the bootstrap RBAC binds to system:node-proxier. */
  kubeProxyKubeconfig: string;
  kubeProxyLog: string;
  /** The main process of the node's agent and ztunnel containers (status reads them from the node's runtime). */
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
  /** Times the node's kubelet restarted each container. */
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
  /** Workload certificate lifetime the ztunnels ask for (e.g. "24h"). */
  certTtl?: string;
  /** The ztunnels' timeouts and caps where they are not the defaults (lib/config/ztunnel.ts). */
  ztunnelLimits?: Partial<ZtunnelLimits>;
}


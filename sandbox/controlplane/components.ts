// The control plane's four processes and their command lines: etcd, then
// kube-apiserver (serving certificates, ServiceAccount tokens, RBAC and the
// Node authorizer), kube-controller-manager (ReplicaSets, EndpointSlices,
// ServiceAccounts, node CIDRs) and kube-scheduler. Flags as measured on these
// machines (scripts/controlplane/README.md).
import { join } from 'node:path';
import { pkiFiles, type PkiFiles } from './pki.ts';

export const COMPONENTS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const;
export type Component = (typeof COMPONENTS)[number];

/** Everything a control plane keeps, below one directory. */
export interface ControlPlaneLayout {
  dir: string;
  pki: PkiFiles;
  etcdData: string;
  /** Admin (system:masters), for kubectl and the sandbox itself. */
  adminKubeconfig: string;
  controllerManagerKubeconfig: string;
  schedulerKubeconfig: string;
  log(component: Component): string;
}

export function controlPlaneLayout(dir: string): ControlPlaneLayout {
  return {
    dir,
    pki: pkiFiles(join(dir, 'pki')),
    etcdData: join(dir, 'etcd'),
    adminKubeconfig: join(dir, 'admin.kubeconfig'),
    controllerManagerKubeconfig: join(dir, 'controller-manager.kubeconfig'),
    schedulerKubeconfig: join(dir, 'scheduler.kubeconfig'),
    log: (component) => join(dir, `${component}.log`),
  };
}

export interface ControlPlaneNetwork {
  /** The API server's address: the underlay address in the sandbox, 127.0.0.1 in tests. */
  apiServerIp: string;
  apiServerPort: number;
  /** etcd, the controller manager and the scheduler listen on loopback only. */
  etcdClientPort: number;
  etcdPeerPort: number;
  controllerManagerPort: number;
  schedulerPort: number;
  /** Comma-separated, IPv4 first (dual-stack when two). */
  serviceCidrs: string;
  /** Pod CIDRs the controller manager hands to Nodes; unset, Nodes bring their own (the sandbox's kubelets do). */
  clusterCidrs?: string;
}

export const apiServerUrl = (n: ControlPlaneNetwork): string => `https://${n.apiServerIp}:${n.apiServerPort}`;

const loopback = (port: number): string => `http://127.0.0.1:${port}`;

/** The command line (after the binary) of each component. */
export function componentArgs(layout: ControlPlaneLayout, n: ControlPlaneNetwork): Record<Component, string[]> {
  const { pki } = layout;
  const etcd = loopback(n.etcdClientPort);
  // The default (lease) endpoint reconciler refuses a loopback advertise address; tests on 127.0.0.1 go without the kubernetes Service's endpoint.
  const reconciler = n.apiServerIp.startsWith('127.') ? ['--endpoint-reconciler-type', 'none'] : [];
  const controllerAuth = (kubeconfig: string, port: number) => ['--kubeconfig', kubeconfig, '--authentication-kubeconfig', kubeconfig, '--authorization-kubeconfig', kubeconfig, '--bind-address', '127.0.0.1', '--secure-port', String(port), '--leader-elect=false'];
  return {
    etcd: [
      '--name', 'sandbox', '--data-dir', layout.etcdData,
      '--listen-client-urls', etcd, '--advertise-client-urls', etcd,
      '--listen-peer-urls', loopback(n.etcdPeerPort), '--initial-advertise-peer-urls', loopback(n.etcdPeerPort),
      '--initial-cluster', `sandbox=${loopback(n.etcdPeerPort)}`,
    ],
    'kube-apiserver': [
      '--bind-address', n.apiServerIp, '--secure-port', String(n.apiServerPort), '--advertise-address', n.apiServerIp, ...reconciler,
      '--etcd-servers', etcd, '--service-cluster-ip-range', n.serviceCidrs,
      '--authorization-mode', 'Node,RBAC', '--client-ca-file', pki.caCert,
      '--tls-cert-file', pki.apiServerCert, '--tls-private-key-file', pki.apiServerKey,
      // `kubectl logs`: the API server dials the Node's InternalIP (its Hostname does not resolve here) and verifies the kubelet's certificate.
      '--kubelet-client-certificate', pki.kubeletClientCert, '--kubelet-client-key', pki.kubeletClientKey,
      '--kubelet-certificate-authority', pki.caCert, '--kubelet-preferred-address-types', 'InternalIP,Hostname',
      '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--service-account-key-file', pki.serviceAccountPub, '--service-account-signing-key-file', pki.serviceAccountKey,
    ],
    'kube-controller-manager': [
      ...controllerAuth(layout.controllerManagerKubeconfig, n.controllerManagerPort),
      '--use-service-account-credentials', '--service-account-private-key-file', pki.serviceAccountKey, '--root-ca-file', pki.caCert,
      '--cluster-signing-cert-file', pki.caCert, '--cluster-signing-key-file', pki.caKey,
      '--service-cluster-ip-range', n.serviceCidrs,
      ...(n.clusterCidrs === undefined ? [] : ['--allocate-node-cidrs', '--cluster-cidr', n.clusterCidrs]),
      ...(n.clusterCidrs?.includes(',') ? ['--node-cidr-mask-size-ipv4', '24', '--node-cidr-mask-size-ipv6', '64'] : []),
    ],
    'kube-scheduler': controllerAuth(layout.schedulerKubeconfig, n.schedulerPort),
  };
}

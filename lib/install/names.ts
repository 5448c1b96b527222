// The names and paths the installed objects share, each defined once: an
// object's name where other objects refer to it, and every file or socket
// one container names and another serves.
import { parseListen, CA_FLAGS, DEFAULT_TOKEN_AUDIENCE } from '../config/ca.ts';

export const PART_OF = { 'app.kubernetes.io/part-of': 'meshlet' } as const;

/** The node DaemonSet: one pod per node, with the agent and the ztunnel. */
export const NODE_DAEMONSET = 'meshlet-node';
export const AGENT_CONTAINER = 'agent';
export const ZTUNNEL_CONTAINER = 'ztunnel';

/** The CA: its Deployment, its Service (what ztunnels and waypoints dial) and its container. */
export const CA_NAME = 'meshlet-ca';
export const CA_CONTAINER = 'ca';
export const CA_PORT = parseListen(CA_FLAGS.listen.default!).port;

/** ServiceAccounts of daemonset/rbac.yaml that the workloads run as. */
export const AGENT_ACCOUNT = 'meshlet-agent';
export const CA_ACCOUNT = 'meshlet-ca';

/** The kubeconfig the agent and the CA read the API with (their --kubeconfig is required). */
export const KUBECONFIG_CONFIGMAP = 'meshlet-kubeconfig';
export const KUBECONFIG_KEY = 'kubeconfig';
/** Beside the other credentials a container is given (/var/run/secrets), not in the image's /etc: a mount path needs no image directory. */
export const KUBECONFIG_DIR = '/var/run/secrets/meshlet/kubeconfig';

/** Where the kubelet puts a pod's ServiceAccount credentials, and what client libraries read in-cluster. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** The API server's CA, published into every namespace by the controller manager. */
export const KUBE_ROOT_CA_CONFIGMAP = 'kube-root-ca.crt';

/** The ztunnel's token for the CA and the mesh root it verifies the CA with: the paths the waypoint uses too (ca/waypoint-objects.ts). */
export const CA_TOKEN_AUDIENCE = DEFAULT_TOKEN_AUDIENCE;
export const CA_TOKEN_DIR = '/var/run/secrets/meshlet/tokens';
export const CA_TOKEN_FILE = 'meshlet-ca-token';
/** Lifetime of the projected tokens (the agent's for the API, the ztunnel's for the CA); the kubelet refreshes them at 80 % of it. */
export const PROJECTED_TOKEN_SECONDS = 3600;
export const TRUST_BUNDLE_CONFIGMAP = 'meshlet-ca-root-cert';
export const TRUST_BUNDLE_KEY = 'root-cert.pem';
export const TRUST_BUNDLE_DIR = '/var/run/secrets/meshlet/ca';
/** The CA's Secret for the mesh root, in the install namespace (meshlet ca --root-secret). */
export const ROOT_SECRET_NAME = 'meshlet-ca-root';

/** The node's directories the agent and the ztunnel need, mounted at the same paths. */
export const HOST_BPFFS = '/sys/fs/bpf';
export const HOST_CGROUP2_ROOT = '/sys/fs/cgroup';
export const HOST_RUN_DIR = '/run/meshlet';
/** Below the node's bpffs: the agent's pins, which outlive its restarts (one node per bpffs, so no node name in it). */
export const BPF_PIN_DIR = `${HOST_BPFFS}/meshlet`;
export const AGENT_ADMIN_SOCKET = `${HOST_RUN_DIR}/agent.sock`;
export const ZTUNNEL_ADMIN_SOCKET = `${HOST_RUN_DIR}/ztunnel.sock`;
/** The pod's own directory (an emptyDir): the agent talks to its pod's ztunnel only, also while a second pod runs on the node. */
export const POD_RUN_DIR = '/run/meshlet-pod';
export const CONTROL_SOCKET = `${POD_RUN_DIR}/control.sock`;
/** The ztunnel creates it once it listens for traffic: its startup probe. */
export const ZTUNNEL_LISTENING_FILE = `${POD_RUN_DIR}/ztunnel-listening`;
/** Where the CA writes root-cert.pem (its --state-dir, an emptyDir: its state is in its root Secret); like every mount path, below /var/run. */
export const CA_STATE_DIR = '/var/run/meshlet-ca';

/** Environment variables from the downward API, referenced in args as $(NAME). */
export const ENV = { nodeName: 'NODE_NAME', hostIp: 'HOST_IP', hostIps: 'HOST_IPS', podUid: 'POD_UID' } as const;
export const envRef = (name: (typeof ENV)[keyof typeof ENV]): string => `$(${name})`;

/** The cluster DNS domain the CA's serving certificate names (kubelet's --cluster-domain default). */
export const CLUSTER_DOMAIN = 'cluster.local';

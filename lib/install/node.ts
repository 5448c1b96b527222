// The node DaemonSet: one pod per node, in the node's network and PID
// namespaces, with the agent (capture: BPF programs, maps, the strict sweep)
// and the ztunnel (the proxy) as its two containers. Their arguments are
// rendered from their own flag tables (lib/config/agent.ts, ztunnel.ts) as
// the sandbox's supervisors render them, with what only the node knows (its
// name, its addresses) filled in by the kubelet from the downward API.
import { join } from 'node:path';
import { AGENT_FLAGS, type AgentConfig } from '../config/agent.ts';
import { configArgs, type FlagTable } from '../config/flags.ts';
import { limitsSet, ZTUNNEL_FLAGS } from '../config/ztunnel.ts';
import { CGROUP_DRIVERS, podCgroupPath, QOS_CLASSES, type CgroupDriver } from '../cluster/cgroup-layout.ts';
import { PORTS } from '../mesh/model.ts';
import { caUrl } from './ca-deployment.ts';
import {
  AGENT_ACCOUNT, AGENT_ADMIN_SOCKET, AGENT_CONTAINER, BPF_PIN_DIR, CA_TOKEN_AUDIENCE, CA_TOKEN_DIR, CA_TOKEN_FILE, PROJECTED_TOKEN_SECONDS,
  CONTROL_SOCKET, ENV, envRef, HOST_BPFFS, HOST_CGROUP2_ROOT, HOST_RUN_DIR, KUBE_ROOT_CA_CONFIGMAP, KUBECONFIG_CONFIGMAP, KUBECONFIG_DIR,
  KUBECONFIG_KEY, NODE_DAEMONSET, PART_OF, POD_RUN_DIR, SERVICE_ACCOUNT_DIR, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_DIR, TRUST_BUNDLE_KEY,
  ZTUNNEL_ADMIN_SOCKET, ZTUNNEL_CONTAINER, ZTUNNEL_LISTENING_FILE,
} from './names.ts';
import type { FieldComment, Manifest } from './object.ts';
import type { InstallOptions } from './options.ts';

export const NODE_LABELS = { 'app.kubernetes.io/name': NODE_DAEMONSET, 'app.kubernetes.io/component': 'node', ...PART_OF } as const;

/** On SIGTERM the ztunnel lets open connections finish this long, inside the pod's grace period. */
export const DRAIN_SECONDS = 25;
export const TERMINATION_GRACE_SECONDS = 30;

/**
 * Node flags of the ztunnel's process, through NODE_OPTIONS (which allows
 * this one): the young generation capped at 1 MB a semi-space (V8's default
 * grows to 16 MB). A proxy allocates little that lives, and frequent small
 * scavenges free the read buffers of relayed bytes sooner, which took ~70 MB
 * off its RSS after a bulk transfer at no measured throughput cost.
 */
export const ZTUNNEL_NODE_OPTIONS = '--max-semi-space-size=1';

/** Each capability the agent asks for, and the kernel check that needs it (the container gets these alone, never privileged). */
export const AGENT_CAPABILITIES: readonly { name: string; why: string }[] = [
  { name: 'BPF', why: 'bpf(): create maps, load programs (bpf_capable)' },
  { name: 'PERFMON', why: 'the strict-sweep tcp iterator is a tracing program, and reading drop events opens per-CPU perf events (perfmon_capable)' },
  { name: 'NET_ADMIN', why: 'load the sock_ops, sock_addr and cgroup_skb programs and attach them to cgroups' },
  { name: 'SYS_ADMIN', why: 'setns into a pod\'s network namespace for the strict sweep (nsenter); bpftool\'s *_GET_FD_BY_ID lookups (cgroup tree, prog and map show by id)' },
  { name: 'SYS_PTRACE', why: 'open /proc/<pid>/ns/net of pod processes running as other users' },
];

/** The QoS classes in the order the agent's wrapper tries them: the pod requests without limits, so Burstable, unless a LimitRange made it another. */
const QOS_ORDER = ['Burstable', ...QOS_CLASSES.filter((q) => q !== 'Burstable')] as const;
/** A stand-in UID (letters only, so both drivers keep it as it is) that the wrapper replaces. */
const UID_PLACEHOLDER = 'PODUIDPLACEHOLDER';

/** The kubelet's cgroup root inside the agent container, where the node's cgroup v2 root is mounted. */
export const kubeletCgroupDir = (o: Pick<InstallOptions, 'kubeletCgroupRoot'>): string => join(HOST_CGROUP2_ROOT, o.kubeletCgroupRoot).replace(/\/+$/, '');

/**
 * The directories the DaemonSet pod's cgroup may be, as shell words: the
 * kubelet names it after the pod's UID, QoS class and its cgroup driver
 * (lib/cluster/cgroup-layout.ts), the systemd driver with the UID's dashes
 * as underscores ($unit in the wrapper).
 */
export function podCgroupCandidates(o: Pick<InstallOptions, 'kubeletCgroupRoot' | 'cgroupDriver'>): string[] {
  const drivers: readonly CgroupDriver[] = o.cgroupDriver === 'auto' ? CGROUP_DRIVERS : [o.cgroupDriver];
  return drivers.flatMap((driver) => QOS_ORDER.map((qos) => {
    const dir = join(kubeletCgroupDir(o), podCgroupPath(UID_PLACEHOLDER, qos, driver));
    return `"${dir.replace(UID_PLACEHOLDER, driver === 'systemd' ? '${unit}' : `\${${ENV.podUid}}`)}"`;
  }));
}

/** The IPv6 inbound source as a shell word: the install's, else the node's own IPv6 address. */
const inboundSource6 = (o: Pick<InstallOptions, 'inboundSourceIp6'>): string => o.inboundSourceIp6 ?? '"$ip6"';

/**
 * Sh lines that find the node's IPv6 address in the downward API's
 * status.hostIPs (comma-separated, one per family) and, on a dual-stack
 * node, append `words` ("$ip6" standing for it) to the arguments: a pod spec
 * can template the whole list only, not one family of it.
 */
function ipv6ArgsScript(words: readonly string[]): string[] {
  return [
    'ip6=',
    `for ip in $(printf '%s' "\${${ENV.hostIps}:-}" | tr , ' '); do case "$ip" in *:*) ip6=$ip ;; esac; done`,
    `if [ -n "$ip6" ]; then set -- "$@" ${words.join(' ')}; fi`,
  ];
}

/** The ztunnel's entry: its IPv6 addresses on a dual-stack node (ipv6ArgsScript), then the ztunnel. */
export function ztunnelEntryScript(o: Pick<InstallOptions, 'inboundSourceIp6'>): string {
  return [
    'set -eu',
    ...ipv6ArgsScript(['--capture-ip6', '"$ip6"', '--node-ip6', '"$ip6"', '--inbound-source-ip6', inboundSource6(o)]),
    'exec meshlet ztunnel "$@"',
  ].join('\n');
}

/**
 * The agent's entry: the capture hooks for the ztunnel (getsockname) go on
 * a cgroup the agent must name (--ztunnel-cgroup), and a DaemonSet cannot
 * know its pod's cgroup before the kubelet makes it. So a few lines of sh
 * find the pod's cgroup (both containers are in it; the agent's own sockets
 * are never in the redirect table, so the hooks leave them alone) and exec
 * the agent with it. They go once the agent finds its pod's cgroup itself
 * (see daemonset/README.md). They also refuse a node without cgroup v2.
 */
export function agentEntryScript(o: Pick<InstallOptions, 'kubeletCgroupRoot' | 'cgroupDriver' | 'inboundSourceIp6'>): string {
  const candidates = podCgroupCandidates(o);
  return [
    'set -eu',
    `if [ ! -f ${HOST_CGROUP2_ROOT}/cgroup.controllers ]; then`,
    `  echo "meshlet agent: ${HOST_CGROUP2_ROOT} on this node is not a cgroup v2 mount; meshlet needs cgroup v2 (the unified hierarchy): cgroup v1 and hybrid nodes are not supported" >&2`,
    '  exit 1',
    'fi',
    ...ipv6ArgsScript(['--capture-ip6', '"$ip6"', '--probe-source-ip6', '"$ip6"', '--inbound-source-ip6', inboundSource6(o)]),
    `unit=$(printf '%s' "$${ENV.podUid}" | tr - _)`,
    `for dir in ${candidates.join(' ')}; do`,
    '  if [ -d "$dir" ]; then exec meshlet agent --ztunnel-cgroup "$dir" "$@"; fi',
    'done',
    `echo "meshlet agent: this pod's cgroup (pod UID $${ENV.podUid}) is none of ${candidates.join(' ').replaceAll('"', '')}; set meshlet install's --kubelet-cgroup-root and --cgroup-driver to the kubelet's --cgroup-root and --cgroup-driver" >&2`,
    'exit 1',
  ].join('\n');
}

/** A literal for the kubelet's $(VAR) expansion: every $ doubled, so the shell gets its own. */
const kubeletLiteral = (text: string): string => text.replaceAll('$', '$$');

const { ztunnelCgroup: _ztunnelCgroup, ...AGENT_ARG_FLAGS } = AGENT_FLAGS;
/** The agent's flags but --ztunnel-cgroup, which its entry script adds. */
const AGENT_ARGS_TABLE: FlagTable<Omit<AgentConfig, 'ztunnelCgroup'>> = AGENT_ARG_FLAGS;

/** `meshlet agent`'s arguments (but --ztunnel-cgroup): its flag table, with this node's values from the downward API. */
export function agentArgs(o: InstallOptions): string[] {
  return configArgs(AGENT_ARGS_TABLE, {
    node: envRef(ENV.nodeName),
    kubeconfig: `${KUBECONFIG_DIR}/${KUBECONFIG_KEY}`,
    kubeletCgroupRoot: kubeletCgroupDir(o),
    cgroupDriver: o.cgroupDriver,
    bpfDir: BPF_PIN_DIR,
    // Pods reach the node's own address from their namespace whatever the CNI, and the ztunnel listens on it.
    captureIp4: envRef(ENV.hostIp),
    inboundSourceIp4: o.inboundSourceIp4 ?? envRef(ENV.hostIp),
    // The kubelet dials probes from the node; with most CNIs (routed veths) their source is the node's address.
    probeSourceIp4: envRef(ENV.hostIp),
    serviceCidrs: o.serviceCidrs,
    controlSocket: CONTROL_SOCKET,
    adminSocket: AGENT_ADMIN_SOCKET,
    // Its DaemonSet gone as it stops: uninstall, and the agent leaves nothing in the node's kernel.
    daemonset: `${o.namespace}/${NODE_DAEMONSET}`,
    // Mounted at the node's own paths: the config names the plugin's socket and files as the runtime sees them.
    cniConfDir: o.cniConfDir,
    cniBinDir: o.cniBinDir,
  });
}

/** `meshlet ztunnel`'s arguments: its flag table, with this node's values from the downward API. */
export function ztunnelArgs(o: InstallOptions): string[] {
  return configArgs(ZTUNNEL_FLAGS, {
    node: envRef(ENV.nodeName),
    captureIp4: envRef(ENV.hostIp),
    nodeIp4: envRef(ENV.hostIp),
    inboundSourceIp4: o.inboundSourceIp4 ?? envRef(ENV.hostIp),
    controlSocket: CONTROL_SOCKET,
    adminSocket: ZTUNNEL_ADMIN_SOCKET,
    listeningFile: ZTUNNEL_LISTENING_FILE,
    drainSeconds: DRAIN_SECONDS,
    trustDomain: o.trustDomain,
    caUrl: caUrl(o.namespace),
    caBundle: `${TRUST_BUNDLE_DIR}/${TRUST_BUNDLE_KEY}`,
    caTokenFile: `${CA_TOKEN_DIR}/${CA_TOKEN_FILE}`,
    certTtl: o.certTtl,
    ...limitsSet(o),
  });
}

const fieldRef = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });
const NODE_ENV = [fieldRef(ENV.nodeName, 'spec.nodeName'), fieldRef(ENV.hostIp, 'status.hostIP'), fieldRef(ENV.hostIps, 'status.hostIPs')];

const VOLUME = {
  bpffs: 'bpffs', cgroup: 'cgroup', run: 'meshlet-run', cniConf: 'cni-conf', cniBin: 'cni-bin', podRun: 'meshlet-pod', kubeconfig: 'kubeconfig',
  agentApi: 'agent-api-token', caToken: 'meshlet-ca-token', caRoot: 'meshlet-ca-root',
} as const;

const POD_SPEC = ['spec', 'template', 'spec'] as const;
const VOLUMES = [...POD_SPEC, 'volumes'] as const;

export function nodeDaemonSet(o: InstallOptions): Manifest {
  const agent = {
    name: AGENT_CONTAINER,
    image: o.image,
    command: ['/bin/sh', '-c', kubeletLiteral(agentEntryScript(o)), 'meshlet-agent'],
    args: agentArgs(o),
    env: [...NODE_ENV, fieldRef(ENV.podUid, 'metadata.uid')],
    resources: { requests: { cpu: '50m', memory: '128Mi' } },
    securityContext: {
      privileged: false,
      // The API server takes added SYS_ADMIN as escalation whatever this says; say so.
      allowPrivilegeEscalation: true,
      readOnlyRootFilesystem: true,
      runAsUser: 0,
      runAsNonRoot: false,
      capabilities: { drop: ['ALL'], add: AGENT_CAPABILITIES.map((c) => c.name) },
      seccompProfile: { type: 'RuntimeDefault' },
      appArmorProfile: { type: 'Unconfined' },
      seLinuxOptions: { type: 'spc_t', level: 's0' },
    },
    volumeMounts: [
      { name: VOLUME.bpffs, mountPath: HOST_BPFFS },
      { name: VOLUME.cgroup, mountPath: HOST_CGROUP2_ROOT, readOnly: true },
      { name: VOLUME.run, mountPath: HOST_RUN_DIR },
      { name: VOLUME.cniConf, mountPath: o.cniConfDir },
      { name: VOLUME.cniBin, mountPath: o.cniBinDir },
      { name: VOLUME.podRun, mountPath: POD_RUN_DIR },
      { name: VOLUME.kubeconfig, mountPath: KUBECONFIG_DIR, readOnly: true },
      { name: VOLUME.agentApi, mountPath: SERVICE_ACCOUNT_DIR, readOnly: true },
    ],
  };
  const ztunnel = {
    name: ZTUNNEL_CONTAINER,
    image: o.image,
    command: ['/bin/sh', '-c', kubeletLiteral(ztunnelEntryScript(o)), 'meshlet-ztunnel'],
    args: ztunnelArgs(o),
    env: [...NODE_ENV, { name: 'NODE_OPTIONS', value: ZTUNNEL_NODE_OPTIONS }],
    // Started once this pod's own ztunnel listens for traffic: the readiness
    // port is the node's, and during a rolling update the old ztunnel listens
    // on it too until it sees the new one take over (ztunnel/ztunnel.ts).
    startupProbe: { exec: { command: ['test', '-e', ZTUNNEL_LISTENING_FILE] }, periodSeconds: 1, failureThreshold: 300 },
    // Ready once it holds the agent's first snapshot and its certificates (ztunnel/admin.ts); on the node's address, where it listens.
    readinessProbe: { httpGet: { path: '/healthz/ready', port: PORTS.readiness }, periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 },
    resources: { requests: { cpu: '200m', memory: '192Mi' } },
    securityContext: {
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsUser: 0,
      runAsNonRoot: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: VOLUME.run, mountPath: HOST_RUN_DIR },
      { name: VOLUME.podRun, mountPath: POD_RUN_DIR },
      { name: VOLUME.caToken, mountPath: CA_TOKEN_DIR, readOnly: true },
      { name: VOLUME.caRoot, mountPath: TRUST_BUNDLE_DIR, readOnly: true },
    ],
  };
  const object = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: NODE_DAEMONSET, namespace: o.namespace, labels: { ...NODE_LABELS } },
    spec: {
      selector: { matchLabels: { 'app.kubernetes.io/name': NODE_DAEMONSET } },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: { ...NODE_LABELS, 'istio.io/dataplane-mode': 'none', 'sidecar.istio.io/inject': 'false' },
        },
        spec: {
          serviceAccountName: AGENT_ACCOUNT,
          automountServiceAccountToken: false,
          hostNetwork: true,
          hostPID: true,
          dnsPolicy: 'ClusterFirstWithHostNet',
          priorityClassName: 'system-node-critical',
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          containers: [agent, ztunnel],
          volumes: [
            { name: VOLUME.bpffs, hostPath: { path: HOST_BPFFS, type: 'Directory' } },
            { name: VOLUME.cgroup, hostPath: { path: HOST_CGROUP2_ROOT, type: 'Directory' } },
            { name: VOLUME.run, hostPath: { path: HOST_RUN_DIR, type: 'DirectoryOrCreate' } },
            { name: VOLUME.cniConf, hostPath: { path: o.cniConfDir, type: 'DirectoryOrCreate' } },
            { name: VOLUME.cniBin, hostPath: { path: o.cniBinDir, type: 'DirectoryOrCreate' } },
            { name: VOLUME.podRun, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
            { name: VOLUME.kubeconfig, configMap: { name: KUBECONFIG_CONFIGMAP } },
            {
              name: VOLUME.agentApi,
              projected: {
                sources: [
                  { serviceAccountToken: { path: 'token', expirationSeconds: PROJECTED_TOKEN_SECONDS } },
                  { configMap: { name: KUBE_ROOT_CA_CONFIGMAP, items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                  { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
                ],
              },
            },
            { name: VOLUME.caToken, projected: { sources: [{ serviceAccountToken: { audience: CA_TOKEN_AUDIENCE, expirationSeconds: PROJECTED_TOKEN_SECONDS, path: CA_TOKEN_FILE } }] } },
            { name: VOLUME.caRoot, configMap: { name: TRUST_BUNDLE_CONFIGMAP, optional: true } },
          ],
        },
      },
    },
  };
  const agentAt = [...POD_SPEC, 'containers', 0] as const;
  const ztunnelAt = [...POD_SPEC, 'containers', 1] as const;
  const comments: FieldComment[] = [
    { path: ['spec', 'updateStrategy'], text: 'A new pod comes up next to the old one, which drains once the new one is ready. On the host network that needs every listener to reuse its port (SO_REUSEPORT): see daemonset/README.md, "Upgrades".' },
    { path: [...POD_SPEC, 'serviceAccountName'], text: 'A pod has one ServiceAccount: the agent\'s, which its ClusterRole is bound to. Only the agent container gets an API token (agent-api-token); the ztunnel gets a token for the CA alone (meshlet-ca-token), which the CA accepts for this account (its --node-account).' },
    { path: [...POD_SPEC, 'hostNetwork'], text: 'The ztunnel listens on the node\'s address (capture 15001, HBONE 15008, metrics 15020, readiness 15021).' },
    { path: [...POD_SPEC, 'hostPID'], text: 'The agent finds a pod\'s network namespace through its processes (cgroup.procs, then /proc/<pid>/ns/net) for the strict sweep.' },
    { path: [...agentAt, 'command'], text: 'sh only finds this pod\'s cgroup for --ztunnel-cgroup, then execs the agent (see lib/install/node.ts).' },
    { path: [...ztunnelAt, 'command'], text: 'sh only adds the node\'s IPv6 address from status.hostIPs on a dual-stack node, then execs the ztunnel (see lib/install/node.ts).' },
    ...AGENT_CAPABILITIES.map((c, i) => ({ path: [...agentAt, 'securityContext', 'capabilities', 'add', i], text: c.why })),
    { path: [...agentAt, 'securityContext', 'appArmorProfile'], text: 'The runtime\'s default AppArmor profile denies writes below /sys/fs/ but the cgroup tree: the agent pins in /sys/fs/bpf.' },
    { path: [...agentAt, 'securityContext', 'seLinuxOptions'], text: 'On SELinux nodes, container_t may not use bpffs or other cgroups; spc_t may (as Cilium\'s agent runs).' },
    { path: [...ztunnelAt, 'securityContext', 'capabilities'], text: 'None: the ztunnel binds plain sockets on the node\'s addresses (the getsockname hook gives it the original destination, where Istio\'s ztunnel needs NET_ADMIN, NET_RAW and SYS_ADMIN for TPROXY and setns).' },
    { path: [...ztunnelAt, 'securityContext', 'runAsUser'], text: 'Root without capabilities: it creates its admin socket in the node\'s /run/meshlet.' },
    { path: [...VOLUMES, 0], text: 'The node\'s bpffs: pins outlive the agent, so a restarted agent adopts them. Must be a bpffs mount on the node (systemd mounts one).' },
    { path: [...VOLUMES, 1], text: 'The node\'s cgroup v2 root, read-only: the agent attaches to pod cgroups and reads their ids and processes.' },
    { path: [...VOLUMES, 2], text: 'The admin sockets (agent.sock, ztunnel.sock), for whoever debugs the node; the CNI plugin reaches the agent on agent.sock.' },
    { path: [...VOLUMES, 3], text: 'The node\'s CNI configs: the agent chains its plugin into the primary one, keeps the list of ambient namespaces beside it (on disk, for after a reboot), and takes both out on uninstall.' },
    { path: [...VOLUMES, 4], text: 'The node\'s CNI plugins: the agent puts the meshlet-cni plugin there (one script, run by a copy of the image\'s node).' },
    { path: [...VOLUMES, 5], text: 'The agent-ztunnel control socket: this pod\'s, so a second pod on the node (an upgrade) never talks to this one.' },
  ];
  return { object, comments };
}

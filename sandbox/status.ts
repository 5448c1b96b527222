// `status`: sandbox.json merged with live pids (each node's supervisor, and
// its agent and ztunnel: its meshlet-node pod's containers), and the pods and
// Services the sandbox's API server holds.
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { SandboxInfo, SandboxPodInfo, SandboxServiceInfo } from './info.ts';
import { cgroupPopulated } from './cgroup.ts';
import { openCluster } from './cluster-client.ts';
import { pidAlive } from './proc.ts';
import { placePod } from './pods.ts';
import { readControlPlanePids, readPids } from './registry.ts';
import { runningContainer } from './kubelet/sandbox-runtime.ts';
import { nodeDir } from './layout.ts';
import { isNodeDaemonSetPod } from './node-pod.ts';
import { AGENT_CONTAINER, ZTUNNEL_CONTAINER } from '../lib/install/names.ts';
import { DATAPLANE_MODE_LABEL, isEnrolled } from '../lib/cluster/convert.ts';

const live = (pid: number | undefined): number | undefined => (pidAlive(pid) ? pid : undefined);

/** A node's agent or ztunnel as a container of its meshlet-node pod (the sandbox runs meshlet as a DaemonSet): its pid and restarts. */
function daemonSetContainer(name: string, node: string, pods: readonly V1Pod[], container: string): { pid?: number; restarts?: number } {
  const pod = pods.find((p) => p.spec?.nodeName === node && isNodeDaemonSetPod(p) && !p.metadata?.deletionTimestamp);
  if (!pod?.metadata?.uid) return {};
  const pid = live(runningContainer(nodeDir(name, node), pod.metadata.uid, container)?.pid);
  const restarts = pod.status?.containerStatuses?.find((c) => c.name === container)?.restartCount;
  return { ...(pid !== undefined ? { pid } : {}), ...(restarts !== undefined ? { restarts } : {}) };
}

export async function sandboxStatus(name: string): Promise<SandboxInfo> {
  const cluster = await openCluster(name);
  const { info, core } = cluster;
  const [namespaceList, podList, serviceList] = await Promise.all([core.listNamespace(), core.listPodForAllNamespaces(), core.listServiceForAllNamespaces()]);
  const nodes = await Promise.all(info.nodes.map(async (node) => {
    const pids = await readPids(name, node.name);
    const agent = daemonSetContainer(name, node.name, podList.items, AGENT_CONTAINER);
    const ztunnel = daemonSetContainer(name, node.name, podList.items, ZTUNNEL_CONTAINER);
    return { ...node, supervisorPid: live(pids?.supervisorPid), agentPid: agent.pid, ztunnelPid: ztunnel.pid, agentRestarts: agent.restarts, ztunnelRestarts: ztunnel.restarts };
  }));
  const controlPlane = { ...info.controlPlane, supervisorPid: live((await readControlPlanePids(name))?.supervisorPid) };
  const namespaces = new Map<string, V1Namespace>(namespaceList.items.map((ns) => [ns.metadata?.name ?? '', ns]));
  const pods: SandboxPodInfo[] = [];
  for (const pod of podList.items) {
    const node = info.nodes.find((n) => n.name === pod.spec?.nodeName);
    const meta = pod.metadata;
    if (!node || !meta?.uid || !meta.name || pod.spec?.hostNetwork) continue;
    const namespace = meta.namespace ?? 'default';
    const place = placePod(name, node, pod);
    const ips = pod.status?.podIPs?.map((p) => p.ip) ?? [];
    pods.push({
      name: meta.name,
      namespace,
      uid: meta.uid,
      node: node.name,
      netns: place.netns,
      cgroup: place.cgroup,
      ip: ips[0] ?? '',
      ...(ips[1] ? { ip6: ips[1] } : {}),
      enrolled: isEnrolled(meta.labels?.[DATAPLANE_MODE_LABEL], namespaces.get(namespace)?.metadata?.labels?.[DATAPLANE_MODE_LABEL]),
      serviceAccount: pod.spec?.serviceAccountName ?? 'default',
      running: await cgroupPopulated(place.cgroup),
      logDir: place.logDir,
    });
  }
  pods.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const services: SandboxServiceInfo[] = serviceList.items.map((svc) => ({
    name: svc.metadata?.name ?? '',
    namespace: svc.metadata?.namespace ?? 'default',
    clusterIPs: svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : []),
    ports: (svc.spec?.ports ?? []).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      port: p.port,
      ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
      ...(p.protocol ? { protocol: p.protocol } : {}),
    })),
  }));
  return { ...info, controlPlane, nodes, pods, services };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const pidText = (pid: number | undefined): string => (pid === undefined ? 'down' : String(pid));

export function formatStatus(info: SandboxInfo): string {
  const out = [`sandbox ${info.name}: API server ${info.controlPlane.hostServer} (kubeconfig ${info.controlPlane.kubeconfig}; \`meshlet sandbox kubectl -- get pods -A -o wide\`)`, ''];
  out.push(table(['NODE', 'UNDERLAY', 'POD CIDRS', 'SUPERVISOR', 'AGENT', 'ZTUNNEL', 'RESTARTS'], info.nodes.map((n) => [
    n.name,
    [n.nodeIp4, n.nodeIp6].filter(Boolean).join(','),
    [n.podCidr, n.podCidr6].filter(Boolean).join(','),
    pidText(n.supervisorPid),
    pidText(n.agentPid),
    pidText(n.ztunnelPid),
    `${n.agentRestarts ?? 0}/${n.ztunnelRestarts ?? 0}`,
  ])));
  out.push('');
  if (info.pods.length === 0) out.push('no pods: `meshlet sandbox apply -f FILE` runs some');
  else {
    out.push(table(['NAMESPACE', 'POD', 'NODE', 'IPS', 'ENROLLED', 'RUNNING'], info.pods.map((p) => [
      p.namespace, p.name, p.node, [p.ip, p.ip6].filter(Boolean).join(','), p.enrolled ? 'yes' : 'no', p.running ? 'yes' : 'no',
    ])));
  }
  if (info.services?.length) {
    out.push('');
    out.push(table(['NAMESPACE', 'SERVICE', 'CLUSTER-IPS', 'PORTS'], info.services.map((s) => [
      s.namespace, s.name, s.clusterIPs.join(','), s.ports.map((p) => `${p.port}${p.targetPort !== undefined && p.targetPort !== p.port ? `->${p.targetPort}` : ''}/${p.protocol ?? 'TCP'}`).join(','),
    ])));
  }
  return out.join('\n');
}

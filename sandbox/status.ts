// `status`: sandbox.json merged with live pids and the pods and Services of
// the cluster state, read once through the cluster source the caller names.
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { SandboxInfo, SandboxPodInfo, SandboxServiceInfo } from './info.ts';
import { cgroupPopulated } from './cgroup.ts';
import { pidAlive } from './proc.ts';
import { placePod } from './pods.ts';
import { readCaPids, readPids, readSandboxFile } from './registry.ts';
import type { StoredObject } from './store.ts';
import { DATAPLANE_MODE_LABEL, isEnrolled } from '../lib/cluster/convert.ts';
import { readOnce, type ClusterSource } from '../lib/cluster/sources/source.ts';

/** `sourceOf` names where the sandbox's cluster objects are read from (store.ts clusterSource: its state file). */
export async function sandboxStatus(name: string, sourceOf: (info: SandboxInfo) => ClusterSource): Promise<SandboxInfo> {
  const info = await readSandboxFile(name);
  const nodes = await Promise.all(info.nodes.map(async (node) => {
    const pids = await readPids(name, node.name);
    const live = (pid: number | undefined): number | undefined => (pidAlive(pid) ? pid : undefined);
    return {
      ...node,
      supervisorPid: live(pids?.supervisorPid),
      agentPid: live(pids?.agentPid),
      ztunnelPid: live(pids?.ztunnelPid),
      agentRestarts: pids?.agentRestarts,
      ztunnelRestarts: pids?.ztunnelRestarts,
    };
  }));
  const caPids = await readCaPids(name);
  const live = (pid: number | undefined): number | undefined => (pidAlive(pid) ? pid : undefined);
  const ca = info.ca ? { ...info.ca, pid: live(caPids?.caPid), supervisorPid: live(caPids?.supervisorPid) } : undefined;
  // Raw objects as the sandbox stored them: the StoredObject shape that readState gives its callers too.
  const objects = ((await readOnce(sourceOf(info)))?.objects ?? []) as StoredObject[];
  const namespaces = new Map<string, V1Namespace>();
  for (const o of objects) if (o.kind === 'Namespace' && o.metadata?.name) namespaces.set(o.metadata.name, o as V1Namespace);
  const pods: SandboxPodInfo[] = [];
  for (const o of objects) {
    if (o.kind !== 'Pod') continue;
    const pod = o as V1Pod & StoredObject;
    const node = info.nodes.find((n) => n.name === pod.spec?.nodeName);
    const meta = pod.metadata;
    if (!node || !meta?.uid || !meta.name) continue;
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
      enrolled: isEnrolled(pod.metadata?.labels?.[DATAPLANE_MODE_LABEL], namespaces.get(namespace)?.metadata?.labels?.[DATAPLANE_MODE_LABEL]),
      serviceAccount: pod.spec?.serviceAccountName ?? 'default',
      running: await cgroupPopulated(place.cgroup),
      logFile: place.logFile,
    });
  }
  const services: SandboxServiceInfo[] = objects
    .filter((o) => o.kind === 'Service' && o.apiVersion === 'v1')
    .map((o) => {
      const svc = o as V1Service;
      return {
        name: svc.metadata?.name ?? '',
        namespace: svc.metadata?.namespace ?? 'default',
        clusterIPs: svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : []),
        ports: (svc.spec?.ports ?? []).map((p) => ({
          ...(p.name ? { name: p.name } : {}),
          port: p.port,
          ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
          ...(p.protocol ? { protocol: p.protocol } : {}),
        })),
      };
    });
  return { ...info, nodes, pods, services, ...(ca ? { ca } : {}) };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const pidText = (pid: number | undefined): string => (pid === undefined ? 'down' : String(pid));

export function formatStatus(info: SandboxInfo): string {
  const out = [`sandbox ${info.name}: state ${info.stateFile}`, ''];
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

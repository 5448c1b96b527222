// The bench's cluster objects: a server (node-2) and a client (node-1) in a
// namespace outside the mesh and in an enrolled one, plus idle pods for the
// enrollment figures (the L7 section's are l7-manifest.ts's). Built as
// objects and serialised, never by string pasting.
// The API server wants an image; sandbox containers run their command on the
// host, so the image just names it.
import { stringify } from 'yaml';
import { DATAPLANE_MODE_LABEL as DATAPLANE_MODE } from '../../lib/cluster/convert.ts';

export const NS_DIRECT = 'bench-direct';
export const NS_MESH = 'bench-mesh';
/** Pods enrolled all at once by labelling their namespace. */
export const NS_SCALE = 'bench-scale';
/** One pod enrolled and un-enrolled by its own label. */
export const NS_SOLO = 'bench-solo';
export const SOLO_POD = 'solo';
/** Service accounts the scale pods spread over: identities the ztunnels must hold certificates for. */
const SCALE_ACCOUNTS = 10;

export type Obj = Record<string, unknown>;

export const namespace = (name: string, enrolled: boolean): Obj => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels: enrolled ? { [DATAPLANE_MODE]: 'ambient' } : {} },
});

export const serviceAccount = (ns: string, name: string): Obj => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } });

export function pod(ns: string, name: string, sa: string, command: string[], node?: string, labels: Record<string, string> = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app: name, ...labels } },
    spec: { ...(node ? { nodeName: node } : {}), serviceAccountName: sa, containers: [{ name: 'main', image: command[0], command }] },
  };
}

export const toYaml = (objects: readonly Obj[]): string => objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');

/** Client and server pods of the direct and mesh paths; `nginxConf(ns)` is the server's config file. */
export function workloadManifest(nginxConf: (ns: string) => string): string {
  const objects: Obj[] = [];
  for (const [ns, enrolled] of [[NS_DIRECT, false], [NS_MESH, true]] as const) {
    objects.push(namespace(ns, enrolled), serviceAccount(ns, 'server'), serviceAccount(ns, 'client'));
    objects.push(pod(ns, 'server', 'server', ['nginx', '-e', 'stderr', '-c', nginxConf(ns)], 'node-2'));
    objects.push(pod(ns, 'client', 'client', ['sleep', 'infinity'], 'node-1'));
  }
  return toYaml(objects);
}

/** `count` idle pods in a namespace outside the mesh, spread over the nodes by the scheduler. */
export function scaleManifest(count: number): string {
  const objects: Obj[] = [namespace(NS_SCALE, false)];
  for (let i = 0; i < SCALE_ACCOUNTS; i++) objects.push(serviceAccount(NS_SCALE, `sa-${i}`));
  for (let i = 0; i < count; i++) objects.push(pod(NS_SCALE, `idle-${i}`, `sa-${i % SCALE_ACCOUNTS}`, ['sleep', 'infinity']));
  return toYaml(objects);
}

export function soloNamespaceManifest(): string {
  return toYaml([namespace(NS_SOLO, false), serviceAccount(NS_SOLO, SOLO_POD)]);
}

/** The solo pod, enrolled by its own label or not. */
export function soloPodManifest(enrolled: boolean): string {
  return toYaml([pod(NS_SOLO, SOLO_POD, SOLO_POD, ['sleep', 'infinity'], 'node-1', enrolled ? { [DATAPLANE_MODE]: 'ambient' } : {})]);
}

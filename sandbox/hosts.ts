// Service names for pods, without a DNS server: each namespace gets a hosts
// file listing every Service the way cluster DNS would answer from there
// ("web" in its own namespace, "web.demo", "web.demo.svc.cluster.local"),
// bind-mounted over /etc/hosts in the pod's processes. Files are rewritten in
// place (not renamed) so bind mounts of running pods see new Services. A
// resolv.conf pointing at nothing makes other names fail fast.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Service } from '@kubernetes/client-node';
import { RUN_ROOT } from './layout.ts';
import type { NameFiles } from './proc.ts';
import type { StoredObject } from './store.ts';

export const CLUSTER_DOMAIN = 'cluster.local';

const dir = (sandbox: string): string => join(RUN_ROOT, sandbox, 'hosts');

/** The files a pod of `namespace` sees as /etc/hosts and /etc/resolv.conf. */
export const nameFiles = (sandbox: string, namespace: string): NameFiles => ({
  hosts: join(dir(sandbox), namespace),
  resolvConf: join(dir(sandbox), 'resolv.conf'),
});

// No DNS server answers in the sandbox: fail other names at once (loopback
// refuses) instead of waiting out the host resolver's timeouts.
const RESOLV_CONF = '# meshlet sandbox: no DNS server; Service names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n';

export function hostsText(objects: Iterable<StoredObject>, namespace: string): string {
  const lines = [
    `# meshlet sandbox: cluster Services as seen from namespace ${namespace}`,
    '127.0.0.1 localhost',
    '::1 localhost ip6-localhost ip6-loopback',
  ];
  for (const o of objects) {
    if (o.kind !== 'Service' || o.apiVersion !== 'v1') continue;
    const svc = o as V1Service;
    const name = svc.metadata?.name;
    const ns = svc.metadata?.namespace ?? 'default';
    if (!name) continue;
    const names = [`${name}.${ns}.svc.${CLUSTER_DOMAIN}`, `${name}.${ns}.svc`, `${name}.${ns}`, ...(ns === namespace ? [name] : [])];
    for (const ip of svc.spec?.clusterIPs ?? []) if (ip !== 'None') lines.push(`${ip} ${names.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Rewrites the hosts file of every namespace that has pods or Services, or of `only`. */
export async function writeHostsFiles(sandbox: string, objects: ReadonlyMap<string, StoredObject>, only?: string): Promise<void> {
  const namespaces = new Set<string>();
  if (only !== undefined) namespaces.add(only);
  else for (const o of objects.values()) if (o.kind === 'Pod' || o.kind === 'Service' || o.kind === 'Namespace') namespaces.add(o.kind === 'Namespace' ? o.metadata?.name ?? 'default' : o.metadata?.namespace ?? 'default');
  await mkdir(dir(sandbox), { recursive: true });
  await writeFile(join(dir(sandbox), 'resolv.conf'), RESOLV_CONF);
  for (const ns of namespaces) await writeFile(nameFiles(sandbox, ns).hosts, hostsText(objects.values(), ns));
}

/** The namespace's name files, if written (by any apply since the namespace got objects). */
export const existingNameFiles = (sandbox: string, namespace: string): NameFiles | undefined => {
  const files = nameFiles(sandbox, namespace);
  return existsSync(files.hosts) && existsSync(files.resolvConf) ? files : undefined;
};

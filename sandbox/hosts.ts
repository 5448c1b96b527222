// Service names for pods, without a DNS server: each node's supervisor keeps
// a hosts file per namespace listing every Service the way cluster DNS would
// answer from there ("web" in its own namespace, "web.demo",
// "web.demo.svc.cluster.local"), bind-mounted over /etc/hosts in the pod's
// processes. Files are rewritten in place (not renamed) so bind mounts of
// running pods see new Services, with one write over the old bytes and never
// a truncation, so a pod resolving meanwhile never reads an empty file
// (overwrite() below). A resolv.conf pointing at nothing makes other
// names fail fast.
import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Service } from '@kubernetes/client-node';
import { nodeDir } from './layout.ts';
import type { NameFiles } from './proc.ts';

export const CLUSTER_DOMAIN = 'cluster.local';

/** Where node `node` of sandbox `sandbox` keeps its pods' name files. */
export const hostsDir = (sandbox: string, node: string): string => join(nodeDir(sandbox, node), 'hosts');

const nameFilesIn = (dir: string, namespace: string): NameFiles => ({ hosts: join(dir, namespace), resolvConf: join(dir, 'resolv.conf') });

// No DNS server answers in the sandbox: fail other names at once (loopback
// refuses) instead of waiting out the host resolver's timeouts.
const RESOLV_CONF = '# meshlet sandbox: no DNS server; Service names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n';

export function hostsText(services: Iterable<V1Service>, namespace: string): string {
  const lines = [
    `# meshlet sandbox: cluster Services as seen from namespace ${namespace}`,
    '127.0.0.1 localhost',
    '::1 localhost ip6-localhost ip6-loopback',
  ];
  for (const svc of services) {
    const name = svc.metadata?.name;
    const ns = svc.metadata?.namespace ?? 'default';
    if (!name) continue;
    const names = [`${name}.${ns}.svc.${CLUSTER_DOMAIN}`, `${name}.${ns}.svc`, `${name}.${ns}`, ...(ns === namespace ? [name] : [])];
    for (const ip of svc.spec?.clusterIPs ?? []) if (ip !== 'None') lines.push(`${ip} ${names.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Puts `text` over the file's bytes in one write, creating it if need be. A
 * shorter text is padded with a comment to the old length: truncating would
 * leave a moment with a cut line, or nothing, for a resolver reading then.
 */
function overwrite(path: string, text: string): void {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    const size = fstatSync(fd).size;
    const bytes = Buffer.byteLength(text);
    const pad = size - bytes;
    writeSync(fd, pad <= 0 ? text : pad === 1 ? `${text}\n` : `${text}#${' '.repeat(pad - 2)}\n`, 0);
  } finally {
    closeSync(fd);
  }
}

/** One node's hosts files: every namespace a pod asked for, rewritten whenever the Services change. */
export class HostsFiles {
  readonly #dir: string;
  readonly #namespaces = new Set<string>();
  /** What each namespace's file says now, so an update that changes nothing there writes nothing. */
  readonly #written = new Map<string, string>();
  #services: readonly V1Service[] = [];

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'resolv.conf'), RESOLV_CONF);
  }

  /** The files a pod of `namespace` sees as /etc/hosts and /etc/resolv.conf; written now if this is the namespace's first pod. */
  filesFor(namespace: string): NameFiles {
    const files = nameFilesIn(this.#dir, namespace);
    if (!this.#namespaces.has(namespace)) {
      this.#namespaces.add(namespace);
      // A restarted supervisor's running pods may have it mounted already.
      const text = hostsText(this.#services, namespace);
      overwrite(files.hosts, text);
      this.#written.set(namespace, text);
    }
    return files;
  }

  update(services: readonly V1Service[]): void {
    this.#services = services;
    for (const ns of this.#namespaces) {
      const text = hostsText(services, ns);
      if (text === this.#written.get(ns)) continue;
      overwrite(nameFilesIn(this.#dir, ns).hosts, text);
      this.#written.set(ns, text);
    }
  }
}

/** The namespace's name files on a node, if its supervisor wrote them (it does for every namespace with a pod there). */
export const existingNameFiles = (dir: string, namespace: string): NameFiles | undefined => {
  const files = nameFilesIn(dir, namespace);
  return existsSync(files.hosts) && existsSync(files.resolvConf) ? files : undefined;
};

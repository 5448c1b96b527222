// What a sandbox container may do as root: containerd's default capability
// set, less what its securityContext drops. Sandbox containers see the
// host's filesystems (a copy of its mount namespace), so a capability beyond that set would
// reach past the pod (NET_ADMIN moves links into other namespaces through
// their /run/netns files, SYS_ADMIN is root on the host): `add` is honoured
// for the default set's own capabilities only (`drop: [ALL]` then `add:
// [NET_BIND_SERVICE]`), but in a namespace Pod Security runs at the
// privileged level (kubelet/pod-security.ts), where any named capability
// may be added, as a node agent's DaemonSet asks; any other `add`, or
// `privileged`, refuses the container with the reason.
import type { V1Container } from '@kubernetes/client-node';

/** containerd's default (its OCI spec's defaultUnixCaps), as Docker's. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID',
  'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
];

/** Every capability of linux/capability.h, the default set first: a misspelt name is refused, not ignored. */
const KNOWN = new Set([
  ...DEFAULT_CAPABILITIES, 'DAC_READ_SEARCH', 'LINUX_IMMUTABLE', 'NET_BROADCAST', 'NET_ADMIN', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME',
  'SYS_TTY_CONFIG', 'LEASE', 'AUDIT_CONTROL', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND',
  'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
]);

export type ContainerCapabilities = { capabilities: string[]; problem?: undefined } | { problem: string };

/** `net_admin` and `CAP_NET_ADMIN` as containerd reads them: NET_ADMIN. */
const normalize = (name: string): string => name.toUpperCase().replace(/^CAP_/, '');

/**
 * The container's capabilities, in containerd's order of application: the
 * default set, ALL dropped, single names added, single names dropped.
 */
export function containerCapabilities(container: V1Container, privilegedNamespace = false): ContainerCapabilities {
  const where = `container "${container.name}"`;
  const sc = container.securityContext;
  if (sc?.privileged) return { problem: `${where}: privileged containers are not supported by the sandbox (its pods see the host's filesystems); grant single capabilities from the default set instead` };
  const add = (sc?.capabilities?.add ?? []).map(normalize);
  const drop = (sc?.capabilities?.drop ?? []).map(normalize);
  for (const name of [...add, ...drop]) {
    if (name !== 'ALL' && !KNOWN.has(name)) return { problem: `${where}: securityContext.capabilities names an unknown capability "${name}"` };
  }
  const beyond = add.filter((c) => !DEFAULT_CAPABILITIES.includes(c));
  if (beyond.length > 0 && (!privilegedNamespace || beyond.includes('ALL'))) {
    return { problem: `${where}: securityContext.capabilities.add ${beyond.join(', ')} is refused: the sandbox grants at most containerd's default set (${DEFAULT_CAPABILITIES.join(', ')}), since its pods see the host's filesystems, but in a namespace labelled pod-security.kubernetes.io/enforce=privileged (single capabilities there, not ALL); remove it` };
  }
  const granted = new Set<string>(drop.includes('ALL') ? [] : DEFAULT_CAPABILITIES);
  for (const c of add) granted.add(c);
  for (const c of drop) granted.delete(c);
  return { capabilities: [...KNOWN].filter((c) => granted.has(c)) };
}

/** setpriv's --bounding-set for exactly `capabilities`. */
export const boundingSetArg = (capabilities: readonly string[]): string => ['-all', ...capabilities.map((c) => `+${c.toLowerCase()}`)].join(',');

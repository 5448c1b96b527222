// Starting processes inside a sandbox cgroup and network namespace, and
// finding sandbox processes that escaped their cgroups. A container's
// process also gets a PID namespace of its own, as a real pod's container
// does (shareProcessNamespace false): it sees only its own processes in
// /proc and cannot signal the node's agent or ztunnel, though it holds
// CAP_KILL; a hostPID pod's containers share the host's instead, as on a
// real node. Its PID 1 is tini, as with `docker run --init`: a PID 1 without
// a handler ignores SIGTERM, and the pod would wait out its grace period.
// An exec joins the running container's PID and mount namespaces, as
// `kubectl exec` does. The node's own components keep the host's.
//
// A container's /run is its own (containerRun below): a tmpfs that carries
// the host's /run entries (the sandbox's containers see the host's
// filesystems, and /etc/resolv.conf may point into /run) except the sandbox
// run root, which is an empty directory there, and that holds the
// directories of its volume mounts under /run and /var/run (mount paths such
// as /var/run/secrets/kubernetes.io/serviceaccount), so nothing is created
// on the host for them. It is assembled at a staging mount point while the
// volumes' sources under the run root are still reachable, then moved onto
// /run.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, delimiter, dirname, isAbsolute, join, normalize, relative, resolve } from 'node:path';
import { SandboxError } from '../lib/core/errors.ts';
import { boundingSetArg } from './capabilities.ts';
import { NETNS_DIR, RUN_ROOT } from './layout.ts';

export interface Placement {
  /** cgroup-v2 directory to join. */
  cgroup: string;
  /** Network namespace name (under /run/netns). */
  netns: string;
}

export interface NameFiles {
  hosts: string;
  resolvConf: string;
}

export interface SpawnInOptions {
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** New session: survives the caller's terminal and exit. */
  detached?: boolean;
  /** Bind-mounted over /etc/hosts and /etc/resolv.conf for the command (Service names). */
  names?: NameFiles;
  /**
   * Runs the command as a container's process, with only these capabilities
   * (bounding, permitted and effective sets; none inheritable or ambient) and
   * no_new_privs, so neither it nor anything it execs gains another; in a
   * mount namespace of its own where the cgroup hierarchies and bpffs are
   * read-only, as a container runtime mounts them (cgroup membership is the
   * pod's identity to the capture programs). Absent: the caller's privileges
   * (the node's own components). A new PID namespace too, whose PID 1 is
   * tini with the command as its only child (containerMainPid), unless
   * `joinContainer` is set.
   */
  capabilities?: readonly string[];
  /**
   * With `capabilities`: a process of a running container in `where.cgroup`
   * (its main process) whose PID and mount namespaces the command joins,
   * as an exec; the container's mounts are already in place there, so
   * `names` is not needed.
   */
  joinContainer?: number;
  /**
   * With `capabilities` (and no `joinContainer`): the container shares the
   * host's PID namespace and /proc (a pod's hostPID), still with tini as the
   * parent of its command. With `joinContainer`: the container it joins does.
   */
  hostPid?: boolean;
  /**
   * With `capabilities` (and no `joinContainer`): the container's /run and
   * volume mounts (planContainerRun). Default: none but its own /run, staged
   * at the run root.
   */
  containerRun?: ContainerRun;
}

/** A directory of the host bound into a container. */
export interface BindMount {
  source: string;
  /** Absolute, as the container sees it. */
  target: string;
  readOnly: boolean;
}

/** The mount steps that give a container its /run and its bind mounts, as INNER runs them (planContainerRun). */
export interface ContainerRun {
  readonly steps: string;
}

// The shell joins the cgroup first (`ip netns exec` would remount /sys and
// hide it), then nsenter switches the network namespace and execs, so the
// child's pid is the command's pid. A command with name files gets a private
// mount namespace from unshare, where INNER mounts the name files. A
// container gets a private mount namespace and a PID namespace (unshare
// forks: the child's pid is unshare's, which waits for the namespace's PID 1
// and exits with its status), where INNER also makes the cgroup and BPF
// filesystems read-only, makes the new /proc's kernel settings read-only as
// runc does, gives the container its own /run, where the sandbox's run root
// (the nodes' credentials and the components' sockets are there, as a real
// node keeps them outside containers) is an empty directory, with its volume
// mounts (one step a line: an operation and its paths, tab-separated), and
// execs tini through setpriv with the container's capabilities. An exec
// into a container enters its namespaces instead, where JOINED checks that
// they are the
// container's (its PID 1 shares the exec's cgroup: a reused pid would name
// another process's) and execs setpriv; the parent-death signal ends the
// command with nsenter, which forks for the PID namespace and is the one a
// caller kills.
const ENTER = [
  'inner="$1" cg="$2" ns="$3" hosts="$4" resolv="$5" caps="$6" ro="$7" run="$8" tini="$9" join="${10}" joined="${11}" wd="${12}" hostpid="${13}"; shift 13',
  'echo $$ > "$cg/cgroup.procs" || exit 126',
  'if [ -z "$hosts" ] && [ -z "$caps" ]; then exec nsenter --net="$0/$ns" -- "$@"; fi',
  // The process whose cgroup JOINED compares: the container's PID 1 in its own PID namespace, its main process in the host's.
  'if [ -n "$hostpid" ]; then check="$join"; pidns=""; else check=1; pidns="--pid --mount-proc"; fi',
  'if [ -n "$join" ]; then exec nsenter --net="$0/$ns" --target="$join" --pid --mount --wdns="$wd" -- sh -c "$joined" "$caps" "$check" "$@"; fi',
  'if [ -z "$caps" ]; then exec nsenter --net="$0/$ns" -- unshare --mount --propagation private -- sh -c "$inner" "$hosts" "$resolv" "" "" "" "" "$@"; fi',
  'exec nsenter --net="$0/$ns" -- unshare --mount $pidns --fork --kill-child --propagation private -- sh -c "$inner" "$hosts" "$resolv" "$caps" "$ro" "$run" "$tini" "$@"',
].join('\n');
const INNER = [
  'hosts="$0" resolv="$1" caps="$2" ro="$3" run="$4" tini="$5"; shift 5',
  'if [ -n "$hosts" ]; then mount --bind "$hosts" /etc/hosts || exit 126; mount --bind "$resolv" /etc/resolv.conf 2>/dev/null || :; fi',
  'if [ -z "$caps" ]; then exec "$@"; fi',
  // runc's read-only paths of its own /proc: root may otherwise write the host's sysctls (kernel.core_pattern) and sysrq-trigger.
  'for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do [ -e "$p" ] || continue; { mount --bind "$p" "$p" && mount -o remount,bind,ro "$p"; } || exit 126; done',
  // One mount point a line, taken literally.
  "set -f; IFS='\n'",
  'for m in $ro; do mount -o remount,bind,ro "$m" || exit 126; done',
  "tab=$(printf '\\t')",
  // After the name files: their bind mounts keep their inodes once the directory above them is covered.
  'if [ -n "$run" ]; then while IFS="$tab" read -r op a b; do',
  '  case "$op" in',
  // /run holds sockets and pid files, not data.
  '    tmpfs) mount -t tmpfs -o mode=0755,size=64m meshlet-run "$a" ;;',
  '    dir) mkdir -p "$a" ;;',
  '    file) : > "$a" ;;',
  '    link) ln -s "$a" "$b" ;;',
  '    rbind) mount --rbind "$a" "$b" ;;',
  '    bind) mount --bind "$a" "$b" ;;',
  '    ro) mount -o remount,bind,ro "$a" ;;',
  '    rw) mount -o remount,bind,rw "$a" ;;',
  '    move) mount --move "$a" "$b" ;;',
  "    '') ;;",
  '    *) false ;;',
  '  esac || exit 126',
  'done <<EOF || exit 126',
  '$run',
  'EOF',
  'fi',
  'exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set="$caps" -- "$tini" -- "$@"',
].join('\n');
const JOINED = [
  'caps="$0" check="$1"; shift',
  '[ "$(grep "^0::" "/proc/$check/cgroup" 2>/dev/null)" = "$(grep "^0::" /proc/self/cgroup)" ] || { echo "meshlet: the process exec was to join is not this container\'s (the container ended): restart the container" >&2; exit 126; }',
  'exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set="$caps" --pdeathsig=KILL -- "$@"',
].join('\n');

/** Filesystems a container never gets writable: the cgroup hierarchies and bpffs (the agent's pins). */
const CONTAINER_READ_ONLY_FS = new Set(['cgroup', 'cgroup2', 'bpf']);

/** Their mount points, newline-separated, as INNER reads them. */
function containerReadOnlyMounts(): string {
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (mountPoint !== undefined && fsType !== undefined && CONTAINER_READ_ONLY_FS.has(fsType)) points.push(mountPoint.replace(/\\040/g, ' '));
  }
  return points.join('\n');
}

/** The container's own /run: the directory its tmpfs is moved onto. */
const CONTAINER_RUN = dirname(RUN_ROOT);
/** What the sandbox's run root is called in it (an empty directory). */
const RUN_ROOT_NAME = basename(RUN_ROOT);
// Control characters would break INNER's one-step-a-line, tab-separated reading.
const UNSAFE_PATH = /[\x00-\x1f\x7f]/;

/** Where `path` leads on the host: symlinks of its existing part resolved (/var/run → /run); whether all of it exists. */
function onHost(path: string): { resolved: string; exists: boolean } {
  const parts = normalize(path).split('/').filter(Boolean);
  let n = parts.length;
  while (n > 0 && !existsSync(`/${parts.slice(0, n).join('/')}`)) n--;
  return { resolved: join(realpathSync(`/${parts.slice(0, n).join('/')}`), ...parts.slice(n)), exists: n === parts.length };
}

/** Where a mount lands: in the container's own /run (relative to it), or at an existing host path. */
interface Placed {
  mount: BindMount;
  /** Relative to /run, or undefined outside it. */
  inRun?: string;
  /** The resolved target, outside /run. */
  outside?: string;
}

/**
 * The steps that give a container its own /run, assembled at `staging` (an
 * existing directory of the host, outside every mount's source: it stays
 * empty there), with `mounts` bound in at their targets. Targets under /run
 * and /var/run are made in the container's /run (a host /run entry that a
 * target would have to be created in is not carried then); a target
 * elsewhere must exist on the host, which has no image filesystem to create
 * it in. Throws SandboxError saying which mount cannot be made.
 */
export function planContainerRun(staging: string, mounts: readonly BindMount[]): ContainerRun {
  const placed: Placed[] = [];
  const shadowed = new Set<string>();
  for (const mount of mounts) {
    const what = `mount path ${mount.target}`;
    if (!isAbsolute(mount.target)) throw new SandboxError(`${what} is not absolute`);
    if (UNSAFE_PATH.test(mount.target) || UNSAFE_PATH.test(mount.source)) throw new SandboxError(`${what} (from ${JSON.stringify(mount.source)}) contains control characters, which the sandbox cannot mount`);
    const { resolved, exists } = onHost(mount.target);
    const rel = relative(CONTAINER_RUN, resolved);
    if (rel === '') throw new SandboxError(`${what} is the container's own ${CONTAINER_RUN}, which the sandbox builds itself; mount the volume below it`);
    if (!rel.startsWith('..')) {
      const first = rel.split('/')[0]!;
      if (!exists && first !== RUN_ROOT_NAME) shadowed.add(first);
      placed.push({ mount, inRun: rel });
      continue;
    }
    if (!exists) throw new SandboxError(`${what} does not exist on this host, and a sandbox container has no image filesystem to create it in; mount the volume under /run or /var/run (each container's own), or at a directory that exists`);
    if (statSync(resolved).isDirectory() !== statSync(mount.source).isDirectory()) throw new SandboxError(`${what}: ${resolved} on this host is ${statSync(resolved).isDirectory() ? 'a directory' : 'a file'} and the volume is not; mount it elsewhere`);
    placed.push({ mount, outside: resolved });
  }
  const steps: string[][] = [['tmpfs', staging]];
  for (const entry of readdirSync(CONTAINER_RUN, { withFileTypes: true })) {
    const name = entry.name;
    if (name === RUN_ROOT_NAME || shadowed.has(name) || UNSAFE_PATH.test(name)) continue;
    const from = join(CONTAINER_RUN, name);
    const to = join(staging, name);
    if (entry.isSymbolicLink()) {
      const link = readlinkSync(from);
      if (!UNSAFE_PATH.test(link)) steps.push(['link', link, to]);
    } else if (entry.isDirectory()) steps.push(['dir', to], ['rbind', from, to]);
    else steps.push(['file', to], ['bind', from, to]);
  }
  steps.push(['dir', join(staging, RUN_ROOT_NAME)]);
  // Parents before what is mounted inside them, as containerd orders mounts.
  const depth = (p: Placed): number => (p.inRun !== undefined ? join(CONTAINER_RUN, p.inRun) : p.outside!).split('/').length;
  const ordered = [...placed].sort((a, b) => depth(a) - depth(b));
  const targets = ordered.map((p) => (p.inRun !== undefined ? join(staging, p.inRun) : p.outside!));
  ordered.forEach((p, i) => {
    if (p.inRun !== undefined) steps.push(['dir', targets[i]!]);
    steps.push(['bind', p.mount.source, targets[i]!]);
    // A bind keeps its source mount's flags: one from the bpffs or a cgroup tree, read-only by now, is made writable when the volume is.
    if (p.outside !== undefined && !p.mount.readOnly) steps.push(['rw', targets[i]!]);
  });
  // Read-only last: a mount inside a read-only one needs its directory made first.
  ordered.forEach((p, i) => {
    if (p.mount.readOnly) steps.push(['ro', targets[i]!]);
  });
  steps.push(['move', staging, CONTAINER_RUN]);
  return { steps: steps.map((s) => s.join('\t')).join('\n') };
}

/** A container without mounts: its own /run, staged at the run root (nothing to reach below it); none when there is no run root to hide. */
const defaultContainerRun = (): ContainerRun => (existsSync(RUN_ROOT) ? planContainerRun(RUN_ROOT, []) : { steps: '' });

export function spawnIn(where: Placement, argv: readonly string[], options: SpawnInOptions = {}): ChildProcess {
  const names = options.names;
  const caps = options.capabilities;
  const target = caps ? options.joinContainer : undefined;
  const confinement = !caps ? ['', '', '', ''] : target !== undefined ? [boundingSetArg(caps), '', '', ''] : [boundingSetArg(caps), containerReadOnlyMounts(), (options.containerRun ?? defaultContainerRun()).steps, tiniPath()];
  const joining = target !== undefined ? [String(target), JOINED, options.cwd ?? process.cwd()] : ['', '', ''];
  const hostPid = caps && options.hostPid ? '1' : '';
  return spawn('sh', ['-c', ENTER, NETNS_DIR, INNER, where.cgroup, where.netns, names?.hosts ?? '', names?.resolvConf ?? '', ...confinement, ...joining, hostPid, ...argv], {
    stdio: options.stdio ?? 'pipe',
    env: options.env ?? process.env,
    cwd: options.cwd,
    detached: options.detached ?? false,
  });
}

/** Where tini is (by the caller's PATH: a container's own PATH may not hold it). */
function tiniPath(): string {
  const found = findExecutable('tini', process.env.PATH ?? '/usr/bin:/bin', '/');
  if (!found) throw new SandboxError('tini is not installed (Debian package tini): it is PID 1 of every sandbox container; run `npm run setup`');
  return found;
}

/** The pids listed in /proc/<pid>/task/<pid>/children, oldest first; none once it exited. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * The host pid of a container's main process (spawnIn with `capabilities`,
 * no `joinContainer`), once it exists: the launcher's child is the PID
 * namespace's init, which mounts, then becomes tini and forks the command
 * first. Undefined if the launcher exited, or it did not happen within
 * `timeoutMs`.
 */
export async function containerMainPid(launcher: ChildProcess, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (launcher.pid !== undefined && launcher.exitCode === null && launcher.signalCode === null && Date.now() < deadline) {
    const init = childrenOf(launcher.pid)[0];
    const main = init !== undefined && commOf(init) === 'tini' ? childrenOf(init)[0] : undefined;
    if (main !== undefined) return main;
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}

export function pidAlive(pid: number | undefined): boolean {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Resolves `command` the way execvp would with `PATH`, or undefined. */
export function findExecutable(command: string, path: string | undefined, cwd: string): string | undefined {
  const candidates = command.includes('/')
    ? [isAbsolute(command) ? command : resolve(cwd, command)]
    : (path ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // try the next directory
    }
  }
  return undefined;
}

/**
 * Pids of processes that belong to sandbox `prefix` but may sit outside its
 * cgroup: in a cgroup below it, or started with its run dir in their
 * arguments (agent, ztunnel, supervisor). Never the caller or its ancestors.
 */
export async function findSandboxProcesses(cgroupName: string, runDir: string, supervisorArgs: readonly string[]): Promise<number[]> {
  const spare = await ancestors(process.pid);
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || spare.has(pid)) continue;
    try {
      const cgroup = await readFile(`/proc/${pid}/cgroup`, 'utf8');
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      const inCgroup = cgroup.split('\n').some((l) => l.startsWith('0::') && (l.slice(3) + '/').startsWith(`/${cgroupName}/`));
      const usesRunDir = argv.some((a) => a.startsWith(`${runDir}/`));
      const isSupervisor = supervisorArgs.every((a) => argv.includes(a));
      if (inCgroup || usesRunDir || isSupervisor) found.push(pid);
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return found;
}

async function ancestors(pid: number): Promise<Set<number>> {
  const seen = new Set<number>();
  let current = pid;
  while (current > 1 && !seen.has(current)) {
    seen.add(current);
    try {
      const stat = await readFile(`/proc/${current}/stat`, 'utf8');
      current = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  seen.add(1);
  return seen;
}

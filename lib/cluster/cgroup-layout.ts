// Where the kubelet puts a pod's cgroup: its QoS class (computed as the API
// server does) and UID, named exactly as kubelet's cgroup manager names them
// for the systemd and cgroupfs drivers; and the inverse, finding a pod's
// cgroup under a node's kubelet cgroup root. The sandbox's kubelet creates
// pod cgroups with it and the agent finds them with it, so both agree on
// every name.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Container, V1Pod, V1ResourceRequirements } from '@kubernetes/client-node';
import { MeshletError } from '../core/errors.ts';
import { parseQuantity } from './quantity.ts';

export const QOS_CLASSES = ['Guaranteed', 'Burstable', 'BestEffort'] as const;
export type QosClass = (typeof QOS_CLASSES)[number];
export const CGROUP_DRIVERS = ['systemd', 'cgroupfs'] as const;
export type CgroupDriver = (typeof CGROUP_DRIVERS)[number];

/** A pod's cgroup cannot be named or found. */
export class PodCgroupError extends MeshletError {
  constructor(message: string) {
    super('MESHLET_POD_CGROUP', message);
  }
}

// Only the compute resources QoS looks at (qos.go isSupportedQoSComputeResource).
const QOS_RESOURCES = ['cpu', 'memory'] as const;

interface Totals {
  requests: Map<string, bigint>;
  limits: Map<string, bigint>;
  /** Every part had both cpu and memory limits. */
  allLimited: boolean;
}

/** Adds one container's (or the pod-level) resources, with requests defaulted to limits as the API server defaults them. */
function addResources(totals: Totals, resources: V1ResourceRequirements | undefined, sum: boolean): void {
  const limits = resources?.limits ?? {};
  const requests = { ...limits, ...(resources?.requests ?? {}) };
  const limited = new Set<string>();
  for (const name of QOS_RESOURCES) {
    const request = requests[name] === undefined ? 0n : parseQuantity(requests[name]!);
    if (request > 0n) totals.requests.set(name, (sum ? (totals.requests.get(name) ?? 0n) : 0n) + request);
    const limit = limits[name] === undefined ? 0n : parseQuantity(limits[name]!);
    if (limit > 0n) {
      limited.add(name);
      totals.limits.set(name, (sum ? (totals.limits.get(name) ?? 0n) : 0n) + limit);
    }
  }
  if (limited.size < QOS_RESOURCES.length) totals.allLimited = false;
}

/**
 * The QoS class from the pod's resources, as ComputePodQOS does: pod-level
 * resources when set, else the sum over containers and init containers;
 * BestEffort without any cpu/memory request or limit, Guaranteed when every
 * part limits cpu and memory and requests equal limits, else Burstable.
 */
export function computeQosClass(pod: V1Pod): QosClass {
  const totals: Totals = { requests: new Map(), limits: new Map(), allLimited: true };
  const spec = pod.spec;
  if (spec?.resources) addResources(totals, spec.resources, false);
  else {
    const containers: V1Container[] = [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])];
    for (const c of containers) addResources(totals, c.resources, true);
  }
  if (totals.requests.size === 0 && totals.limits.size === 0) return 'BestEffort';
  let guaranteed = totals.allLimited;
  for (const [name, request] of totals.requests) if (totals.limits.get(name) !== request) guaranteed = false;
  return guaranteed && totals.requests.size === totals.limits.size ? 'Guaranteed' : 'Burstable';
}

/** status.qosClass when the API server set it (it is immutable there), else computed from the spec. */
export function podQosClass(pod: V1Pod): QosClass {
  const recorded = pod.status?.qosClass;
  return (QOS_CLASSES as readonly string[]).includes(recorded ?? '') ? (recorded as QosClass) : computeQosClass(pod);
}

// API server UIDs are UUIDs; letters, digits and single inner '-' keep any
// test token usable while '/', '.', '_' and the empty string can never reach a path.
const UID_RE = /^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$/;
const UID_MAX = 64;

/** Why `uid` must not become part of a cgroup path, or undefined when it may. */
export function podUidProblem(uid: unknown): string | undefined {
  if (typeof uid !== 'string' || uid === '') return 'the pod has no metadata.uid';
  if (uid.length > UID_MAX || !UID_RE.test(uid)) {
    return `pod UID ${JSON.stringify(uid.slice(0, UID_MAX + 1))} is not a UUID-like token (letters, digits and single inner "-", at most ${UID_MAX}); refusing to build a cgroup path from it`;
  }
  return undefined;
}

function checkedUid(uid: string): string {
  const problem = podUidProblem(uid);
  if (problem) throw new PodCgroupError(problem);
  return uid;
}

/** The cgroup that holds every pod, relative to the kubelet's cgroup root. */
export const kubepodsCgroup = (driver: CgroupDriver): string => (driver === 'systemd' ? 'kubepods.slice' : 'kubepods');

/** The QoS class's cgroup, which holds its pods' cgroups: Guaranteed pods sit directly in kubepods. */
export function qosCgroup(qos: QosClass, driver: CgroupDriver): string {
  const top = kubepodsCgroup(driver);
  if (qos === 'Guaranteed') return top;
  const tier = qos.toLowerCase();
  return driver === 'systemd' ? join(top, `kubepods-${tier}.slice`) : join(top, tier);
}

/** The last element of a pod's cgroup path (uid already checked). */
function podCgroupName(uid: string, qos: QosClass, driver: CgroupDriver): string {
  if (driver === 'cgroupfs') return `pod${uid}`;
  // systemd: '-' in a slice name means nesting, so the UID's dashes become '_'.
  const unit = uid.replaceAll('-', '_');
  return qos === 'Guaranteed' ? `kubepods-pod${unit}.slice` : `kubepods-${qos.toLowerCase()}-pod${unit}.slice`;
}

/**
 * The pod's cgroup, relative to the kubelet's cgroup root, as kubelet names it:
 * systemd `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice`
 * (Guaranteed: `kubepods.slice/kubepods-pod<uid>.slice`); cgroupfs
 * `kubepods/burstable/pod<uid>` (Guaranteed: `kubepods/pod<uid>`).
 */
export function podCgroupPath(uid: string, qos: QosClass, driver: CgroupDriver): string {
  const id = checkedUid(uid);
  return join(qosCgroup(qos, driver), podCgroupName(id, qos, driver));
}

/** The UID of the pod whose cgroup in `qos`'s cgroup is called `name`, or undefined when `name` is not a pod cgroup's. */
export function podUidOfCgroup(name: string, qos: QosClass, driver: CgroupDriver): string | undefined {
  const tier = qos === 'Guaranteed' ? '' : `${qos.toLowerCase()}-`;
  const [prefix, suffix] = driver === 'systemd' ? [`kubepods-${tier}pod`, '.slice'] : ['pod', ''];
  if (!name.startsWith(prefix) || !name.endsWith(suffix)) return undefined;
  const middle = name.slice(prefix.length, name.length - suffix.length);
  const uid = driver === 'systemd' ? middle.replaceAll('_', '-') : middle;
  // The round trip refuses what kubelet would never name so (a '-' in a systemd unit, a bad UID).
  return podUidProblem(uid) === undefined && podCgroupName(uid, qos, driver) === name ? uid : undefined;
}

/** The pod's cgroup path (relative to the kubelet root) from the pod object. */
export function podCgroupPathOf(pod: V1Pod, driver: CgroupDriver): string {
  return podCgroupPath(pod.metadata?.uid ?? '', podQosClass(pod), driver);
}

const isDirectory = async (path: string): Promise<boolean> => {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
};

/** The driver whose top-level pods cgroup exists under `root` (kubepods.slice → systemd, kubepods → cgroupfs), or undefined when neither does. */
export async function detectCgroupDriver(root: string): Promise<CgroupDriver | undefined> {
  const [systemd, cgroupfs] = await Promise.all(CGROUP_DRIVERS.map((d) => isDirectory(join(root, kubepodsCgroup(d)))));
  if (systemd && cgroupfs) throw new PodCgroupError(`${root} holds both kubepods.slice (systemd driver) and kubepods (cgroupfs driver); set the cgroup driver explicitly`);
  if (systemd) return 'systemd';
  if (cgroupfs) return 'cgroupfs';
  return undefined;
}

export interface ResolvedPodCgroup {
  /** Absolute directory of the pod's cgroup. */
  dir: string;
  driver: CgroupDriver;
  qos: QosClass;
}

/**
 * The pod's cgroup directory under the kubelet cgroup root `root`; the driver
 * is detected unless given. The expected QoS class is tried first, then the
 * others (a class computed from an undefaulted spec can differ from the kubelet's).
 */
export async function resolvePodCgroupDir(root: string, uid: string, qos: QosClass, driver?: CgroupDriver): Promise<ResolvedPodCgroup> {
  checkedUid(uid);
  const d = driver ?? (await detectCgroupDriver(root));
  if (!d) throw new PodCgroupError(`no kubepods.slice or kubepods cgroup under ${root}: is it the kubelet's cgroup root (check the kubelet's --cgroup-root and --cgroup-driver)?`);
  const order = [qos, ...QOS_CLASSES.filter((q) => q !== qos)];
  for (const q of order) {
    const dir = join(root, podCgroupPath(uid, q, d));
    if (await isDirectory(dir)) return { dir, driver: d, qos: q };
  }
  throw new PodCgroupError(`pod ${uid} has no cgroup under ${root} (${d} driver; looked for ${join(root, podCgroupPath(uid, qos, d))} and the other QoS classes): is the pod running on this node?`);
}

export interface PodCgroup extends ResolvedPodCgroup {
  uid: string;
}

/**
 * Every pod cgroup under the kubelet cgroup root `root`, in both drivers'
 * layouts (or only `driver`'s). Lists only the QoS cgroups kubelet puts pods
 * in (three per driver), never deeper: the containers' cgroups below a pod
 * and everything outside kubepods stay unread.
 */
export async function listPodCgroups(root: string, driver?: CgroupDriver): Promise<PodCgroup[]> {
  const found: PodCgroup[] = [];
  for (const d of driver ? [driver] : CGROUP_DRIVERS) {
    for (const qos of QOS_CLASSES) {
      const parent = join(root, qosCgroup(qos, d));
      let entries: string[];
      try {
        entries = await readdir(parent);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const name of entries) {
        const uid = podUidOfCgroup(name, qos, d);
        if (uid !== undefined && (await isDirectory(join(parent, name)))) found.push({ uid, dir: join(parent, name), driver: d, qos });
      }
    }
  }
  return found;
}

// In-memory stand-ins for the node agent's dependencies, for unit tests of
// the agent's own logic (what it enrolls, when, in which order). The kernel
// side is the BPF suites' job. Every double can write into one shared `order`
// list, so a test sees the sequence across them.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Datapath, NoRoom, PodCapture } from '../../agent/datapath.ts';
import type { DropWatch } from '../../agent/bpf/drop-watch.ts';
import type { SweepResult } from '../../agent/bpf/strict-sweep.ts';
import type { ZtunnelControl } from '../../agent/ztunnel-client.ts';
import { podCgroupPath, type CgroupDriver, type QosClass } from '../../lib/cluster/cgroup-layout.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import type { ClusterSource, ClusterSourceStatus, ClusterUpdate } from '../../lib/cluster/sources/source.ts';
import type { ControlStatus, DatapathStatus } from '../../lib/mesh/agent-status.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';

export type DatapathCall =
  | { op: 'attachZtunnel'; cgroupPath: string }
  | { op: 'removeFromKernel'; roots: string[] }
  | { op: 'learnAttachments'; root: string }
  | { op: 'enrolledCgroupIds' }
  | { op: 'enroll'; pods: PodCapture[] }
  | { op: 'unenroll'; cgroupPaths: string[] }
  | { op: 'watchDrops' };

type Op = DatapathCall['op'];

/** Records every call; holds no kernel state. `pinned` is what enrolledCgroupIds reports (the maps after a restart). */
export class RecordingDatapath implements Datapath {
  readonly calls: DatapathCall[] = [];
  pinned: bigint[] = [];
  readonly #order: string[];
  readonly #failures = new Map<Op, Error>();
  /** Pods (by cgroup path) enroll leaves out, as if the kernel's tables had no room for them. */
  readonly #noRoom = new Map<string, NoRoom>();

  constructor(order: string[] = []) {
    this.#order = order;
  }

  /** The next call of `op` is recorded, then rejects with `err`. */
  failNext(op: Op, err: Error): void {
    this.#failures.set(op, err);
  }

  /** From now on enroll leaves this pod out for want of room in `map`, until makeRoom. */
  fillTablesFor(cgroupPath: string, map: NoRoom['map'] = 'excluded_ports', room: Pick<NoRoom, 'needed' | 'free' | 'capacity'> = { needed: 3, free: 1, capacity: 16384 }): void {
    this.#noRoom.set(cgroupPath, { cgroupPath, map, ...room });
  }

  makeRoom(cgroupPath: string): void {
    this.#noRoom.delete(cgroupPath);
  }

  /** The calls of one kind, in order. */
  of<O extends Op>(op: O): Extract<DatapathCall, { op: O }>[] {
    return this.calls.filter((c): c is Extract<DatapathCall, { op: O }> => c.op === op);
  }

  async attachZtunnel(cgroupPath: string): Promise<void> {
    this.#record({ op: 'attachZtunnel', cgroupPath });
  }

  async removeFromKernel(roots: readonly string[]): Promise<number> {
    this.#record({ op: 'removeFromKernel', roots: [...roots] });
    return 0;
  }

  async learnAttachments(root: string): Promise<void> {
    this.#record({ op: 'learnAttachments', root });
  }

  async enrolledCgroupIds(): Promise<bigint[]> {
    this.#record({ op: 'enrolledCgroupIds' });
    return [...this.pinned];
  }

  async enroll(pods: PodCapture[]): Promise<NoRoom[]> {
    this.#record({ op: 'enroll', pods: structuredClone(pods) });
    return pods.flatMap((p) => {
      const room = this.#noRoom.get(p.cgroupPath);
      return room ? [{ ...room }] : [];
    });
  }

  async unenroll(cgroupPaths: string[]): Promise<void> {
    this.#record({ op: 'unenroll', cgroupPaths: [...cgroupPaths] });
  }

  watchDrops(): DropWatch {
    this.#record({ op: 'watchDrops' });
    return { stop: () => undefined, lost: 0 };
  }

  async status(): Promise<DatapathStatus> {
    return { programs: [], addresses: {}, maps: [], adopted: this.pinned.length > 0 };
  }

  /** Kept apart from `calls`: sweeps run off the reconcile path, in their own order. Ends nothing. */
  readonly sweeps: PodCapture[] = [];

  async closeInadmissible(pod: PodCapture): Promise<SweepResult> {
    this.sweeps.push(structuredClone(pod));
    return { closed: [], failed: [] };
  }

  #record(call: DatapathCall): void {
    this.calls.push(call);
    this.#order.push(call.op);
    const err = this.#failures.get(call.op);
    if (err) {
      this.#failures.delete(call.op);
      throw err;
    }
  }
}

/** A ztunnel that acknowledges every push; one push can be held open to see what arrives meanwhile. */
export class RecordingControl implements ZtunnelControl {
  readonly pushes: MeshState[] = [];
  started = false;
  readonly #order: string[];
  #hold: { entered: () => void; released: Promise<void> } | undefined;

  constructor(order: string[] = []) {
    this.#order = order;
  }

  /** The next push waits for release(); `entered` settles once it has begun. */
  holdNextPush(): { entered: Promise<void>; release: () => void } {
    const entered = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#hold = { entered: entered.resolve, released: released.promise };
    return { entered: entered.promise, release: released.resolve };
  }

  start(): void {
    this.started = true;
    this.#order.push('control.start');
  }

  stop(): void {
    this.#order.push('control.stop');
  }

  async push(state: MeshState): Promise<boolean> {
    this.pushes.push(state);
    this.#order.push('push');
    const hold = this.#hold;
    this.#hold = undefined;
    if (hold) {
      hold.entered();
      await hold.released;
    }
    return true;
  }

  status(): ControlStatus {
    return { connected: this.started, inSync: this.started, ackedVersion: this.pushes.length, refused: 0 };
  }
}

/** A source the test feeds by hand. */
export class ManualSource implements ClusterSource {
  synced = false;
  #onUpdate: ((update: ClusterUpdate) => void) | undefined;
  readonly #order: string[];

  constructor(order: string[] = []) {
    this.#order = order;
  }

  async start(onUpdate: (update: ClusterUpdate) => void): Promise<void> {
    this.#order.push('source.start');
    this.#onUpdate = onUpdate;
  }

  stop(): void {
    this.#onUpdate = undefined;
  }

  status(): ClusterSourceStatus {
    return { name: 'manual', synced: this.synced };
  }

  /** Delivers a full snapshot, as a real source does on every change. */
  deliver(objects: KubeObject[], unreadable: ClusterUpdate['unreadable'] = []): void {
    if (!this.#onUpdate) throw new Error('ManualSource.deliver before start (or after stop)');
    this.synced = true;
    this.#onUpdate({ objects, unreadable });
  }
}

/** The node the doubles' objects live on by default. */
export const NODE = 'node-1';

export const namespace = (name: string, mode?: 'ambient' | 'none'): KubeObject => ({
  apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: mode ? { 'istio.io/dataplane-mode': mode } : {} },
});

/** One address per pod name, so building a pod again describes the same pod. */
const ips = new Map<string, string>();

export interface PodExtra {
  node?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** status.qosClass, as the API server records it; absent: the pod has no resources, so BestEffort. */
  qosClass?: QosClass;
}

/** A running pod in namespace `demo`, UID `uid-<name>`, on NODE unless told otherwise. */
export function pod(name: string, extra: PodExtra = {}): KubeObject {
  const ip = ips.get(name) ?? `10.244.1.${ips.size + 2}`;
  ips.set(name, ip);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'demo', uid: `uid-${name}`, labels: { app: name, ...extra.labels }, annotations: extra.annotations ?? {} },
    spec: { nodeName: extra.node ?? NODE, serviceAccountName: name, containers: [{ name: 'c', command: ['x'] }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], ...(extra.qosClass ? { qosClass: extra.qosClass } : {}) },
  };
}

/** Where the kubelet puts pod `name`'s cgroup under the kubelet cgroup root `root`. */
export const podCgroupDir = (root: string, name: string, qos: QosClass = 'BestEffort', driver: CgroupDriver = 'cgroupfs'): string =>
  join(root, podCgroupPath(`uid-${name}`, qos, driver));

/** Creates pod `name`'s cgroup as the kubelet would (a directory: its inode is the cgroup id); returns its id. */
export async function makePodCgroup(root: string, name: string, qos?: QosClass, driver?: CgroupDriver): Promise<string> {
  const dir = podCgroupDir(root, name, qos, driver);
  await mkdir(dir, { recursive: true });
  return String((await stat(dir, { bigint: true })).ino);
}

/** A namespace-wide (or, with `app`, one workload's) PeerAuthentication. */
export const peerAuthentication = (name: string, mode: 'STRICT' | 'PERMISSIVE', app?: string): KubeObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name, namespace: 'demo' },
  spec: { ...(app ? { selector: { matchLabels: { app } } } : {}), mtls: { mode } },
});

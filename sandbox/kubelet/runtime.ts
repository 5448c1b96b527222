// What the kubelet asks of its container runtime, in CRI's terms: a pod
// sandbox (network namespace and cgroup) and the containers in it. The
// sandbox implements it with network namespaces, cgroups and host processes;
// tests implement it in memory. The kubelet owns every decision (when to
// start, restart, probe, stop); the runtime only does what it is told and
// reports container exits.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ExecResult, ProbeDialer } from './probes.ts';
import type { NodeHostPath } from './volume-sources.ts';

export type { ExecResult, ProbeDialer };

export interface PodSandboxInfo {
  /** The pod's addresses, IPv4 first. For a hostNetwork pod the kubelet reports the node's addresses instead. */
  ips: string[];
}

export interface ContainerStarted {
  /** Unique for this instance of the container: exits name it, and the status shows it as `<runtime>://<id>`. */
  id: string;
  /** When it began running (ms since the epoch, on the kubelet's clock). */
  startedAt: number;
}

export interface ContainerExit {
  uid: string;
  container: string;
  /** The ContainerStarted.id of the instance that exited. */
  id: string;
  /** The process's exit code; 128 + n when signal n killed it. */
  exitCode: number;
  /** The signal number that killed it, when one did. */
  signal?: number;
  /** ms since the epoch. */
  finishedAt: number;
  /** Terminated reason override (e.g. "OOMKilled"); else the kubelet says Completed or Error. */
  reason?: string;
}

/** A container as the runtime holds it: running, or exited and not yet started again. */
export interface RuntimeContainer {
  name: string;
  id: string;
  startedAt: number;
  /** Set when this instance has exited. */
  exit?: Omit<ContainerExit, 'uid' | 'container' | 'id'>;
}

/** A directory of the node bound into a container (CRI's Mount): what the kubelet makes of a volumeMount. */
export interface ContainerMount {
  /** Absolute, inside the container. */
  containerPath: string;
  hostPath: string;
  readOnly: boolean;
}

/** A pod the runtime runs, for a kubelet that (re)starts while pods run. */
export interface RuntimePod {
  uid: string;
  ips: string[];
  /** The latest instance of each container it started (regular and init). */
  containers: RuntimeContainer[];
}

export interface PodRuntime {
  /** Identifies the runtime in containerIDs (`<name>://<id>`). */
  readonly name: string;
  /** Set when probes must not connect from the kubelet's own network namespace (the pods' network is elsewhere). */
  readonly probeDialer?: ProbeDialer;
  /**
   * Every pod the runtime runs now, including ones a previous kubelet started:
   * the kubelet adopts those (no second start) and stops the ones the API no
   * longer holds.
   */
  listPods(): Promise<RuntimePod[]>;
  /**
   * Creates the pod's sandbox: its network namespace and veth (the node's own
   * namespace when spec.hostNetwork) and its cgroup in the kubelet's layout
   * (lib/cluster/cgroup-layout.ts). Idempotent for a UID that already has one. Resolves
   * with the pod's IPs; it may reuse those in pod.status.podIPs.
   */
  runPodSandbox(pod: V1Pod): Promise<PodSandboxInfo>;
  /**
   * Where the kubelet materialises the pod's volumes: a directory of the
   * runtime's for the pod, which stopPodSandbox removes with the sandbox
   * (so a pod's tokens go with it). Absent (the kubelet's in-memory test
   * runtime): the kubelet sets up no volumes and passes no mounts.
   */
  podVolumesDir?(pod: V1Pod): string;
  /**
   * Where an absolute path of the node (a hostPath volume's) is on this
   * machine, and the node's directory it must stay in. Absent: the runtime
   * has no node filesystem, and hostPath volumes are refused.
   */
  nodeHostPath?(path: string): NodeHostPath;
  /**
   * Starts a fresh instance of `container` (regular or init) in the pod's
   * sandbox: its command and args, env, workingDir, and `mounts` bound at
   * their paths. A container without a
   * command runs idle until stopped, so manifests written for images apply
   * as they are. Resolves once it runs; rejects when it cannot start (the
   * kubelet reports the message and retries with backoff). `pod` is the API
   * object; its status need not carry the IPs yet.
   */
  startContainer(pod: V1Pod, container: V1Container, mounts?: readonly ContainerMount[]): Promise<ContainerStarted>;
  /**
   * SIGTERM, then SIGKILL after gracePeriodSeconds (0: SIGKILL at once);
   * resolves once the instance exited, which is also reported to
   * onContainerExit. No-op for a container that is not running.
   */
  stopContainer(uid: string, container: string, gracePeriodSeconds: number): Promise<void>;
  /**
   * Stops every container of the pod as stopContainer does, then removes the
   * sandbox (namespace, veth, cgroup, podVolumesDir). Idempotent; a second call with a
   * shorter grace period shortens the wait. Resolves after every exit was
   * reported to onContainerExit (one that was not shows as
   * ContainerStatusUnknown, exit 137).
   */
  stopPodSandbox(uid: string, gracePeriodSeconds: number): Promise<void>;
  /** Runs argv inside the container's namespaces and cgroup (exec probes); aborting `signal` kills it. */
  exec(uid: string, container: string, argv: readonly string[], signal: AbortSignal): Promise<ExecResult>;
  /** Every container exit, whatever its cause (it ended, stopContainer, a kill from outside). Returns the unsubscribe. */
  onContainerExit(listener: (exit: ContainerExit) => void): () => void;
}

// A pod's status as kubelet reports it (generateAPIPodStatus): phase from the
// container states (getPhase), the kubelet's conditions with their transition
// times kept while unchanged, and a status per container. Pure: the pod
// worker supplies what it knows, the kubelet sends the result.
import type { V1ContainerState, V1ContainerStateTerminated, V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import { wholeSecond } from '../../lib/core/clock.ts';
import { timestampMs } from './clock.ts';

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

export interface TerminatedView {
  /** The instance's ID; empty when it never started (StartError). */
  id: string;
  exitCode: number;
  signal?: number;
  reason: string;
  message?: string;
  startedAt: number;
  finishedAt: number;
}

/** What the kubelet knows of one container (regular or init). */
export interface ContainerView {
  name: string;
  image: string;
  /** An init container with restartPolicy Always: it keeps running beside the regular ones. */
  sidecar: boolean;
  running?: { id: string; startedAt: number };
  /** Its latest termination: the state when it will not run again, else lastState. */
  terminated?: TerminatedView;
  /** The termination before `terminated` (lastState of a container that stays terminated). */
  previous?: TerminatedView;
  /** Not running and to be (re)started: why it waits. */
  waiting?: { reason: string; message?: string };
  restartCount: number;
  started: boolean;
  ready: boolean;
}

export interface PodView {
  pod: V1Pod;
  runtimeName: string;
  /** Pod IPs, IPv4 first; undefined until the sandbox exists. */
  podIps?: string[];
  hostIps: string[];
  startTime?: number;
  sandboxReady: boolean;
  containers: ContainerView[];
  initContainers: ContainerView[];
  /** Its containers will not run again (deleted, or done by restartPolicy): the phase becomes Succeeded or Failed. */
  terminal: boolean;
}

/** The conditions the kubelet owns; any other type in the status is kept as it is. */
const KUBELET_CONDITIONS = new Set(['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']);

const stateOf = (c: ContainerView): 'running' | 'terminated' | 'waiting' => (c.running ? 'running' : c.terminated && !c.waiting ? 'terminated' : 'waiting');

/** kubelet's getPhase, without the terminal case (terminalPhase). */
function runningPhase(view: PodView): PodPhase {
  const policy = view.pod.spec?.restartPolicy ?? 'Always';
  let pendingInit = 0;
  let failedInit = 0;
  for (const c of view.initContainers) {
    if (c.sidecar) {
      if (!c.started) pendingInit++;
    } else if (c.terminated && !c.running) {
      if (c.terminated.exitCode !== 0) failedInit++;
      else if (c.waiting) pendingInit++;
    } else pendingInit++;
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of view.containers) {
    const s = stateOf(c);
    if (s === 'running') running++;
    else if (s === 'terminated') {
      stopped++;
      if (c.terminated!.exitCode === 0) succeeded++;
    } else if (c.terminated) stopped++;
    else waiting++;
  }
  if (failedInit > 0 && policy === 'Never') return 'Failed';
  if (pendingInit > 0 || failedInit > 0 || waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped === 0) return 'Pending';
  if (policy === 'Always') return 'Running';
  if (stopped === succeeded) return 'Succeeded';
  return policy === 'Never' ? 'Failed' : 'Running';
}

/** The phase; a terminal pod (its containers will not run again) ends Succeeded only when every container exited 0, as kubelet does. */
export function podPhase(view: PodView): PodPhase {
  const phase = runningPhase(view);
  if (!view.terminal || phase === 'Succeeded' || phase === 'Failed') return phase;
  const allSucceeded = view.containers.length > 0 && view.containers.every((c) => !c.running && c.terminated?.exitCode === 0);
  return allSucceeded ? 'Succeeded' : 'Failed';
}

function terminatedState(t: TerminatedView, runtimeName: string): V1ContainerStateTerminated {
  return {
    ...(t.id ? { containerID: `${runtimeName}://${t.id}` } : {}),
    exitCode: t.exitCode,
    ...(t.signal !== undefined ? { signal: t.signal } : {}),
    reason: t.reason,
    ...(t.message ? { message: t.message } : {}),
    startedAt: wholeSecond(t.startedAt),
    finishedAt: wholeSecond(t.finishedAt),
  };
}

function containerStatus(c: ContainerView, runtimeName: string): V1ContainerStatus {
  const s = stateOf(c);
  let state: V1ContainerState;
  let last: V1ContainerStateTerminated | undefined;
  let containerID: string | undefined;
  if (s === 'running') {
    state = { running: { startedAt: wholeSecond(c.running!.startedAt) } };
    last = c.terminated && terminatedState(c.terminated, runtimeName);
    containerID = `${runtimeName}://${c.running!.id}`;
  } else if (s === 'terminated') {
    state = { terminated: terminatedState(c.terminated!, runtimeName) };
    last = c.previous && terminatedState(c.previous, runtimeName);
    if (c.terminated!.id) containerID = `${runtimeName}://${c.terminated!.id}`;
  } else {
    state = { waiting: { reason: c.waiting?.reason ?? 'ContainerCreating', ...(c.waiting?.message ? { message: c.waiting.message } : {}) } };
    last = c.terminated && terminatedState(c.terminated, runtimeName);
    if (c.terminated?.id) containerID = `${runtimeName}://${c.terminated.id}`;
  }
  return {
    name: c.name,
    image: c.image,
    // No images: the "image" is the host's command, and its ID is the name it was given.
    imageID: c.image,
    ...(containerID ? { containerID } : {}),
    state,
    lastState: last ? { terminated: last } : {},
    ready: c.ready,
    started: c.started,
    restartCount: c.restartCount,
  };
}

interface ConditionValue {
  status: 'True' | 'False';
  reason?: string;
  message?: string;
}

const names = (list: ContainerView[]): string => `[${list.map((c) => c.name).join(' ')}]`;

function kubeletConditions(view: PodView, phase: PodPhase): Record<string, ConditionValue> {
  const existing = view.pod.status?.conditions ?? [];
  const regularStarted = view.containers.some((c) => c.running || c.terminated);
  const incompleteInit = view.initContainers.filter((c) => (c.sidecar ? !c.started : !(stateOf(c) === 'terminated' && c.terminated!.exitCode === 0)));
  const initialized: ConditionValue = incompleteInit.length === 0 || regularStarted
    ? { status: 'True' }
    : { status: 'False', reason: 'ContainersNotInitialized', message: `containers with incomplete status: ${names(incompleteInit)}` };
  const readinessParts = [...view.initContainers.filter((c) => c.sidecar), ...view.containers];
  const unready = readinessParts.filter((c) => !c.ready);
  let containersReady: ConditionValue;
  if (phase === 'Succeeded' || phase === 'Failed') containersReady = { status: 'False', reason: 'PodCompleted' };
  else if (unready.length > 0) containersReady = { status: 'False', reason: 'ContainersNotReady', message: `containers with unready status: ${names(unready)}` };
  else containersReady = { status: 'True' };
  let ready: ConditionValue = containersReady;
  if (containersReady.status === 'True') {
    for (const gate of view.pod.spec?.readinessGates ?? []) {
      const c = existing.find((e) => e.type === gate.conditionType);
      if (c?.status !== 'True') {
        ready = { status: 'False', reason: 'ReadinessGatesNotReady', message: c ? `the status of pod readiness gate "${gate.conditionType}" is not "True", but ${c.status}` : `corresponding condition of pod readiness gate "${gate.conditionType}" does not exist.` };
        break;
      }
    }
  }
  return {
    PodReadyToStartContainers: { status: view.sandboxReady ? 'True' : 'False' },
    Initialized: initialized,
    ContainersReady: containersReady,
    Ready: ready,
  };
}

/** A recorded time as a Date whatever form it came in (a Date from a list, a string from a watch), so that unchanged statuses compare equal. */
const sameTime = (value: unknown, fallback: number): Date => wholeSecond(timestampMs(value) ?? fallback);

function conditions(view: PodView, phase: PodPhase, now: number): V1PodCondition[] {
  const existing = view.pod.status?.conditions ?? [];
  const generation = view.pod.metadata?.generation;
  const out: V1PodCondition[] = [];
  const ours = kubeletConditions(view, phase);
  for (const c of existing) {
    if (KUBELET_CONDITIONS.has(c.type)) continue;
    // Rebuilt field by field: a list and a watch deliver the same condition with keys in different orders.
    out.push({
      type: c.type,
      status: c.status,
      ...(c.reason ? { reason: c.reason } : {}),
      ...(c.message ? { message: c.message } : {}),
      ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}),
      ...(c.lastProbeTime ? { lastProbeTime: sameTime(c.lastProbeTime, now) } : {}),
      ...(c.lastTransitionTime ? { lastTransitionTime: sameTime(c.lastTransitionTime, now) } : {}),
    });
  }
  for (const [type, value] of Object.entries(ours)) {
    const before = existing.find((e) => e.type === type);
    const since = before && before.status === value.status && before.lastTransitionTime ? sameTime(before.lastTransitionTime, now) : wholeSecond(now);
    out.push({
      type,
      status: value.status,
      ...(value.reason ? { reason: value.reason } : {}),
      ...(value.message ? { message: value.message } : {}),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      lastTransitionTime: since,
    });
  }
  return out;
}

/** The status the kubelet reports for the pod now; a phase once terminal in the API stays so (the API server refuses a way back). */
export function buildPodStatus(view: PodView, now: number): V1PodStatus {
  const recorded = view.pod.status?.phase;
  const phase = recorded === 'Succeeded' || recorded === 'Failed' ? recorded : podPhase(view);
  const generation = view.pod.metadata?.generation;
  const status: V1PodStatus = {
    phase,
    conditions: conditions(view, phase, now),
    hostIP: view.hostIps[0],
    hostIPs: view.hostIps.map((ip) => ({ ip })),
    ...(view.podIps?.length ? { podIP: view.podIps[0], podIPs: view.podIps.map((ip) => ({ ip })) } : {}),
    ...(view.startTime !== undefined ? { startTime: wholeSecond(view.startTime) } : {}),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    containerStatuses: view.containers.map((c) => containerStatus(c, view.runtimeName)),
  };
  if (view.initContainers.length > 0) status.initContainerStatuses = view.initContainers.map((c) => containerStatus(c, view.runtimeName));
  return status;
}

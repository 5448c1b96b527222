// One pod's life on the node, as kubelet's pod worker drives it: create the
// sandbox, set up its volumes, run the init containers in order, start the
// containers with their volume mounts, probe
// them, restart exited ones per restartPolicy with CrashLoopBackOff, and on
// deletion stop everything (SIGTERM, grace, SIGKILL by the runtime). It
// reports through `changed` and `stopped`; the kubelet turns its view into
// the pod's status and deletes the API object.
import type { V1Container, V1ContainerStateTerminated, V1ContainerStatus, V1Pod, V1Probe } from '@kubernetes/client-node';
import type { Logger } from '../../lib/core/log.ts';
import { CrashLoopBackoff, RetryDelay } from './backoff.ts';
import { Timer, timestampMs } from './clock.ts';
import type { Clock } from '../../lib/core/clock.ts';
import type { ContainerView, PodView, TerminatedView } from './pod-status.ts';
import { ProbeWorker, runProbe, type ProbeResult, type ProbeTarget, type ProbeType } from './probes.ts';
import type { ContainerExit, ContainerStarted, PodRuntime, PodSandboxInfo, RuntimePod } from './runtime.ts';
import type { PodVolumes } from './volumes.ts';

const DEFAULT_GRACE_SECONDS = 30;
const SANDBOX_RETRY_MIN_MS = 1000;
const SANDBOX_RETRY_MAX_MS = 30_000;
/** kubelet's exit code for a container that could not start (StartError). */
const START_ERROR_EXIT_CODE = 128;
/** What kubelet reports for a container whose exit it never saw. */
const UNKNOWN_EXIT_CODE = 137;

export interface PodWorkerDeps {
  runtime: PodRuntime;
  /** Absent: the pod's volumes are not set up and containers get no mounts (a runtime without podVolumesDir). */
  volumes?: PodVolumes;
  clock: Clock;
  log: Logger;
  /** The node's addresses: hostIPs, and podIPs of hostNetwork pods. */
  hostIps: string[];
  probeSourceIp4?: string;
  probeSourceIp6?: string;
  /** The pod's status may have changed. */
  changed(worker: PodWorker): void;
  /** Its containers and sandbox are gone for good after a deletion. */
  stopped(worker: PodWorker): void;
}

type State = 'new' | 'creating' | 'active' | 'finished' | 'terminating' | 'stopped';

interface Container extends ContainerView {
  spec: V1Container;
  init: boolean;
  /** A start is queued or running. */
  starting: boolean;
  /** A restart waits for its backoff. */
  restartPending: boolean;
  backoff: CrashLoopBackoff;
  restartTimer: Timer;
  probes: ProbeWorker[];
}

const podRef = (pod: V1Pod): string => `${pod.metadata?.namespace}/${pod.metadata?.name}`;
const isSidecar = (c: V1Container, init: boolean): boolean => init && c.restartPolicy === 'Always';
const numericRv = (pod: V1Pod): number => Number(pod.metadata?.resourceVersion ?? NaN);
const exitReason = (exitCode: number): string => (exitCode === 0 ? 'Completed' : 'Error');

/** A termination the API recorded (a previous kubelet's report), as the worker holds it. */
function terminatedFromApi(t: V1ContainerStateTerminated | undefined, fallbackMs: number): TerminatedView | undefined {
  if (!t) return undefined;
  return {
    id: t.containerID?.replace(/^[^:]*:\/\//, '') ?? '',
    exitCode: t.exitCode,
    ...(t.signal !== undefined ? { signal: t.signal } : {}),
    reason: t.reason ?? exitReason(t.exitCode),
    ...(t.message ? { message: t.message } : {}),
    startedAt: timestampMs(t.startedAt) ?? fallbackMs,
    finishedAt: timestampMs(t.finishedAt) ?? fallbackMs,
  };
}

export class PodWorker {
  readonly uid: string;
  readonly #deps: PodWorkerDeps;
  #pod: V1Pod;
  #state: State = 'new';
  #ips: string[] | undefined;
  /** The runtime holds a sandbox for it (PodReadyToStartContainers). */
  #sandboxUp = false;
  #startTime: number | undefined;
  readonly #containers: Container[];
  readonly #sandboxTimer: Timer;
  readonly #sandboxRetry = new RetryDelay(SANDBOX_RETRY_MIN_MS, SANDBOX_RETRY_MAX_MS);
  /** Container starts run one at a time, in spec order, as kubelet starts them. */
  #starts: Promise<void> = Promise.resolve();
  /** The sandbox being created, which a stop must wait for. */
  #creating: Promise<unknown> = Promise.resolve();
  /** Exits reported before their start resolved. */
  readonly #earlyExits = new Map<string, ContainerExit>();
  #graceSeconds: number | undefined;
  /** The API object is gone: nothing to report or delete. */
  gone = false;
  /** The API already recorded it Succeeded or Failed before this kubelet saw it: its status is left as it is. */
  quiet = false;
  #detached = false;

  /** `pod` carries a checked metadata.uid (the kubelet refuses others first). */
  constructor(pod: V1Pod, deps: PodWorkerDeps) {
    this.uid = pod.metadata!.uid!;
    this.#pod = pod;
    this.#deps = deps;
    this.#sandboxTimer = new Timer(deps.clock);
    const make = (spec: V1Container, init: boolean): Container => ({
      spec,
      init,
      name: spec.name,
      image: spec.image ?? '',
      sidecar: isSidecar(spec, init),
      restartCount: 0,
      started: false,
      ready: false,
      starting: false,
      restartPending: false,
      backoff: new CrashLoopBackoff(),
      restartTimer: new Timer(deps.clock),
      probes: [],
    });
    this.#containers = [...(pod.spec?.initContainers ?? []).map((c) => make(c, true)), ...(pod.spec?.containers ?? []).map((c) => make(c, false))];
  }

  get pod(): V1Pod {
    return this.#pod;
  }

  /** Stopped after a deletion: the kubelet may delete the API object. */
  get stopped(): boolean {
    return this.#state === 'stopped';
  }

  get view(): PodView {
    const toView = (c: Container): ContainerView => ({
      name: c.name,
      image: c.image,
      sidecar: c.sidecar,
      ...(c.running ? { running: c.running } : {}),
      ...(c.terminated ? { terminated: c.terminated } : {}),
      ...(c.previous ? { previous: c.previous } : {}),
      ...(c.waiting ? { waiting: c.waiting } : {}),
      restartCount: c.restartCount,
      started: c.started,
      ready: c.ready,
    });
    return {
      pod: this.#pod,
      runtimeName: this.#deps.runtime.name,
      ...(this.#ips ? { podIps: this.#ips } : {}),
      hostIps: this.#deps.hostIps,
      ...(this.#startTime !== undefined ? { startTime: this.#startTime } : {}),
      sandboxReady: this.#sandboxUp,
      initContainers: this.#containers.filter((c) => c.init).map(toView),
      containers: this.#containers.filter((c) => !c.init).map(toView),
      terminal: this.#state === 'finished' || this.#state === 'stopped',
    };
  }

  /** Starts the pod, or adopts it when the runtime already runs it (a kubelet restart: nothing starts twice). */
  start(adopted?: RuntimePod): void {
    if (this.#state !== 'new') return;
    const pod = this.#pod;
    this.#startTime = timestampMs(pod.status?.startTime) ?? this.#deps.clock.now();
    const phase = pod.status?.phase;
    if (adopted) this.#adopt(adopted);
    if (pod.metadata?.deletionTimestamp) return this.#terminate();
    if (phase === 'Succeeded' || phase === 'Failed') {
      // Done before this kubelet saw it: nothing runs again.
      this.quiet = true;
      this.#restoreFinished();
      if (adopted) this.#finish();
      else this.#state = 'finished';
      return;
    }
    if (adopted) {
      // Its volumes are kept current again; a container that starts again waits for them.
      this.#deps.volumes?.setUp(pod).catch((err: unknown) => this.#deps.log.warn('pod_volumes_failed', { pod: podRef(pod), uid: this.uid, error: (err as Error).message }));
      for (const c of this.#containers) if (this.#active() && c.terminated && !c.running) this.#afterExit(c);
      this.#advance();
      this.#changed();
    } else this.#createSandbox();
  }

  /** A newer version of the pod from the API. */
  update(pod: V1Pod): void {
    // Watch events can trail a patch response the kubelet already holds.
    if (numericRv(pod) < numericRv(this.#pod)) return;
    this.#pod = pod;
    this.#deps.volumes?.update(pod);
    if (pod.metadata?.deletionTimestamp) {
      if (this.#state === 'terminating') this.#shortenGrace();
      else if (this.#state !== 'stopped') this.#terminate();
    }
    this.#changed();
  }

  /** The API object is gone (deleted by someone else, or replaced under its name): stop without reporting. */
  remove(): void {
    this.gone = true;
    if (this.#state !== 'terminating' && this.#state !== 'stopped') this.#terminate();
  }

  /** The kubelet stops (its process ends, the pods run on): no more probes or timers; containers are left alone. */
  detach(): void {
    this.#detached = true;
    this.#cancelAll();
  }

  /** A container exit from the runtime. */
  exited(exit: ContainerExit): void {
    const c = this.#containers.find((x) => x.name === exit.container);
    if (!c) return;
    if (c.running?.id !== exit.id) {
      if (c.starting) this.#earlyExits.set(exit.id, exit);
      return;
    }
    this.#recordExit(c, {
      id: exit.id,
      exitCode: exit.exitCode,
      ...(exit.signal !== undefined ? { signal: exit.signal } : {}),
      reason: exit.reason ?? exitReason(exit.exitCode),
      startedAt: c.running.startedAt,
      finishedAt: exit.finishedAt,
    });
    if (this.#active()) {
      this.#afterExit(c);
      this.#advance();
    }
    this.#changed();
  }

  /** A method, so that narrowing on #state does not survive calls that change it. */
  #active(): boolean {
    return this.#state === 'active' && !this.#detached;
  }

  #changed(): void {
    if (!this.#detached) this.#deps.changed(this);
  }

  #apiStatus(name: string): V1ContainerStatus | undefined {
    const status = this.#pod.status;
    return [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])].find((s) => s.name === name);
  }

  #adopt(rp: RuntimePod): void {
    this.#ips = this.#pod.spec?.hostNetwork ? this.#deps.hostIps : rp.ips;
    this.#state = 'active';
    this.#sandboxUp = true;
    for (const rc of rp.containers) {
      const c = this.#containers.find((x) => x.name === rc.name);
      if (!c) continue;
      const api = this.#apiStatus(rc.name);
      c.restartCount = api?.restartCount ?? 0;
      const last = terminatedFromApi(api?.lastState?.terminated, rc.startedAt);
      if (rc.exit) {
        if (last) c.previous = last;
        c.terminated = { id: rc.id, ...rc.exit, reason: rc.exit.reason ?? exitReason(rc.exit.exitCode), startedAt: rc.startedAt };
        c.ready = c.init && !c.sidecar && rc.exit.exitCode === 0;
      } else {
        if (last) c.terminated = last;
        c.running = { id: rc.id, startedAt: rc.startedAt };
        // The last kubelet's verdicts hold for the same instance until its probes say otherwise.
        const same = api?.containerID === `${this.#deps.runtime.name}://${rc.id}`;
        this.#startProbes(c, same ? { started: api?.started === true, ready: api?.ready === true } : undefined);
      }
    }
    // Containers ran, so initialization was over; the runtime need not list init containers that completed.
    if (this.#containers.some((c) => !c.init && (c.running || c.terminated))) {
      for (const c of this.#containers) {
        if (!c.init || c.sidecar || c.running || c.terminated) continue;
        c.terminated = terminatedFromApi(this.#apiStatus(c.name)?.state?.terminated, rp.containers[0]?.startedAt ?? 0) ?? { id: '', exitCode: 0, reason: 'Completed', startedAt: 0, finishedAt: 0 };
        c.ready = c.terminated.exitCode === 0;
      }
    }
  }

  /** A pod the API already records as done: its containers show their last known termination. */
  #restoreFinished(): void {
    for (const c of this.#containers) {
      if (c.running || c.terminated) continue;
      const api = this.#apiStatus(c.name);
      c.restartCount = api?.restartCount ?? 0;
      const t = terminatedFromApi(api?.state?.terminated, 0);
      if (t) c.terminated = t;
    }
  }

  /** The sandbox, then the volumes its containers mount (kubelet waits for them before any container starts); or what failed, as kubelet words it. */
  async #prepare(): Promise<{ info: PodSandboxInfo } | { failure: string; event: string }> {
    let info: PodSandboxInfo;
    try {
      info = await this.#deps.runtime.runPodSandbox(this.#pod);
    } catch (err) {
      return { failure: `failed to create pod sandbox: ${(err as Error).message}`, event: 'pod_sandbox_failed' };
    }
    try {
      await this.#deps.volumes?.setUp(this.#pod);
    } catch (err) {
      return { failure: `unable to attach or mount volumes: ${(err as Error).message}`, event: 'pod_volumes_failed' };
    }
    return { info };
  }

  #createSandbox(): void {
    this.#state = 'creating';
    this.#changed();
    this.#creating = this.#prepare().then((prepared) => {
      if (this.#state !== 'creating') return;
      if ('info' in prepared) {
        this.#ips = this.#pod.spec?.hostNetwork ? this.#deps.hostIps : prepared.info.ips;
        this.#state = 'active';
        this.#sandboxUp = true;
        for (const c of this.#containers) c.waiting = undefined;
        this.#advance();
        this.#changed();
        return;
      }
      const message = prepared.failure;
      this.#deps.log.warn(prepared.event, { pod: podRef(this.#pod), uid: this.uid, error: message, retryInMs: this.#sandboxRetry.ms });
      for (const c of this.#containers) c.waiting = { reason: c.init || !this.#containers.some((x) => x.init) ? 'ContainerCreating' : 'PodInitializing', message };
      this.#sandboxTimer.arm(() => {
        if (this.#state === 'creating') this.#createSandbox();
      }, this.#sandboxRetry.next());
      this.#changed();
    });
  }

  /** Starts whatever should run now: init containers one by one (a sidecar once started), then the regular containers. */
  #advance(): void {
    if (this.#state !== 'active') return;
    const fresh = (c: Container): boolean => !c.running && !c.starting && !c.restartPending && !c.terminated;
    const regular = this.#containers.filter((x) => !x.init);
    const init = this.#containers.filter((x) => x.init);
    // Once a regular container ran, initialization is over (as kubelet decides; an adopted pod's runtime may not list its init containers).
    if (regular.some((r) => r.running || r.terminated)) {
      for (const c of init) if (c.sidecar && fresh(c)) this.#startContainer(c);
    } else {
      for (const c of init) {
        const done = c.sidecar ? c.started : c.terminated?.exitCode === 0 && !c.running && !c.starting;
        if (done) continue;
        if (fresh(c)) this.#startContainer(c);
        for (const r of regular) if (fresh(r)) r.waiting = { reason: 'PodInitializing' };
        return;
      }
    }
    for (const c of regular) if (fresh(c)) this.#startContainer(c);
  }

  #startContainer(c: Container): void {
    c.starting = true;
    c.restartPending = false;
    if (!c.terminated) c.waiting = { reason: 'ContainerCreating' };
    this.#starts = this.#starts.then(async () => {
      if (this.#state !== 'active') {
        c.starting = false;
        return;
      }
      let started: ContainerStarted;
      try {
        const volumes = this.#deps.volumes;
        if (volumes) await volumes.setUp(this.#pod);
        const mounts = volumes?.mountsFor(this.#pod, c.spec) ?? [];
        started = await this.#deps.runtime.startContainer(this.#pod, c.spec, mounts);
      } catch (err) {
        c.starting = false;
        this.#startFailed(c, err);
        return;
      }
      c.starting = false;
      this.#started(c, started);
    });
  }

  #started(c: Container, started: ContainerStarted): void {
    if (c.terminated || c.previous) c.restartCount++;
    c.running = { id: started.id, startedAt: started.startedAt };
    c.waiting = undefined;
    c.started = false;
    c.ready = false;
    const early = this.#earlyExits.get(started.id);
    this.#earlyExits.clear();
    if (early) return this.exited(early);
    // Terminating meanwhile: the sandbox stop that follows the start queue kills it.
    if (this.#active()) {
      this.#startProbes(c);
      // A sidecar without a startup probe counts as started at once; the next init container or the regular ones may go.
      if (c.sidecar && c.started) this.#advance();
    }
    this.#changed();
  }

  #startFailed(c: Container, err: unknown): void {
    const message = (err as Error).message;
    this.#deps.log.warn('container_start_failed', { pod: podRef(this.#pod), uid: this.uid, container: c.name, error: message });
    const now = this.#deps.clock.now();
    this.#recordExit(c, { id: '', exitCode: START_ERROR_EXIT_CODE, reason: 'StartError', message, startedAt: now, finishedAt: now });
    if (this.#active()) {
      this.#afterExit(c);
      this.#advance();
    }
    this.#changed();
  }

  #recordExit(c: Container, t: TerminatedView): void {
    for (const p of c.probes) p.stop();
    c.probes = [];
    if (c.terminated) c.previous = c.terminated;
    c.terminated = t;
    c.running = undefined;
    c.started = false;
    // A completed init container counts as ready, as kubelet reports it.
    c.ready = c.init && !c.sidecar && t.exitCode === 0;
  }

  #restartPolicy(): string {
    return this.#pod.spec?.restartPolicy ?? 'Always';
  }

  #shouldRestart(c: Container, exitCode: number): boolean {
    if (c.sidecar) return true;
    const policy = this.#restartPolicy();
    if (c.init) return exitCode !== 0 && policy !== 'Never';
    return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
  }

  /** After an exit in an active pod: restart it, or finish the pod when nothing will run again. */
  #afterExit(c: Container): void {
    const t = c.terminated!;
    if (this.#shouldRestart(c, t.exitCode)) return this.#scheduleRestart(c, t.finishedAt);
    c.waiting = undefined;
    const initFailed = c.init && !c.sidecar && t.exitCode !== 0;
    const regular = this.#containers.filter((x) => !x.init);
    const allDone = regular.every((x) => x.terminated && !x.running && !x.starting && !x.restartPending);
    if (initFailed || (!c.init && allDone)) this.#finish();
  }

  #scheduleRestart(c: Container, finishedAt: number): void {
    c.restartPending = true;
    const now = this.#deps.clock.now();
    const at = c.backoff.restartAt(finishedAt);
    const go = (): void => {
      if (!this.#active()) return;
      c.backoff.next(finishedAt);
      c.waiting = undefined;
      this.#startContainer(c);
      this.#changed();
    };
    if (at <= now) return go();
    const pod = this.#pod.metadata;
    c.waiting = { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(c.backoff.delayMs / 1000)}s restarting failed container=${c.name} pod=${pod?.name}_${pod?.namespace}(${this.uid})` };
    c.restartTimer.arm(go, at - now);
  }

  #startProbes(c: Container, adopted?: { started: boolean; ready: boolean }): void {
    if (this.#detached) return;
    const running = c.running!;
    const spec = c.spec;
    const target: ProbeTarget = {
      podIp: this.#ips?.[0],
      container: spec,
      ...(this.#deps.probeSourceIp4 ? { sourceIp4: this.#deps.probeSourceIp4 } : {}),
      ...(this.#deps.probeSourceIp6 ? { sourceIp6: this.#deps.probeSourceIp6 } : {}),
      exec: (argv, signal) => this.#deps.runtime.exec(this.uid, spec.name, argv, signal),
      ...(this.#deps.runtime.probeDialer ? { dial: this.#deps.runtime.probeDialer } : {}),
    };
    const worker = (type: ProbeType, probe: V1Probe, onChange: (result: ProbeResult, message: string) => void, initialResult?: ProbeResult): void => {
      const w = new ProbeWorker({
        type,
        probe,
        clock: this.#deps.clock,
        startedAt: running.startedAt,
        ...(initialResult ? { initialResult } : {}),
        run: (signal) => runProbe(probe, target, signal),
        onChange: (result, outcome) => {
          if (c.running?.id !== running.id) return;
          onChange(result, outcome.message);
        },
      });
      c.probes.push(w);
      w.start();
    };
    const afterStartup = (): void => {
      c.started = true;
      if (spec.livenessProbe) {
        const probe = spec.livenessProbe;
        worker('liveness', probe, (result, message) => {
          if (result === 'failure') this.#kill(c, 'liveness', probe, message);
        });
      }
      if (spec.readinessProbe) {
        const probe = spec.readinessProbe;
        c.ready = adopted?.ready ?? false;
        worker('readiness', probe, (result, message) => {
          c.ready = result === 'success';
          if (!c.ready) this.#deps.log.info('container_not_ready', { pod: podRef(this.#pod), container: c.name, message });
          this.#changed();
        }, c.ready ? 'success' : 'failure');
      } else c.ready = true;
    };
    if (spec.startupProbe && !adopted?.started) {
      const probe = spec.startupProbe;
      worker('startup', probe, (result, message) => {
        if (result === 'failure') return this.#kill(c, 'startup', probe, message);
        afterStartup();
        this.#advance();
        this.#changed();
      });
    } else afterStartup();
  }

  /** A liveness or startup failure: the container is stopped and then restarted per restartPolicy. */
  #kill(c: Container, type: ProbeType, probe: V1Probe, message: string): void {
    const grace = probe.terminationGracePeriodSeconds ?? this.#pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
    this.#deps.log.warn('container_unhealthy', { pod: podRef(this.#pod), uid: this.uid, container: c.name, probe: type, message, gracePeriodSeconds: grace });
    this.#deps.runtime.stopContainer(this.uid, c.name, grace).catch((err: unknown) => {
      this.#deps.log.error('container_stop_failed', { pod: podRef(this.#pod), container: c.name, error: err });
    });
  }

  #cancelAll(): void {
    this.#sandboxTimer.cancel();
    for (const c of this.#containers) {
      c.restartTimer.cancel();
      c.restartPending = false;
      for (const p of c.probes) p.stop();
      c.probes = [];
    }
  }

  /** Done by restartPolicy: what still runs (sidecars) and the sandbox go; the pod keeps its terminal status. */
  #finish(): void {
    this.#state = 'finished';
    this.#sandboxUp = false;
    this.#cancelAll();
    for (const c of this.#containers) if (!c.running) c.waiting = undefined;
    const grace = this.#pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
    this.#deps.runtime.stopPodSandbox(this.uid, grace)
      .catch((err: unknown) => this.#deps.log.error('pod_sandbox_stop_failed', { pod: podRef(this.#pod), uid: this.uid, error: err }))
      .finally(() => this.#deps.volumes?.tearDown(this.uid));
  }

  #gracePeriod(): number {
    const meta = this.#pod.metadata;
    return meta?.deletionGracePeriodSeconds ?? this.#pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  }

  #shortenGrace(): void {
    const grace = this.#gracePeriod();
    if (this.#graceSeconds === undefined || grace >= this.#graceSeconds) return;
    this.#graceSeconds = grace;
    this.#deps.runtime.stopPodSandbox(this.uid, grace).catch(() => undefined);
  }

  /** Deleted (or gone from the API): stop every container with the grace period, remove the sandbox, report stopped. */
  #terminate(): void {
    this.#state = 'terminating';
    this.#cancelAll();
    this.#graceSeconds = this.#gracePeriod();
    this.#deps.log.info('pod_stopping', { pod: podRef(this.#pod), uid: this.uid, gracePeriodSeconds: this.#graceSeconds });
    this.#changed();
    void (async () => {
      await this.#creating;
      await this.#starts;
      const delay = new RetryDelay(SANDBOX_RETRY_MIN_MS, SANDBOX_RETRY_MAX_MS);
      for (;;) {
        try {
          await this.#deps.runtime.stopPodSandbox(this.uid, this.#graceSeconds ?? 0);
          break;
        } catch (err) {
          this.#deps.log.error('pod_sandbox_stop_failed', { pod: podRef(this.#pod), uid: this.uid, error: err, retryInMs: delay.ms });
          await new Promise<void>((resolve) => this.#sandboxTimer.arm(resolve, delay.next()));
        }
      }
      this.#deps.volumes?.tearDown(this.uid);
      const now = this.#deps.clock.now();
      for (const c of this.#containers) {
        if (c.running) {
          this.#recordExit(c, { id: c.running.id, exitCode: UNKNOWN_EXIT_CODE, reason: 'ContainerStatusUnknown', message: 'The container could not be located when the pod was terminated', startedAt: c.running.startedAt, finishedAt: now });
        }
        c.waiting = undefined;
      }
      this.#state = 'stopped';
      this.#sandboxUp = false;
      this.#changed();
      this.#deps.stopped(this);
    })();
  }
}

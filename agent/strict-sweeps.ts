// Ending the connections a pod's tighter inbound enforcement no longer
// admits. The kernel's ingress hook judges connection attempts only, so a
// plaintext connection admitted under PERMISSIVE would outlive a switch to
// STRICT, an AuthorizationPolicy newly selecting the pod, a probe port
// withdrawn, or the pod's enrollment under STRICT. After each reconcile the
// agent queues the pods whose enforcement tightened and the datapath ends,
// in the pod's network namespace, what the new enforcement refuses. One
// sweep at a time, off the reconcile path: enrollment never waits for it.
import type { Datapath } from './datapath.ts';
import type { Logger } from '../lib/core/log.ts';
import type { EnrolledPod, InboundEnforcement, StrictSweepStatus } from '../lib/mesh/agent-status.ts';

/** Status keeps this many of the latest sweeps that ended (or failed to end) something. */
const RECENT = 20;
/** A log line names this many of the connections it ended. */
const LOGGED_CONNECTIONS = 20;

/** undefined: a port with a setting of its own in neither enforcement. */
type Port = number | undefined;

/** Not enrolled (undefined) enforces nothing: every port is PERMISSIVE. */
function strictAt(e: InboundEnforcement | undefined, port: Port): boolean {
  if (!e) return false;
  const own = port === undefined ? undefined : e.portModes?.[port];
  return (own ?? e.mode) === 'STRICT';
}

function probeAt(e: InboundEnforcement | undefined, port: Port): boolean {
  return port !== undefined && (e?.probePorts ?? []).includes(port);
}

/** Whether `after` refuses on some port a connection `before` admitted: STRICT where it was PERMISSIVE, or a probe port withdrawn under STRICT. */
export function tightened(before: InboundEnforcement | undefined, after: InboundEnforcement | undefined): boolean {
  const ports = new Set<Port>([undefined]);
  for (const e of [before, after]) {
    for (const port of Object.keys(e?.portModes ?? {})) ports.add(Number(port));
    for (const port of e?.probePorts ?? []) ports.add(port);
  }
  for (const port of ports) {
    if (!strictAt(after, port)) continue;
    if (!strictAt(before, port) || (probeAt(before, port) && !probeAt(after, port))) return true;
  }
  return false;
}

export class StrictSweeps {
  readonly #datapath: Pick<Datapath, 'closeInadmissible'>;
  readonly #log: Logger;
  /** Pods waiting for a sweep, by uid, each as last enrolled: a sweep judges by the newest enforcement. */
  readonly #pending = new Map<string, EnrolledPod>();
  #running: Promise<void> | undefined;
  #closed = 0;
  #failed = 0;
  #recent: StrictSweepStatus['recent'] = [];

  constructor(datapath: Pick<Datapath, 'closeInadmissible'>, log: Logger) {
    this.#datapath = datapath;
    this.#log = log;
  }

  /** After a reconcile: queues each enrolled pod whose enforcement tightened since `before`. */
  afterReconcile(before: readonly EnrolledPod[], after: readonly EnrolledPod[]): void {
    const was = new Map(before.map((p) => [p.uid, p.inbound]));
    const now = new Map(after.map((p) => [p.uid, p]));
    for (const uid of [...this.#pending.keys()]) {
      const pod = now.get(uid);
      if (pod) this.#pending.set(uid, pod);
      else this.#pending.delete(uid);
    }
    for (const pod of after) if (tightened(was.get(pod.uid), pod.inbound)) this.#pending.set(pod.uid, pod);
    if (this.#pending.size > 0 && !this.#running) this.#running = this.#drain();
  }

  /** Settles once no sweep is running or queued. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  status(): StrictSweepStatus {
    return { closed: this.#closed, failed: this.#failed, recent: [...this.#recent] };
  }

  async #drain(): Promise<void> {
    for (let next = this.#pending.values().next(); !next.done; next = this.#pending.values().next()) {
      this.#pending.delete(next.value.uid);
      await this.#sweep(next.value);
    }
    this.#running = undefined;
  }

  async #sweep(pod: EnrolledPod): Promise<void> {
    const name = `${pod.namespace}/${pod.name}`;
    const at = new Date().toISOString();
    try {
      const r = await this.#datapath.closeInadmissible(pod);
      if (r.closed.length + r.failed.length === 0) return;
      this.#closed += r.closed.length;
      this.#failed += r.failed.length;
      this.#remember({ pod: name, at, closed: r.closed.length, failed: r.failed.length });
      const shown = (cs: readonly { local: { ip: string; port: number }; peer: { ip: string; port: number } }[]) =>
        cs.slice(0, LOGGED_CONNECTIONS).map((c) => `${c.peer.ip}:${c.peer.port} → ${c.local.ip}:${c.local.port}`);
      this.#log.info('closed connections the inbound mode no longer admits', { pod: name, closed: r.closed.length, connections: shown(r.closed) });
      if (r.failed.length > 0) this.#log.warn('the kernel refused to close connections the inbound mode no longer admits', { pod: name, failed: r.failed.length, connections: shown(r.failed), errnos: [...new Set(r.failed.map((f) => f.errno))] });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.#remember({ pod: name, at, closed: 0, failed: 0, error });
      this.#log.error('closing connections the inbound mode no longer admits failed', { pod: name, error });
    }
  }

  #remember(record: StrictSweepStatus['recent'][number]): void {
    this.#recent = [...this.#recent, record].slice(-RECENT);
  }
}

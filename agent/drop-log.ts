// Connection attempts the kernel's STRICT ingress hook dropped, as flow
// records with a deny verdict, so `meshlet flows` shows them beside the
// ztunnel's flows.
import type { DropEvent } from './bpf/drop-watch.ts';
import type { Workload } from '../lib/mesh/model.ts';
import type { FlowEvent, FlowRecord } from '../lib/telemetry/flow.ts';

const KEEP = 2000;

const REASONS: Record<DropEvent['reason'], string> = {
  not_from_ztunnel: 'plaintext connection refused: STRICT mTLS admits only the ztunnel (and the node on probe ports)',
  unparsed_headers: 'packet headers could not be read under STRICT mTLS (fail closed)',
};

export class DropLog {
  #node: string;
  #records: FlowRecord[] = [];
  #seq = 0;
  #listeners = new Set<(event: FlowEvent) => void>();

  constructor(node: string) {
    this.#node = node;
  }

  /**
   * `pod` is the enrolled pod that owns the dropping cgroup; `byIp` names the
   * source; `failClosed` the rejected policies that made the pod STRICT.
   */
  record(e: DropEvent, pod: Workload | undefined, byIp: (ip: string) => Workload | undefined, failClosed: readonly string[] = []): void {
    const source = byIp(e.source.ip);
    const ref = (w: Workload | undefined) => (w ? { workload: { namespace: w.namespace, name: w.name } } : {});
    const flow: FlowRecord = {
      id: `${this.#node}-drop-${++this.#seq}`,
      node: this.#node,
      direction: 'inbound',
      source: { ...e.source, ...ref(source) },
      originalDestination: e.destination,
      destination: { ...e.destination, ...ref(pod), node: this.#node },
      bytesSent: 0,
      bytesReceived: 0,
      state: 'closed',
      startedAt: e.at.toISOString(),
      durationMs: 0,
      closeReason: 'dropped',
      verdict: 'deny',
      verdictReason: failClosed.length === 0 ? REASONS[e.reason] : `${REASONS[e.reason]}; the pod is STRICT because ${failClosed.join(', ')} ${failClosed.length === 1 ? 'was' : 'were'} rejected and fail${failClosed.length === 1 ? 's' : ''} closed`,
      security: 'plaintext',
    };
    this.#records.push(flow);
    if (this.#records.length > KEEP) this.#records.splice(0, this.#records.length - KEEP);
    for (const listener of this.#listeners) listener({ event: 'close', flow });
  }

  list(): FlowRecord[] {
    return [...this.#records];
  }

  subscribe(listener: (event: FlowEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

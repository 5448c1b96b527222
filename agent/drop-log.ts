// Connection attempts the kernel's STRICT ingress hook dropped, as flow
// records with a deny verdict, so `meshlet flows` shows them beside the
// ztunnel's flows.
import type { ServerResponse } from 'node:http';
import type { DropEvent } from './bpf/drop-watch.ts';
import type { Workload } from './state/model.ts';
import type { FlowEvent, FlowRecord } from './ztunnel/flow.ts';

const KEEP = 2000;

const REASONS: Record<DropEvent['reason'], string> = {
  not_from_ztunnel: 'plaintext connection refused: STRICT mTLS admits only the ztunnel (and the node on probe ports)',
  unparsed_headers: 'packet headers could not be read under STRICT mTLS (fail closed)',
};

export class DropLog {
  #node: string;
  #records: FlowRecord[] = [];
  #seq = 0;
  #followers = new Set<ServerResponse>();

  constructor(node: string) {
    this.#node = node;
  }

  /** `pod` is the enrolled pod that owns the dropping cgroup; `byIp` names the source. */
  record(e: DropEvent, pod: Workload | undefined, byIp: (ip: string) => Workload | undefined): void {
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
      verdictReason: REASONS[e.reason],
      security: 'plaintext',
    };
    this.#records.push(flow);
    if (this.#records.length > KEEP) this.#records.splice(0, this.#records.length - KEEP);
    const line = `${JSON.stringify({ event: 'close', flow } satisfies FlowEvent)}\n`;
    for (const res of this.#followers) res.write(line);
  }

  list(): FlowRecord[] {
    return [...this.#records];
  }

  /** Streams new drops as NDJSON FlowEvents until the client goes away. */
  follow(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.flushHeaders();
    this.#followers.add(res);
    res.once('close', () => this.#followers.delete(res));
  }

  close(): void {
    for (const res of this.#followers) res.end();
  }
}

// Every connection the ztunnel carries, open ones and the most recent closed
// ones, with open/close events for the admin API's follow stream and the
// access log. Byte counts come from the socket's own counters when asked, so
// the data path does no per-chunk bookkeeping.
import type { Socket } from 'node:net';
import type { FlowEvent, FlowRecord, WorkloadRef } from './flow.ts';
import type { CloseReason } from './reasons.ts';

export type FlowInit = Omit<FlowRecord, 'id' | 'node' | 'state' | 'startedAt' | 'durationMs' | 'bytesSent' | 'bytesReceived' | 'closeReason'>;

/** namespace/name of a workload or service, as flows show it. */
export const refOf = (o: WorkloadRef | undefined): WorkloadRef | undefined => (o ? { namespace: o.namespace, name: o.name } : undefined);

/** The plain TCP socket of a flow, and whether the application's client or its server is on the other end. */
export interface ByteCounter {
  socket: Socket;
  facing: 'client' | 'server';
}

export class Flow {
  readonly #table: FlowTable;
  /** Absent for a connection refused before any upstream existed. */
  readonly #counter: ByteCounter | undefined;
  readonly #started = Date.now();
  readonly record: FlowRecord;
  /** Tears the connection down with `reason` (default shutdown); set by whoever carries it. */
  abort: (reason?: CloseReason) => void = () => {};

  constructor(table: FlowTable, record: FlowRecord, counter: ByteCounter | undefined) {
    this.#table = table;
    this.record = record;
    this.#counter = counter;
  }

  get closed(): boolean {
    return this.record.state === 'closed';
  }

  /** The record with current byte counts. */
  snapshot(): FlowRecord {
    if (!this.#counter) return { ...this.record };
    const { socket, facing } = this.#counter;
    const [fromClient, toClient] = facing === 'client' ? [socket.bytesRead, socket.bytesWritten] : [socket.bytesWritten, socket.bytesRead];
    return { ...this.record, bytesSent: fromClient, bytesReceived: toClient };
  }

  /** Closes the flow once; later calls keep the first reason. */
  close(reason: CloseReason): void {
    if (this.closed) return;
    Object.assign(this.record, this.snapshot(), { state: 'closed', durationMs: Date.now() - this.#started, closeReason: reason });
    this.#table.retire(this);
  }
}

export type FlowListener = (event: FlowEvent) => void;

export class FlowTable {
  readonly node: string;
  readonly #open = new Set<Flow>();
  /** Ring of closed records, oldest overwritten first. */
  readonly #closed: FlowRecord[] = [];
  readonly #capacity: number;
  #next = 0;
  #ids = 0;
  readonly #listeners = new Set<FlowListener>();

  constructor(node: string, closedCapacity = 2000) {
    this.node = node;
    this.#capacity = closedCapacity;
  }

  get openCount(): number {
    return this.#open.size;
  }

  open(init: FlowInit, counter?: ByteCounter): Flow {
    const record: FlowRecord = { id: `${this.node}-${++this.#ids}`, node: this.node, ...init, bytesSent: 0, bytesReceived: 0, state: 'open', startedAt: new Date().toISOString() };
    const flow = new Flow(this, record, counter);
    this.#open.add(flow);
    this.#emit({ event: 'open', flow: record });
    return flow;
  }

  /** Called by Flow.close. */
  retire(flow: Flow): void {
    this.#open.delete(flow);
    if (this.#closed.length < this.#capacity) this.#closed.push(flow.record);
    else this.#closed[this.#next] = flow.record;
    this.#next = (this.#next + 1) % this.#capacity;
    this.#emit({ event: 'close', flow: flow.record });
  }

  /** Closed flows oldest first, then open ones. */
  list(): FlowRecord[] {
    const closed = this.#closed.length < this.#capacity ? this.#closed : [...this.#closed.slice(this.#next), ...this.#closed.slice(0, this.#next)];
    return [...closed, ...[...this.#open].map((f) => f.snapshot())];
  }

  subscribe(listener: FlowListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  abortAll(): void {
    for (const f of [...this.#open]) f.abort();
  }

  #emit(event: FlowEvent): void {
    for (const l of this.#listeners) l(event);
  }
}

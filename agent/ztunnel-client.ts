// The agent's end of the control channel: a full snapshot on every
// (re)connect, deltas after, one message at a time, each waiting for the
// ztunnel's ack. A delta is computed from what the ztunnel acknowledged
// holding, never from what was merely sent, so a refused or unanswered
// message is never silently lost: it is counted, shown in status, and
// followed at once by a full snapshot (and a refused snapshot is retried
// with backoff), until the ztunnel holds what the agent computed.
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { ControlProtocolError } from '../lib/core/errors.ts';
import { stateDelta } from '../lib/mesh/delta.ts';
import type { MeshState } from '../lib/mesh/kinds.ts';
import type { ControlMessage, ControlReply } from '../lib/mesh/control-protocol.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ControlStatus } from '../lib/mesh/agent-status.ts';

const ACK_TIMEOUT_MS = 5000;
const RECONNECT_MS = 250;
const RESYNC_MIN_MS = 1000;
const RESYNC_MAX_MS = 30_000;

/** What the node agent needs of its ztunnel's control channel. */
export interface ZtunnelControl {
  start(): void;
  stop(): void;
  /** Resolves true once the ztunnel holds `state`; false when it is not connected or did not acknowledge. */
  push(state: MeshState): Promise<boolean>;
  status(): ControlStatus;
}

export interface ZtunnelControlOptions {
  ackTimeoutMs?: number;
  /** The first retry of a refused snapshot; doubled per refusal up to RESYNC_MAX_MS. */
  resyncMs?: number;
}

export class ZtunnelControlClient implements ZtunnelControl {
  readonly socketPath: string;
  #log: Logger;
  #ackTimeoutMs: number;
  #resyncMinMs: number;
  #socket: Socket | undefined;
  #connected = false;
  /** What the ztunnel acknowledged holding on this connection; undefined: nothing known, so the next message is a snapshot. */
  #held: MeshState | undefined;
  /**
   * Undefined until the agent's first reconcile: a ztunnel opens its traffic
   * listeners on its first state, and an empty one would have it take
   * captured connections knowing no workload.
   */
  #desired: MeshState | undefined;
  #version = 0;
  #ackedVersion = 0;
  #refused = 0;
  #lastError: string | undefined;
  #waiters = new Map<number, (reply: ControlReply) => void>();
  /** Sends run one after another: each is computed from what the one before left the ztunnel holding. */
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;
  #reconnect: NodeJS.Timeout | undefined;
  #resync: NodeJS.Timeout | undefined;
  #resyncMs: number;

  constructor(socketPath: string, log: Logger, options: ZtunnelControlOptions = {}) {
    this.socketPath = socketPath;
    this.#log = log;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.#resyncMinMs = options.resyncMs ?? RESYNC_MIN_MS;
    this.#resyncMs = this.#resyncMinMs;
  }

  start(): void {
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#reconnect);
    clearTimeout(this.#resync);
    this.#socket?.destroy();
  }

  status(): ControlStatus {
    const status: ControlStatus = {
      connected: this.#connected,
      inSync: this.#connected && this.#held !== undefined && this.#held === this.#desired,
      ackedVersion: this.#ackedVersion,
      refused: this.#refused,
    };
    if (this.#lastError !== undefined) status.lastError = this.#lastError;
    return status;
  }

  /** Sends what changed since what the ztunnel holds; resolves true once it holds `state`. */
  push(state: MeshState): Promise<boolean> {
    this.#desired = state;
    return this.#enqueue();
  }

  #enqueue(): Promise<boolean> {
    const run = this.#queue.then(() => this.#sync());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** One turn: a delta (or, with nothing held, a snapshot) to the desired state; a refused delta is followed by a snapshot in the same turn. */
  async #sync(): Promise<boolean> {
    for (;;) {
      const socket = this.#socket;
      if (!socket || !this.#connected) return false;
      const target = this.#desired;
      if (target === undefined) return false;
      const held = this.#held;
      let message: ControlMessage;
      if (held === undefined) message = { type: 'snapshot', version: ++this.#version, state: target };
      else {
        const changes = stateDelta(held, target);
        if (!changes) {
          this.#held = target;
          return true;
        }
        message = { type: 'delta', version: ++this.#version, ...changes };
      }
      const reply = await this.#send(socket, message);
      // Reconnected (or stopped) meanwhile: the new connection's snapshot takes over.
      if (socket !== this.#socket) return false;
      if (reply.type === 'ack') {
        this.#held = target;
        this.#lastError = undefined;
        this.#resyncMs = this.#resyncMinMs;
        return true;
      }
      this.#onRefused(message, reply.error);
      if (message.type === 'snapshot') {
        this.#scheduleResync();
        return false;
      }
    }
  }

  /** The ztunnel keeps serving its last good state; what it holds is no longer known, so the next message is a snapshot. */
  #onRefused(message: ControlMessage, error: string): void {
    this.#held = undefined;
    this.#refused += 1;
    this.#lastError = `the ztunnel refused ${message.type} version ${message.version}: ${error}`;
    this.#log.error('ztunnel refused state; resyncing with a full snapshot', { type: message.type, version: message.version, error });
  }

  #scheduleResync(): void {
    if (this.#stopped) return;
    clearTimeout(this.#resync);
    const delay = this.#resyncMs;
    this.#resyncMs = Math.min(this.#resyncMs * 2, RESYNC_MAX_MS);
    this.#resync = setTimeout(() => void this.#enqueue(), delay);
    this.#resync.unref();
  }

  #connect(): void {
    if (this.#stopped) return;
    const socket = createConnection(this.socketPath);
    this.#socket = socket;
    socket.on('connect', () => {
      this.#connected = true;
      this.#held = undefined;
      this.#log.info('ztunnel connected', { socket: this.socketPath });
      void this.#enqueue();
    });
    // readline re-emits the socket's errors (ECONNREFUSED while the ztunnel restarts); the socket's handler below records them.
    createInterface({ input: socket }).on('line', (line) => this.#onReply(line)).on('error', () => undefined);
    socket.on('error', (err) => {
      this.#lastError = err.message;
    });
    socket.on('close', () => {
      if (this.#connected) this.#log.warn('ztunnel disconnected; reconnecting', {});
      this.#connected = false;
      if (this.#socket === socket) this.#socket = undefined;
      this.#held = undefined;
      for (const [version, resolve] of this.#waiters) resolve({ type: 'nack', version, error: 'disconnected' });
      this.#waiters.clear();
      if (!this.#stopped) this.#reconnect = setTimeout(() => this.#connect(), RECONNECT_MS);
    });
  }

  #onReply(line: string): void {
    let reply: ControlReply;
    try {
      reply = JSON.parse(line) as ControlReply;
    } catch {
      this.#log.error('unreadable reply from ztunnel', { error: new ControlProtocolError(line.slice(0, 200)).message });
      return;
    }
    if (reply.type === 'ack') this.#ackedVersion = Math.max(this.#ackedVersion, reply.version);
    this.#waiters.get(reply.version)?.(reply);
    this.#waiters.delete(reply.version);
  }

  /** The ztunnel's answer; no answer in time counts as a refusal, since what it holds is then unknown. */
  #send(socket: Socket, message: ControlMessage): Promise<ControlReply> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(message.version);
        resolve({ type: 'nack', version: message.version, error: `no answer within ${this.#ackTimeoutMs} ms` });
      }, this.#ackTimeoutMs);
      this.#waiters.set(message.version, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.write(`${JSON.stringify(message)}\n`);
    });
  }
}

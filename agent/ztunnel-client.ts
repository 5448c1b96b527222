// The agent's end of the control channel: a full snapshot on every
// (re)connect, deltas after, each waiting for the ztunnel's ack.
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { ControlProtocolError } from '../lib/core/errors.ts';
import { stateDelta } from '../lib/mesh/delta.ts';
import { emptyMeshState, type MeshState } from '../lib/mesh/kinds.ts';
import type { ControlMessage, ControlReply } from '../lib/mesh/control-protocol.ts';
import type { Logger } from '../lib/core/log.ts';
import type { ControlStatus } from '../lib/mesh/agent-status.ts';

const ACK_TIMEOUT_MS = 5000;
const RECONNECT_MS = 250;

/** What the node agent needs of its ztunnel's control channel. */
export interface ZtunnelControl {
  start(): void;
  stop(): void;
  /** Resolves true once the ztunnel holds `state`; false when it is not connected or did not acknowledge. */
  push(state: MeshState): Promise<boolean>;
  status(): ControlStatus;
}

export class ZtunnelControlClient implements ZtunnelControl {
  readonly socketPath: string;
  #log: Logger;
  #socket: Socket | undefined;
  #sent: MeshState | undefined;
  #desired: MeshState = emptyMeshState();
  #version = 0;
  #waiters = new Map<number, (reply: ControlReply) => void>();
  #status: ControlStatus = { connected: false, ackedVersion: 0 };
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(socketPath: string, log: Logger) {
    this.socketPath = socketPath;
    this.#log = log;
  }

  start(): void {
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#socket?.destroy();
  }

  status(): ControlStatus {
    return { ...this.#status };
  }

  /** Sends what changed since the last push; resolves true once the ztunnel holds `state`. */
  async push(state: MeshState): Promise<boolean> {
    this.#desired = state;
    const socket = this.#socket;
    if (!socket || !this.#status.connected || !this.#sent) return false;
    const changes = stateDelta(this.#sent, state);
    if (!changes) return true;
    this.#sent = state;
    return this.#send(socket, { type: 'delta', version: ++this.#version, ...changes });
  }

  #connect(): void {
    if (this.#stopped) return;
    const socket = createConnection(this.socketPath);
    this.#socket = socket;
    socket.on('connect', () => {
      this.#status.connected = true;
      this.#log.info('ztunnel connected', { socket: this.socketPath });
      this.#sent = this.#desired;
      void this.#send(socket, { type: 'snapshot', version: ++this.#version, state: this.#desired });
    });
    createInterface({ input: socket }).on('line', (line) => this.#onReply(line));
    socket.on('error', (err) => {
      this.#status.lastError = err.message;
    });
    socket.on('close', () => {
      if (this.#status.connected) this.#log.warn('ztunnel disconnected; reconnecting', {});
      this.#status.connected = false;
      this.#socket = undefined;
      this.#sent = undefined;
      for (const [version, resolve] of this.#waiters) resolve({ type: 'nack', version, error: 'disconnected' });
      this.#waiters.clear();
      this.#retry = setTimeout(() => this.#connect(), RECONNECT_MS);
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
    if (reply.type === 'ack') this.#status.ackedVersion = Math.max(this.#status.ackedVersion, reply.version);
    else this.#log.error('ztunnel rejected state', { version: reply.version, error: reply.error });
    this.#waiters.get(reply.version)?.(reply);
    this.#waiters.delete(reply.version);
  }

  #send(socket: Socket, message: ControlMessage): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(message.version);
        resolve(false);
      }, ACK_TIMEOUT_MS);
      this.#waiters.set(message.version, (reply) => {
        clearTimeout(timer);
        resolve(reply.type === 'ack');
      });
      socket.write(`${JSON.stringify(message)}\n`);
    });
  }
}

// The agent's control channel: NDJSON over a Unix socket. Each connection
// starts with a snapshot, then deltas; each message is answered with ack or
// nack. A rejected message leaves the last good state serving, and so does a
// lost agent (fail static) until a reconnect brings a fresh snapshot.
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { ControlProtocolError } from '../lib/core/errors.ts';
import { parseControlMessage, type ControlReply } from '../lib/mesh/control-protocol.ts';
import { closeServer, listenUnix } from '../lib/core/listen.ts';
import type { Logger } from '../lib/core/log.ts';
import type { StateStore, StateView } from '../lib/mesh/state.ts';

export interface ControlServerOptions {
  path: string;
  store: StateStore;
  log: Logger;
  /** Runs after each view is swapped in (certificates to hold, policies to re-check). */
  onApplied?(view: StateView): void;
}

const versionOf = (raw: unknown): number =>
  typeof raw === 'object' && raw !== null && 'version' in raw && typeof raw.version === 'number' ? raw.version : -1;

interface Outcome {
  reply: ControlReply;
  applied?: { type: 'snapshot' | 'delta'; view: StateView };
}

function handleLine(line: string, synced: boolean, o: ControlServerOptions): Outcome {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    return { reply: { type: 'nack', version: -1, error: `not JSON: ${(err as Error).message}` } };
  }
  try {
    const msg = parseControlMessage(raw);
    if (msg.type === 'delta' && !synced) throw new ControlProtocolError('a connection must start with a snapshot');
    const view = o.store.apply(msg);
    return { reply: { type: 'ack', version: view.version }, applied: { type: msg.type, view } };
  } catch (err) {
    // Anything else is a bug in validation, not the agent's: still refused, so one message never stops the ztunnel.
    const error = err instanceof ControlProtocolError ? err.message : `the ztunnel failed on this message (${err instanceof Error ? err.message : String(err)}); it keeps its last state`;
    if (!(err instanceof ControlProtocolError)) o.log.error('control_message_failed', { error: err });
    return { reply: { type: 'nack', version: versionOf(raw), error } };
  }
}

function serve(socket: Socket, o: ControlServerOptions): void {
  o.log.info('agent_connected');
  let synced = false;
  socket.on('error', (err) => o.log.warn('agent_connection_error', { error: err }));
  socket.once('close', () => o.log.info('agent_disconnected', { version: o.store.view?.version }));
  const lines = createInterface({ input: socket, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    const started = performance.now();
    const { reply, applied } = handleLine(line, synced, o);
    const applyMs = Math.round((performance.now() - started) * 100) / 100;
    if (applied?.type === 'snapshot') synced = true;
    // The ack goes first: the view is in place, and the agent waits for it
    // before redirecting traffic; onApplied's work (certificate requests,
    // re-checking live connections) need not delay that.
    if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
    if (reply.type === 'nack') o.log.warn('control_nack', { version: reply.version, error: reply.error });
    if (applied) {
      const { type, view } = applied;
      try {
        o.onApplied?.(view);
      } catch (err) {
        // The view is in place and serving; what failed (a certificate to hold, a re-check) is logged, never fatal.
        o.log.error('view_hook_failed', { version: view.version, error: err });
      }
      o.log.info(`${type}_applied`, { version: view.version, applyMs, nodes: view.nodes.size, workloads: view.workloads.size, services: view.services.size });
    }
  });
}

export interface ControlServer {
  /** Resolves once no agent is connected, or after `timeoutMs`. */
  agentsGone(timeoutMs: number): Promise<void>;
  /** Stops listening and drops connected agents. */
  close(): Promise<void>;
}

export async function startControlServer(o: ControlServerOptions): Promise<ControlServer> {
  const agents = new Set<Socket>();
  const gone = new Set<() => void>();
  const server = createServer((socket) => {
    agents.add(socket);
    socket.once('close', () => {
      agents.delete(socket);
      if (agents.size === 0) for (const resolve of gone) resolve();
    });
    serve(socket, o);
  });
  await listenUnix(server, o.path);
  return {
    agentsGone: (timeoutMs) => new Promise<void>((resolve) => {
      if (agents.size === 0) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        gone.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      gone.add(done);
    }),
    close: () => {
      const closed = closeServer(server);
      for (const s of agents) s.destroy();
      return closed;
    },
  };
}

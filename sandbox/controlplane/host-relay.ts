// The host's way to the sandbox's API server without touching the host's
// network: `sandbox up` listens on a loopback port of the root namespace and
// hands that listening socket to the control-plane supervisor over Node's IPC
// channel; the supervisor runs in the underlay namespace, so each connection
// it accepts there is piped to the API server on the underlay bridge. No
// address, route or rule is added to the host; kubectl and tests on the host
// use https://127.0.0.1:<port>.
import { connect, createServer, Server, type Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../../lib/core/log.ts';
import { SandboxError } from '../../lib/core/errors.ts';

/** Connections relayed at once; kubectl, informers and tests need a handful. */
export const MAX_RELAYED_CONNECTIONS = 256;
const HANDOFF_MESSAGE = 'meshlet-api-relay';
/** The supervisor asks for the socket once it listens: a message sent before that would be lost. */
const READY_MESSAGE = 'meshlet-api-relay-ready';
const HANDOFF_TIMEOUT_MS = 30_000;

/** Opens the host's loopback port for the relay. */
export function listenOnLoopback(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => resolve(server));
  });
}

/** Sends the listening socket to `child` (spawned with an 'ipc' stdio entry) when it asks, and lets go of it here. */
export function handOff(server: Server, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      clearTimeout(timer);
      server.close();
      if (child.connected) child.disconnect();
      reject(new SandboxError(`could not hand the API relay's socket to the control-plane supervisor: ${why}`));
    };
    const timer = setTimeout(() => fail(`it did not ask for it within ${HANDOFF_TIMEOUT_MS / 1000} s`), HANDOFF_TIMEOUT_MS);
    child.once('exit', (code) => fail(`it exited (code ${code})`));
    child.on('message', (message: unknown) => {
      if (message !== READY_MESSAGE) return;
      child.send(HANDOFF_MESSAGE, server, (err) => {
        clearTimeout(timer);
        server.close();
        child.disconnect();
        if (err) fail(err.message);
        else resolve();
      });
    });
  });
}

/** In the supervisor: asks `sandbox up` for the listening socket, then relays each connection to `target`. */
export function receiveAndRelay(target: { host: string; port: number }, log: Logger): void {
  if (!process.send) return;
  const onMessage = (message: unknown, handle: unknown): void => {
    if (message !== HANDOFF_MESSAGE || !(handle instanceof Server)) return;
    process.off('message', onMessage);
    relay(handle, target, log);
  };
  process.on('message', onMessage);
  process.send(READY_MESSAGE);
}

function relay(server: Server, target: { host: string; port: number }, log: Logger): void {
  server.maxConnections = MAX_RELAYED_CONNECTIONS;
  server.on('error', (err) => log.warn('API relay listener failed', { error: err.message }));
  server.on('connection', (client: Socket) => {
    const upstream = connect(target.port, target.host);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  log.info('relaying the host loopback port to the API server', { target: `${target.host}:${target.port}` });
}

// Listening and closing, as promises, for the ztunnel's TCP and Unix servers.
import { rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';

/**
 * Listens with SO_REUSEPORT: a rolling update's new proxy binds the node's
 * ports beside the old one, which stops listening once it hands over and
 * drains what it holds. Linux admits only sockets of the same effective UID
 * into a port's group.
 */
export function listenTcp(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, reusePort: true }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Listens on a Unix socket path, replacing a stale socket file left by a previous run. */
export async function listenUnix(server: Server, path: string): Promise<void> {
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting; resolves when the open connections are gone. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

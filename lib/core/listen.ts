// Listening and closing, as promises, for the node components' TCP and Unix servers.
import { randomBytes } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import { chmod, rename, rm, stat } from 'node:fs/promises';
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

/**
 * Listens on a Unix socket path, atomically replacing whatever socket file is
 * there (a previous run's, or the one a rolling update's old process still
 * serves). The socket is bound under a staging name and renamed into place:
 * libuv unlinks the name a server bound when it closes, so binding `path`
 * itself would let the old process, exiting, delete its successor's socket.
 * On close the path is removed only while it is still this server's.
 */
export async function listenUnix(server: Server, path: string, mode?: number): Promise<void> {
  const staging = `${path}.${randomBytes(4).toString('hex')}`;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(staging, () => {
      server.off('error', reject);
      resolve();
    });
  });
  try {
    if (mode !== undefined) await chmod(staging, mode);
    await rename(staging, path);
  } catch (err) {
    await rm(staging, { force: true });
    throw err;
  }
  const { ino } = await stat(path);
  server.once('close', () => {
    if (statSync(path, { throwIfNoEntry: false })?.ino === ino) rmSync(path, { force: true });
  });
}

/** Stops accepting; resolves when the open connections are gone. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

// A tiny JSON-over-HTTP server on a Unix socket: the node components' admin
// APIs, reachable by the CLI without entering the node's network namespace.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { getHeapSpaceStatistics } from 'node:v8';
import { createServer } from './http-server.ts';
import { listenUnix } from './listen.ts';

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => unknown | Promise<unknown>;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export interface MemoryReport {
  usage: NodeJS.MemoryUsage;
  heapSpaces: { space: string; used: number; size: number }[];
}

/** Where a process's resident memory is: JS heap by space, buffers and native, by V8's and Node's counters (GET /memory). */
export function memoryReport(): MemoryReport {
  return { usage: process.memoryUsage(), heapSpaces: getHeapSpaceStatistics().map((s) => ({ space: s.space_name, used: s.space_used_size, size: s.space_size })) };
}

/** Routes by path; a route that returns a value has it sent as JSON 200. */
export async function listenAdmin(socketPath: string, routes: Record<string, Route>): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = routes[url.pathname];
    if (!route) return sendJson(res, 404, { error: `no such path ${url.pathname}; try ${Object.keys(routes).join(', ')}` });
    Promise.resolve(route(req, res, url)).then(
      (body) => {
        if (body !== undefined && !res.headersSent) sendJson(res, 200, body);
      },
      (err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
      },
    );
  });
  await listenUnix(server, socketPath, 0o600);
  return server;
}

/** A follower that stops reading gets dropped instead of buffering without bound. */
const FOLLOW_BUFFER_LIMIT = 4 * 1024 * 1024;

/**
 * Streams events as NDJSON until the client goes away. `followers` holds the
 * open streams so a shutdown can end them cleanly.
 */
export function streamEvents<E>(subscribe: (listener: (event: E) => void) => () => void, followers: Set<ServerResponse>, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  const unsubscribe = subscribe((event) => {
    if (res.writableLength > FOLLOW_BUFFER_LIMIT) return void res.destroy();
    res.write(`${JSON.stringify(event)}\n`);
  });
  followers.add(res);
  res.once('close', () => {
    unsubscribe();
    followers.delete(res);
  });
  req.resume();
}

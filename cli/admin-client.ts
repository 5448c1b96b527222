// The CLI's client for the node components' admin APIs on Unix sockets.
import { Agent, request } from 'undici';
import { MeshletError } from '../lib/core/errors.ts';

export class AdminUnreachableError extends MeshletError {
  constructor(socketPath: string, cause: unknown) {
    super('MESHLET_ADMIN_UNREACHABLE', `cannot reach the admin API at ${socketPath}: ${cause instanceof Error ? cause.message : String(cause)}; is the node's agent/ztunnel running? (meshlet sandbox status)`, { cause });
  }
}

const dispatchers = new Map<string, Agent>();

function dispatcher(socketPath: string): Agent {
  let agent = dispatchers.get(socketPath);
  if (!agent) {
    agent = new Agent({ connect: { socketPath } });
    dispatchers.set(socketPath, agent);
  }
  return agent;
}

export async function getJson<T>(socketPath: string, path: string): Promise<T> {
  let res;
  try {
    res = await request(`http://localhost${path}`, { dispatcher: dispatcher(socketPath) });
  } catch (err) {
    throw new AdminUnreachableError(socketPath, err);
  }
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new AdminUnreachableError(socketPath, new Error(`HTTP ${res.statusCode}: ${body.trim()}`));
  return JSON.parse(body) as T;
}

/** Calls onLine for each line of a streaming response until the server ends it or `signal` aborts. */
export async function streamLines(socketPath: string, path: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
  let res;
  try {
    res = await request(`http://localhost${path}`, { dispatcher: dispatcher(socketPath), signal });
  } catch (err) {
    if (signal.aborted) return;
    throw new AdminUnreachableError(socketPath, err);
  }
  let rest = '';
  try {
    for await (const chunk of res.body) {
      const lines = (rest + (chunk as Buffer).toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') onLine(line);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}

export async function closeAdminClients(): Promise<void> {
  await Promise.all([...dispatchers.values()].map((d) => d.close()));
  dispatchers.clear();
}

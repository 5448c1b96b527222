// The workloads, run by real tools inside the client pod (so an enrolled
// pod's connections are captured exactly like its own processes').
import { sandboxExec, type PodRef } from '../../sandbox/api.ts';
import { pinnedArgv } from './cpus.ts';
import { WorkloadError } from './errors.ts';
import { parseCurl, parseHey, parseWrk, type CurlResult, type HeyResult, type WrkResult } from './parse.ts';
import { BLOB_PATH, SMALL_PATH } from './www.ts';

export interface Client {
  sandbox: string;
  pod: PodRef;
  /** http://host:port the client addresses on this path. */
  base: string;
  /** CPUs the load tools run on (cpus.ts): the client pod's node's, the same on every path. */
  cpus: string;
}

export const KEEPALIVE_CONNECTIONS = 16;
/** hey's -c and -q: c*q = 1,000 requests/s. */
const LATENCY_WORKERS = 10;
const LATENCY_RATE = 1000;
const NEWCONN_WORKERS = 16;

async function tool(client: Client, tool: string, argv: string[], seconds: number): Promise<string> {
  const r = await sandboxExec(client.sandbox, client.pod, pinnedArgv(client.cpus, [tool, ...argv]), { timeoutMs: (seconds + 60) * 1000 });
  if (r.timedOut) throw new WorkloadError(tool, `did not finish within ${seconds + 60} s`);
  if (r.exitCode !== 0) throw new WorkloadError(tool, `exit ${r.exitCode ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  return r.stdout;
}

/** HTTP keep-alive, 16 connections, 1 KiB responses, as fast as they go. */
export async function keepAlive(client: Client, seconds: number): Promise<WrkResult> {
  const out = await tool(client, 'wrk', ['-t', '2', '-c', String(KEEPALIVE_CONNECTIONS), '-d', `${seconds}s`, '--latency', `${client.base}${SMALL_PATH}`], seconds);
  return parseWrk(out);
}

/** Latency at a fixed 1,000 requests/s over keep-alive connections. */
export async function fixedRate(client: Client, seconds: number): Promise<HeyResult> {
  const q = LATENCY_RATE / LATENCY_WORKERS;
  const out = await tool(client, 'hey', ['-z', `${seconds}s`, '-c', String(LATENCY_WORKERS), '-q', String(q), '-t', '10', `${client.base}${SMALL_PATH}`], seconds);
  return parseHey(out);
}

/** A new TCP connection for every request. */
export async function newConnections(client: Client, seconds: number): Promise<HeyResult> {
  const out = await tool(client, 'hey', ['-z', `${seconds}s`, '-c', String(NEWCONN_WORKERS), '-disable-keepalive', '-t', '10', `${client.base}${SMALL_PATH}`], seconds);
  return parseHey(out);
}

/** One large download over a single connection. */
export async function singleStream(client: Client, bytes: number): Promise<CurlResult> {
  const limit = 600;
  const out = await tool(client, 'curl', ['-sS', '--max-time', String(limit), '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{speed_download}', `${client.base}${BLOB_PATH}`], limit);
  return parseCurl(out, bytes);
}

/** One request, to check a path works before measuring it. */
export async function probe(client: Client): Promise<boolean> {
  const r = await sandboxExec(client.sandbox, client.pod, ['curl', '-sf', '--max-time', '5', '-o', '/dev/null', `${client.base}${SMALL_PATH}`], { timeoutMs: 15_000 });
  return r.exitCode === 0;
}

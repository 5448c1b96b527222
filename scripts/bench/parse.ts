// Readers for the load tools' text output. Each returns what the report needs
// and refuses output that shows errors, so a broken path never passes as fast.
import { WorkloadError } from './errors.ts';

export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  /** wrk's "Socket errors: …" line, when there were some (at most MAX_SOCKET_ERROR_SHARE of the requests). */
  socketErrors?: string;
}

/** Socket errors (dropped connections) wrk may see before a run counts as failed: one in a thousand requests. */
export const MAX_SOCKET_ERROR_SHARE = 0.001;

/** `wrk --latency` output. */
export function parseWrk(out: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1];
  const total = /^\s*(\d+) requests in /m.exec(out)?.[1];
  if (rps === undefined || total === undefined) throw new WorkloadError('wrk', `unreadable output:\n${out}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = errors ? errors.slice(1).reduce((n, e) => n + Number(e), 0) : 0;
  // A stray error leaves the throughput readable (the caller reports it); more says the path is broken.
  if (socketErrors > Number(total) * MAX_SOCKET_ERROR_SHARE) throw new WorkloadError('wrk', `socket errors: ${errors![0]} in ${total} requests`);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) throw new WorkloadError('wrk', `${non2xx[1]} responses were not 2xx/3xx`);
  return { requestsPerSecond: Number(rps), requests: Number(total), ...(errors && socketErrors > 0 ? { socketErrors: errors[0] } : {}) };
}

export interface HeyResult {
  requestsPerSecond: number;
  requests: number;
  /** Seconds (hey prints 4 decimals: 0.1 ms resolution). */
  p50: number;
  p99: number;
}

/** hey's default summary. Any error line, or a status other than 200, is a failure. */
export function parseHey(out: string): HeyResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  const p50 = /^\s*50%+ in ([\d.]+) secs/m.exec(out)?.[1];
  const p99 = /^\s*99%+ in ([\d.]+) secs/m.exec(out)?.[1];
  if (rps === undefined || p50 === undefined || p99 === undefined) throw new WorkloadError('hey', `unreadable output:\n${out}`);
  const errors = /Error distribution:\n([\s\S]*)$/.exec(out)?.[1]?.trim();
  if (errors) throw new WorkloadError('hey', `requests failed:\n${errors.split('\n').slice(0, 5).join('\n')}`);
  const statuses = [...out.matchAll(/^\s*\[(\d+)\]\s+(\d+) responses/gm)];
  const bad = statuses.filter((m) => m[1] !== '200');
  if (bad.length > 0) throw new WorkloadError('hey', `non-200 responses: ${bad.map((m) => `${m[2]}×${m[1]}`).join(', ')}`);
  const requests = statuses.reduce((n, m) => n + Number(m[2]), 0);
  return { requestsPerSecond: Number(rps), requests, p50: Number(p50), p99: Number(p99) };
}

export interface CurlResult {
  /** Bytes per second, as curl's speed_download. */
  bytesPerSecond: number;
  bytes: number;
}

/** Output of `curl -w '%{http_code} %{size_download} %{speed_download}'`. */
export function parseCurl(out: string, expectedBytes: number): CurlResult {
  const m = /^(\d{3}) (\d+) ([\d.]+)\s*$/.exec(out.trim());
  if (!m) throw new WorkloadError('curl', `unreadable output: ${out}`);
  if (m[1] !== '200') throw new WorkloadError('curl', `HTTP ${m[1]}`);
  const bytes = Number(m[2]);
  if (bytes !== expectedBytes) throw new WorkloadError('curl', `got ${bytes} bytes, expected ${expectedBytes}`);
  return { bytesPerSecond: Number(m[3]), bytes };
}

// The routing cases' requests as a user sends them in the sandbox: curl in
// the client pods (one request with its whole answer, or many on kept-alive
// connections with status and backend alone), a real gRPC client for the
// gRPC cases; and what the waypoint and the fixture backends recorded, read
// inside their pods (the waypoint's admin API and the backends' control
// listener are on their pods' loopback). A CaseDriver for l7-check.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { sandboxExec } from '../../sandbox/api.ts';
import { backendPods, CONTROL_PORT } from './l7-workloads.ts';
import { eventually } from './eventually.ts';
import { REPO } from './harness.ts';
import { BACKEND_HEADER, CASE_NAMESPACE, CLIENT, SERVICES, type CaseRequest } from './l7-cases.ts';
import { outcomeOf, type CaseDriver, type CaseOutcome, type Rejection, type ResponseHeaders } from './l7-check.ts';

/** The waypoint's admin API in its pod (meshlet waypoint --admin). */
const WAYPOINT_ADMIN = 'http://127.0.0.1:15000';
const GRPC_CLIENT = join(REPO, 'test/e2e/fixtures/grpc-call.py');
/** Debian's python3, which has python3-grpcio (a python3 earlier on the PATH may not). */
const SYSTEM_PYTHON = '/usr/bin/python3';
/** curl processes a batch of requests is spread over, each on one kept-alive connection. */
export const CLIENTS_PER_BATCH = 4;

/** One request as the waypoint's /requests lists it (the fields the suite reads). */
export interface RequestSummary {
  requestId: string;
  flags: string;
  status: number;
  startTime: string;
  upstreamHost?: string;
}

/** The waypoint's /config (the fields the suite reads). */
export interface WaypointConfig {
  synced: boolean;
  gateway: boolean;
  rejected: (Rejection & { object: string })[];
  source: { informers?: { kind: string; objects: number }[] };
}

/** One request as a fixture backend's /received lists it. */
export interface Received {
  method: string;
  path: string;
  host: string;
  requestId: string;
  port: number;
}

export interface ExecInPod {
  namespace?: string;
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** `argv` in a pod of sandbox `sandbox`, which must exit 0; its stdout. */
export async function execOk(sandbox: string, pod: string, argv: readonly string[], options: ExecInPod = {}): Promise<string> {
  const namespace = options.namespace ?? CASE_NAMESPACE;
  const r = await sandboxExec(sandbox, { pod, namespace }, argv, {
    timeoutMs: options.timeoutMs ?? 60_000,
    ...(options.input === undefined ? {} : { input: options.input }),
    ...(options.env ? { env: options.env } : {}),
  });
  assert.equal(r.exitCode, 0, `${argv.slice(0, 4).join(' ')}… in ${namespace}/${pod} failed (${r.exitCode}${r.timedOut ? ', timed out' : ''}): ${r.stderr}${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

/** The client pod of `from` (`<namespace>/<serviceaccount>`): the fixture names it after its ServiceAccount. */
export const clientPod = (from = CLIENT): { pod: string; namespace: string } => {
  const [namespace, sa] = from.split('/') as [string, string];
  return { pod: sa, namespace };
};

const portOf = (r: CaseRequest) => r.port ?? SERVICES[r.to]!.ports[0]!;
const urlOf = (r: CaseRequest) => `http://${r.to}.${CASE_NAMESPACE}:${portOf(r)}${r.path ?? '/'}`;
/** curl's -H form: `name;` sends a header with an empty value. */
const headerArgs = (headers: Record<string, string>) => Object.entries(headers).map(([k, v]) => (v === '' ? `${k};` : `${k}: ${v}`));
const isGrpc = (r: CaseRequest) => Object.entries(r.headers ?? {}).some(([k, v]) => k.toLowerCase() === 'content-type' && v.startsWith('application/grpc'));
const quote = (s: string) => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

/** `curl -i` output: status line, headers (repeated ones as a list), body. */
function parseCurl(out: string, requestId: string): CaseOutcome {
  const split = out.indexOf('\r\n\r\n');
  const head = split < 0 ? out : out.slice(0, split);
  const body = split < 0 ? '' : out.slice(split + 4);
  const [statusLine, ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(statusLine ?? '')?.[1]);
  assert.ok(status > 0, `curl printed no status line: ${out.slice(0, 500)}`);
  const headers: ResponseHeaders = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  return outcomeOf(status, headers, body, requestId);
}

/**
 * A curl config (`curl -K -`) sending a request per id, one after another on
 * one kept-alive connection; one line each: status, connections it opened,
 * x-backend. `rate` (curl's --rate, e.g. "20/s") spaces them.
 */
export function batchConfig(r: CaseRequest, ids: readonly string[], rate?: string): string {
  const requests = ids.map((id) => [
    `url = ${quote(urlOf(r))}`,
    `request = ${quote(r.method ?? 'GET')}`,
    ...headerArgs({ ...r.headers, 'x-request-id': id }).map((h) => `header = ${quote(h)}`),
    'output = /dev/null',
    'path-as-is',
    'globoff',
    'max-time = 15',
    `write-out = ${quote(`%{http_code} %{num_connects} %header{${BACKEND_HEADER}}\\n`)}`,
  ].join('\n'));
  return `${rate ? `rate = ${quote(rate)}\n` : ''}${requests.join('\nnext\n')}\n`;
}

/** One line of a batch's output. */
export function batchLine(line: string): { status: number; connects: number; backend: string | undefined } {
  const [status, connects, backend = ''] = line.split(' ');
  return { status: Number(status), connects: Number(connects), backend: backend === '' ? undefined : backend };
}

interface GrpcCall {
  code: number;
  details: string;
  backend: string | null;
  requestId: string;
}

export class SandboxL7Client implements CaseDriver {
  readonly #sandbox: string;
  readonly #waypointPod: () => string;
  #sequence = 0;
  readonly liveRandom = true;
  /** Connections the last batch of requests opened (curl's num_connects, summed). */
  lastBatchConnections = 0;

  /** `waypointPod`: the waypoint's pod in CASE_NAMESPACE, once there is one. */
  constructor(sandbox: string, waypointPod: () => string) {
    this.#sandbox = sandbox;
    this.#waypointPod = waypointPod;
  }

  exec(pod: string, argv: readonly string[], options: ExecInPod = {}): Promise<string> {
    return execOk(this.#sandbox, pod, argv, options);
  }

  /** A fresh id for a request or batch. */
  nextId(kind: string): string {
    return `${kind}-${++this.#sequence}`;
  }

  async send(r: CaseRequest): Promise<CaseOutcome> {
    if (isGrpc(r)) return (await this.#grpcCalls(r, 1))[0]!;
    const { pod, namespace } = clientPod(r.from);
    const requestId = this.nextId('case');
    const headers = headerArgs({ ...r.headers, 'x-request-id': requestId }).flatMap((h) => ['-H', h]);
    const out = await this.exec(pod, ['curl', '-s', '-i', '--max-time', '15', '--path-as-is', '-g', '-X', r.method ?? 'GET', ...headers, urlOf(r)], { namespace });
    return parseCurl(out, requestId);
  }

  async sendMany(r: CaseRequest, count: number): Promise<CaseOutcome[]> {
    if (isGrpc(r)) return this.#grpcCalls(r, count);
    const { pod, namespace } = clientPod(r.from);
    const batch = this.nextId('batch');
    const ids = Array.from({ length: count }, (_, i) => `${batch}-${i}`);
    const parts = Array.from({ length: CLIENTS_PER_BATCH }, (_, k) => ids.filter((_, i) => i % CLIENTS_PER_BATCH === k));
    const outputs = await Promise.all(parts.map((part) => this.exec(pod, ['curl', '-s', '-K', '-'], { namespace, input: batchConfig(r, part), timeoutMs: 300_000 })));
    this.lastBatchConnections = 0;
    return outputs.flatMap((out, k) => out.trim().split('\n').map((line, i) => {
      const { status, connects, backend } = batchLine(line);
      this.lastBatchConnections += connects;
      return outcomeOf(status, { [BACKEND_HEADER]: backend }, '', parts[k]![i]!);
    }));
  }

  /** The flags of `ids` from the waypoint's recent requests (it lists the last 2,000). */
  async flags(ids: readonly string[]): Promise<Map<string, string>> {
    const wanted = new Set(ids);
    const found = await eventually(`the waypoint's records of ${ids.length} requests`, async () => {
      const records = (await this.recentRequests()).filter((s) => wanted.has(s.requestId));
      if (records.length < wanted.size) throw new Error(`${records.length} of ${wanted.size} recorded`);
      return records;
    });
    return new Map(found.map((s) => [s.requestId, s.flags]));
  }

  /** Those of `ids` the pods of `service` got a mirrored copy of (Host …-shadow), once the copies stop coming. */
  async mirrored(service: string, ids: readonly string[]): Promise<Set<string>> {
    const wanted = new Set(ids);
    const copies = async () => {
      const got = new Set<string>();
      for (const pod of backendPods(service)) for (const r of await this.received(pod)) if (wanted.has(r.requestId) && /-shadow(:\d+)?$/.test(r.host)) got.add(r.requestId);
      return got;
    };
    let last = -1;
    // Mirrors are fire and forget: settled once all are in, or two reads a moment apart agree.
    return eventually(`the mirrored copies at ${service}`, async () => {
      const got = await copies();
      const settled = got.size === wanted.size || got.size === last;
      last = got.size;
      return settled && got;
    }, 30_000);
  }

  async rejection(object: string): Promise<Rejection | undefined> {
    return (await this.waypointConfig()).rejected.find((r) => r.object === object);
  }

  async #waypointJson<T>(path: string): Promise<T> {
    const pod = this.#waypointPod();
    assert.ok(pod, 'the waypoint has a pod');
    return JSON.parse(await this.exec(pod, ['curl', '-sf', '--max-time', '10', `${WAYPOINT_ADMIN}${path}`])) as T;
  }

  waypointConfig(): Promise<WaypointConfig> {
    return this.#waypointJson('/config');
  }

  recentRequests(): Promise<RequestSummary[]> {
    return this.#waypointJson('/requests');
  }

  /** A fixture backend's control listener (echo-backend.ts): /received, /fail?share=…&status=…, /reset. */
  control(pod: string, method: 'GET' | 'POST', path: string): Promise<string> {
    return this.exec(pod, ['curl', '-sf', '--max-time', '10', '-X', method, `http://127.0.0.1:${CONTROL_PORT}${path}`]);
  }

  async received(pod: string): Promise<Received[]> {
    return JSON.parse(await this.control(pod, 'GET', '/received')) as Received[];
  }

  async resetBackends(): Promise<void> {
    for (const service of Object.keys(SERVICES)) for (const pod of backendPods(service)) await this.control(pod, 'POST', '/reset');
  }

  /** `count` unary calls with the real gRPC client, on one channel; each as an outcome: HTTP 200 with its grpc-status. */
  async #grpcCalls(r: CaseRequest, count: number): Promise<CaseOutcome[]> {
    const { pod, namespace } = clientPod(r.from);
    const metadata = Object.entries(r.headers ?? {}).filter(([k]) => k.toLowerCase() !== 'content-type').map(([k, v]) => `${k.toLowerCase()}=${v}`);
    const argv = [SYSTEM_PYTHON, GRPC_CLIENT, `${r.to}.${CASE_NAMESPACE}:${portOf(r)}`, r.path ?? '/', String(count), this.nextId('grpc'), ...metadata];
    // grpcio's own resolver may not read the pod's /etc/hosts, where the sandbox's Service names are.
    const out = await this.exec(pod, argv, { namespace, env: { GRPC_DNS_RESOLVER: 'native' } });
    return out.trim().split('\n').map((line) => {
      const call = JSON.parse(line) as GrpcCall;
      return outcomeOf(200, { 'grpc-status': String(call.code), ...(call.backend ? { [BACKEND_HEADER]: call.backend } : {}) }, call.details, call.requestId);
    });
  }
}

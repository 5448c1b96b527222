// Container probes as kubelet runs them: the four actions (tcpSocket,
// httpGet, exec, grpc) with kubelet's success rules, and a worker per
// container instance and probe type that applies initialDelaySeconds,
// periodSeconds, timeoutSeconds and the success/failure thresholds on an
// injected clock.
import { connect as http2Connect } from 'node:http2';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, isIP, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { IntOrString, V1Container, V1Probe } from '@kubernetes/client-node';
import { Timer } from './clock.ts';
import type { Clock } from '../../lib/core/clock.ts';

export type ProbeType = 'startup' | 'readiness' | 'liveness';
export type ProbeResult = 'success' | 'failure' | 'unknown';

export interface ProbeOutcome {
  ok: boolean;
  /** What an operator reads: why it failed, or a note on a success. */
  message: string;
}

/** kubelet's probe defaults, in milliseconds; the API server fills the same, so they only matter for undefaulted specs. */
export interface ProbeTiming {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

const positive = (value: number | undefined, fallback: number): number => (value !== undefined && value > 0 ? value : fallback);

export function probeTiming(probe: V1Probe, type: ProbeType): ProbeTiming {
  return {
    initialDelayMs: Math.max(0, probe.initialDelaySeconds ?? 0) * 1000,
    periodMs: positive(probe.periodSeconds, 10) * 1000,
    timeoutMs: positive(probe.timeoutSeconds, 1) * 1000,
    // Liveness and startup probes must use 1 (API validation); readiness may ask for more.
    successThreshold: type === 'readiness' ? positive(probe.successThreshold, 1) : 1,
    failureThreshold: positive(probe.failureThreshold, 3),
  };
}

/** kubelet sends `kube-probe/<major>.<minor>` of its version; the sandbox runs v1.37. */
export const PROBE_USER_AGENT = 'kube-probe/1.37';
const BODY_LIMIT = 10 * 1024;

export interface ExecResult {
  exitCode: number;
  /** stdout and stderr together, possibly truncated. */
  output: string;
}

/**
 * Opens a probe's TCP connection somewhere other than the kubelet's own
 * network namespace (the node's, when the kubelet runs outside it); resolves
 * once connected, rejects with the dial error.
 */
export type ProbeDialer = (dest: { host: string; port: number; localAddress?: string }, signal: AbortSignal) => Promise<Duplex>;

/** What a probe needs of its pod. */
export interface ProbeTarget {
  /** The address probes go to when the action names no host: the pod IP (the node's for hostNetwork pods). */
  podIp: string | undefined;
  /** The probed container, for named ports. */
  container: V1Container;
  /** Probes leave from the node: its source addresses by family, when set. */
  sourceIp4?: string;
  sourceIp6?: string;
  /** Runs argv in the container; aborting `signal` must kill it. */
  exec(argv: readonly string[], signal: AbortSignal): Promise<ExecResult>;
  /** Opens the connections of tcpSocket, httpGet and grpc probes; unset, they connect from the kubelet's own process. */
  dial?: ProbeDialer;
}

/** The port a probe names, by number or by the container's port name (kubelet also accepts a number written as a string); a string says why there is none. */
export function resolveProbePort(port: IntOrString | undefined, container: V1Container): number | string {
  let value: number;
  if (typeof port === 'number') value = port;
  else if (typeof port === 'string') {
    const named = container.ports?.find((p) => p.name === port);
    if (named) value = named.containerPort;
    else if (/^\d+$/.test(port)) value = Number(port);
    else return `container ${container.name} has no port named ${JSON.stringify(port)}`;
  } else return 'the probe names no port';
  if (!Number.isInteger(value) || value < 1 || value > 65535) return `invalid port number: ${value}`;
  return value;
}

function sourceFor(host: string, target: ProbeTarget): string | undefined {
  const family = isIP(host);
  return family === 6 ? target.sourceIp6 : family === 4 ? target.sourceIp4 : undefined;
}

const abortError = (): ProbeOutcome => ({ ok: false, message: 'probe timed out' });

/** Runs one probe action once; `signal` is its timeout (the caller arms it). */
export async function runProbe(probe: V1Probe, target: ProbeTarget, signal: AbortSignal): Promise<ProbeOutcome> {
  if (signal.aborted) return abortError();
  try {
    if (probe.exec) return await execProbe(probe.exec.command ?? [], target, signal);
    if (probe.tcpSocket) return await tcpProbe(probe.tcpSocket.host, probe.tcpSocket.port, target, signal);
    if (probe.httpGet) return await httpProbe(probe, target, signal);
    if (probe.grpc) return await grpcProbe(probe.grpc.port, probe.grpc.service, target, signal);
    return { ok: false, message: 'the probe has no action (exec, tcpSocket, httpGet or grpc)' };
  } catch (err) {
    if (signal.aborted) return abortError();
    return { ok: false, message: (err as Error).message };
  }
}

async function execProbe(argv: readonly string[], target: ProbeTarget, signal: AbortSignal): Promise<ProbeOutcome> {
  if (argv.length === 0) return { ok: false, message: 'exec probe has no command' };
  const result = await target.exec(argv, signal);
  if (signal.aborted) return { ok: false, message: `command ${JSON.stringify(argv)} timed out` };
  if (result.exitCode === 0) return { ok: true, message: result.output };
  return { ok: false, message: `command ${JSON.stringify(argv)} exited with ${result.exitCode}: ${result.output.trim().slice(0, BODY_LIMIT)}` };
}

function destination(host: string | undefined, port: IntOrString | undefined, target: ProbeTarget): { host: string; port: number } | string {
  const h = host || target.podIp;
  if (!h) return 'the pod has no IP yet';
  const p = resolveProbePort(port, target.container);
  return typeof p === 'string' ? p : { host: h, port: p };
}

function tcpProbe(host: string | undefined, port: IntOrString, target: ProbeTarget, signal: AbortSignal): Promise<ProbeOutcome> {
  const dest = destination(host, port, target);
  if (typeof dest === 'string') return Promise.resolve({ ok: false, message: dest });
  if (target.dial) {
    const localAddress = sourceFor(dest.host, target);
    return target.dial({ ...dest, ...(localAddress ? { localAddress } : {}) }, signal).then(
      (stream) => (stream.destroy(), { ok: true, message: '' }),
      (err: Error) => ({ ok: false, message: `dial tcp ${dest.host}:${dest.port}: ${signal.aborted ? 'timed out' : err.message}` }),
    );
  }
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (outcome: ProbeOutcome): void => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(outcome);
    };
    const onAbort = (): void => done({ ok: false, message: `dial tcp ${dest.host}:${dest.port}: timed out` });
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => done({ ok: true, message: '' }));
    socket.once('error', (err) => done({ ok: false, message: `dial tcp ${dest.host}:${dest.port}: ${err.message}` }));
    const localAddress = sourceFor(dest.host, target);
    socket.connect({ host: dest.host, port: dest.port, ...(localAddress ? { localAddress } : {}) });
  });
}

/** Path as kubelet formats it into the URL: always absolute, query kept. */
const probePath = (path: string | undefined): string => (!path ? '/' : path.startsWith('/') ? path : `/${path}`);

async function httpProbe(probe: V1Probe, target: ProbeTarget, signal: AbortSignal): Promise<ProbeOutcome> {
  const action = probe.httpGet!;
  const dest = destination(action.host, action.port, target);
  if (typeof dest === 'string') return Promise.resolve({ ok: false, message: dest });
  const https = (action.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
  const hostHeader = isIP(dest.host) === 6 ? `[${dest.host}]:${dest.port}` : `${dest.host}:${dest.port}`;
  // kubelet's defaults, unless the probe sets a header of that name (case-insensitive); the probe's own may repeat.
  const own = new Set((action.httpHeaders ?? []).map((h) => h.name.toLowerCase()));
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of [['User-Agent', PROBE_USER_AGENT], ['Accept', '*/*'], ['Host', hostHeader]] as const) if (!own.has(name.toLowerCase())) headers[name] = value;
  // Repeated names (in any case) are sent as one list, under the first spelling.
  const spelling = new Map<string, string>();
  for (const h of action.httpHeaders ?? []) {
    const name = spelling.get(h.name.toLowerCase()) ?? h.name;
    spelling.set(h.name.toLowerCase(), name);
    const before = headers[name];
    headers[name] = before === undefined ? h.value : [...(Array.isArray(before) ? before : [before]), h.value];
  }
  const localAddress = sourceFor(dest.host, target);
  const url = `${https ? 'https' : 'http'}://${hostHeader}${probePath(action.path)}`;
  let stream: Duplex | undefined;
  if (target.dial) {
    try {
      stream = await target.dial({ ...dest, ...(localAddress ? { localAddress } : {}) }, signal);
    } catch (err) {
      return { ok: false, message: `Get ${JSON.stringify(url)}: ${signal.aborted ? 'timed out' : (err as Error).message}` };
    }
  }
  const connection = stream;
  return new Promise((resolve) => {
    const options = {
      host: dest.host,
      port: dest.port,
      path: probePath(action.path),
      method: 'GET',
      headers,
      signal,
      ...(https ? { rejectUnauthorized: false } : {}),
      // An agent (even agent: false) would make its own connection.
      ...(connection ? { createConnection: () => connection } : { agent: false as const, ...(localAddress ? { localAddress } : {}) }),
    };
    const onResponse = (res: IncomingMessage): void => {
      const code = res.statusCode ?? 0;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < BODY_LIMIT) body += chunk.slice(0, BODY_LIMIT - body.length);
      });
      res.on('error', () => undefined);
      // A body cut short (the timeout, a reset) ends in 'close' without 'end'; after 'end' this resolve is a no-op.
      res.on('close', () => resolve({ ok: false, message: signal.aborted ? `Get ${JSON.stringify(url)}: timed out` : `Get ${JSON.stringify(url)}: the connection closed before the response ended` }));
      res.on('end', () => {
        // 3xx is success, as kubelet reports a redirect it does not follow (a warning, not a failure).
        if (code >= 200 && code < 400) resolve({ ok: true, message: code >= 300 ? `probe got redirect ${code} from ${url}` : '' });
        else resolve({ ok: false, message: `HTTP probe failed with statuscode: ${code}${body ? `: ${body.trim()}` : ''}` });
      });
    };
    const req = https ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
    req.on('error', (err) => resolve(signal.aborted ? { ok: false, message: `Get ${JSON.stringify(url)}: timed out` } : { ok: false, message: `Get ${JSON.stringify(url)}: ${err.message}` }));
    req.end();
  });
}

// gRPC health checking protocol (grpc.health.v1.Health/Check): one
// length-prefixed HealthCheckRequest{service}, and a HealthCheckResponse whose
// field 1 is SERVING (1) on success.
const GRPC_SERVING = 1;

function grpcRequestBody(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** The `status` field of a HealthCheckResponse message (0 = UNKNOWN when absent). */
function grpcServingStatus(frame: Buffer): number {
  const message = frame.subarray(5, 5 + frame.readUInt32BE(1));
  let status = 0;
  for (let i = 0; i < message.length; ) {
    const tag = message[i++]!;
    let value = 0;
    for (let shift = 0; i < message.length; shift += 7) {
      const b = message[i++]!;
      value |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
    }
    if (tag === 0x08) status = value;
    else if ((tag & 7) !== 0) break; // only varints are expected; anything else ends the parse
  }
  return status;
}

async function grpcProbe(port: number, service: string | undefined, target: ProbeTarget, signal: AbortSignal): Promise<ProbeOutcome> {
  const dest = destination(undefined, port, target);
  if (typeof dest === 'string') return { ok: false, message: dest };
  const authority = isIP(dest.host) === 6 ? `[${dest.host}]:${dest.port}` : `${dest.host}:${dest.port}`;
  const localAddress = sourceFor(dest.host, target);
  let stream: Duplex | undefined;
  if (target.dial) {
    try {
      stream = await target.dial({ ...dest, ...(localAddress ? { localAddress } : {}) }, signal);
    } catch (err) {
      return { ok: false, message: `gRPC health check of ${authority}: ${signal.aborted ? 'timed out' : (err as Error).message}` };
    }
  }
  const connection = stream;
  return new Promise((resolve) => {
    // Over a socket of our own, so that the probe leaves from the node's source address.
    const session = http2Connect(`http://${authority}`, { createConnection: () => connection ?? netConnect({ host: dest.host, port: dest.port, ...(localAddress ? { localAddress } : {}) }) });
    const finish = (outcome: ProbeOutcome): void => {
      signal.removeEventListener('abort', onAbort);
      session.destroy();
      resolve(outcome);
    };
    const onAbort = (): void => finish({ ok: false, message: `gRPC health check of ${authority} timed out` });
    signal.addEventListener('abort', onAbort, { once: true });
    session.on('error', (err) => finish({ ok: false, message: `gRPC health check of ${authority}: ${err.message}` }));
    const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers', 'user-agent': PROBE_USER_AGENT });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    stream.on('response', (h) => {
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    });
    stream.on('trailers', (h) => {
      grpcStatus = String(h['grpc-status'] ?? grpcStatus);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (err) => finish({ ok: false, message: `gRPC health check of ${authority}: ${err.message}` }));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      if (grpcStatus !== '0') return finish({ ok: false, message: `gRPC health check of ${authority} failed with grpc-status ${grpcStatus ?? 'missing'}` });
      const status = body.length >= 5 ? grpcServingStatus(body) : 0;
      finish(status === GRPC_SERVING ? { ok: true, message: '' } : { ok: false, message: `service unhealthy (responded with status ${status})` });
    });
    stream.end(grpcRequestBody(service ?? ''));
  });
}

export interface ProbeWorkerOptions {
  type: ProbeType;
  probe: V1Probe;
  clock: Clock;
  /** When this container instance started (ms on the clock): initialDelaySeconds count from it. */
  startedAt: number;
  /** Overrides INITIAL_RESULT, e.g. the readiness an adopted container already had. */
  initialResult?: ProbeResult;
  /** One run of the probe; the worker aborts `signal` after timeoutSeconds. */
  run(signal: AbortSignal): Promise<ProbeOutcome>;
  /** The reported result changed (after thresholds). */
  onChange(result: ProbeResult, outcome: ProbeOutcome): void;
}

/** kubelet's initial results: not ready until a readiness success, alive until a liveness failure, startup unknown. */
export const INITIAL_RESULT: Readonly<Record<ProbeType, ProbeResult>> = { readiness: 'failure', liveness: 'success', startup: 'unknown' };

/**
 * One probe of one container instance. It stops by itself after a liveness or
 * startup failure (the container is restarted and gets a new worker) and after
 * a startup success (startup is then done).
 */
export class ProbeWorker {
  readonly type: ProbeType;
  readonly #o: ProbeWorkerOptions;
  readonly #timing: ProbeTiming;
  readonly #next: Timer;
  readonly #timeout: Timer;
  #result: ProbeResult;
  #last: ProbeResult = 'unknown';
  #run = 0;
  #stopped = true;
  #inFlight: AbortController | undefined;

  constructor(options: ProbeWorkerOptions) {
    this.type = options.type;
    this.#o = options;
    this.#timing = probeTiming(options.probe, options.type);
    this.#next = new Timer(options.clock);
    this.#timeout = new Timer(options.clock);
    this.#result = options.initialResult ?? INITIAL_RESULT[options.type];
  }

  get result(): ProbeResult {
    return this.#result;
  }

  get running(): boolean {
    return !this.#stopped;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    const due = this.#o.startedAt + this.#timing.initialDelayMs - this.#o.clock.now();
    this.#next.arm(() => void this.#probe(), due);
  }

  stop(): void {
    this.#stopped = true;
    this.#next.cancel();
    this.#timeout.cancel();
    this.#inFlight?.abort();
    this.#inFlight = undefined;
  }

  async #probe(): Promise<void> {
    if (this.#stopped) return;
    const startedRun = this.#o.clock.now();
    const controller = new AbortController();
    this.#inFlight = controller;
    this.#timeout.arm(() => controller.abort(), this.#timing.timeoutMs);
    // The timeout wins even over a run that ignores its signal.
    const timedOut = new Promise<ProbeOutcome>((resolve) => controller.signal.addEventListener('abort', () => resolve({ ok: false, message: 'probe timed out' }), { once: true }));
    let outcome: ProbeOutcome;
    try {
      outcome = await Promise.race([this.#o.run(controller.signal), timedOut]);
    } catch (err) {
      outcome = { ok: false, message: (err as Error).message };
    }
    this.#timeout.cancel();
    if (this.#stopped || this.#inFlight !== controller) return;
    this.#inFlight = undefined;
    if (controller.signal.aborted && outcome.ok) outcome = { ok: false, message: 'probe timed out' };
    this.#record(outcome);
    if (!this.#stopped) this.#next.arm(() => void this.#probe(), startedRun + this.#timing.periodMs - this.#o.clock.now());
  }

  #record(outcome: ProbeOutcome): void {
    const result: ProbeResult = outcome.ok ? 'success' : 'failure';
    if (result === this.#last) this.#run++;
    else {
      this.#last = result;
      this.#run = 1;
    }
    const threshold = result === 'success' ? this.#timing.successThreshold : this.#timing.failureThreshold;
    if (this.#run < threshold) return;
    const changed = result !== this.#result;
    this.#result = result;
    // A failed liveness/startup container is killed and restarted with a new worker; a started one needs no more startup probes.
    if ((result === 'failure' && this.type !== 'readiness') || (result === 'success' && this.type === 'startup')) this.stop();
    if (changed) this.#o.onChange(result, outcome);
  }
}

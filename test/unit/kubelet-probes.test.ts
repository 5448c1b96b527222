// Probes as kubelet runs them: each action against real loopback servers
// (port 0), and the worker's timing and thresholds on a manual clock.
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { PROBE_USER_AGENT, ProbeWorker, probeTiming, resolveProbePort, runProbe, type ProbeOutcome, type ProbeResult, type ProbeTarget } from '../../sandbox/kubelet/probes.ts';
import { ManualClock } from '../support/manual-clock.ts';

const container: V1Container = { name: 'app', ports: [{ name: 'http', containerPort: 0 }] };

function target(overrides: Partial<ProbeTarget> = {}): ProbeTarget {
  return { podIp: '127.0.0.1', container, exec: async () => ({ exitCode: 0, output: '' }), ...overrides };
}

const probeOnce = (probe: V1Probe, t: ProbeTarget = target(), signal = new AbortController().signal): Promise<ProbeOutcome> => runProbe(probe, t, signal);

async function listen<S extends Server | TcpServer>(t: TestContext, server: S, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on (listened, then closed). */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

test('defaults are kubelet\'s, and liveness/startup always succeed once', () => {
  assert.deepEqual(probeTiming({}, 'readiness'), { initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, successThreshold: 1, failureThreshold: 3 });
  assert.deepEqual(probeTiming({ initialDelaySeconds: 5, periodSeconds: 2, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 1 }, 'readiness'), { initialDelayMs: 5000, periodMs: 2000, timeoutMs: 3000, successThreshold: 2, failureThreshold: 1 });
  assert.equal(probeTiming({ successThreshold: 3 }, 'liveness').successThreshold, 1);
  assert.equal(probeTiming({ periodSeconds: 0, timeoutSeconds: 0 }, 'startup').periodMs, 10_000);
});

test('ports resolve by number or by the container\'s port name', () => {
  const c: V1Container = { name: 'app', ports: [{ name: 'http', containerPort: 8080 }] };
  assert.equal(resolveProbePort(80, c), 80);
  assert.equal(resolveProbePort('http', c), 8080);
  assert.equal(resolveProbePort('8081', c), 8081);
  assert.match(String(resolveProbePort('metrics', c)), /no port named "metrics"/);
  assert.match(String(resolveProbePort(0, c)), /invalid port number/);
  assert.match(String(resolveProbePort(70000, c)), /invalid port number/);
});

test('tcpSocket: a listener succeeds, a closed port fails, the host defaults to the pod IP', async (t) => {
  const port = await listen(t, createTcpServer((s) => s.destroy()));
  assert.deepEqual(await probeOnce({ tcpSocket: { port } }), { ok: true, message: '' });
  assert.equal((await probeOnce({ tcpSocket: { port, host: '127.0.0.1' } }, target({ podIp: undefined }))).ok, true);
  const named = await probeOnce({ tcpSocket: { port: 'http' } }, target({ container: { name: 'app', ports: [{ name: 'http', containerPort: port }] } }));
  assert.equal(named.ok, true);
  const refused = await probeOnce({ tcpSocket: { port: await closedPort() } });
  assert.equal(refused.ok, false);
  assert.match(refused.message, /ECONNREFUSED/);
  assert.match((await probeOnce({ tcpSocket: { port } }, target({ podIp: undefined }))).message, /no IP/);
});

test('httpGet: 2xx and 3xx succeed, 4xx and 5xx fail; path, query and headers as given', async (t) => {
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
  const server = createHttpServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const code = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('code') ?? 200);
    if (code >= 300 && code < 400) res.setHeader('Location', 'http://elsewhere.invalid/');
    res.writeHead(code);
    res.end(code >= 400 ? 'broken' : 'ok');
  });
  const port = await listen(t, server);
  for (const code of [200, 204, 301, 302, 399]) assert.equal((await probeOnce({ httpGet: { port, path: `/healthz?code=${code}` } })).ok, true, String(code));
  for (const code of [400, 404, 500, 503]) {
    const outcome = await probeOnce({ httpGet: { port, path: `/healthz?code=${code}` } });
    assert.equal(outcome.ok, false, String(code));
    assert.match(outcome.message, new RegExp(`statuscode: ${code}: broken`));
  }
  seen.length = 0;
  await probeOnce({ httpGet: { port, path: 'ready', httpHeaders: [{ name: 'X-Probe', value: 'a' }, { name: 'x-probe', value: 'b' }, { name: 'Host', value: 'app.example' }] } });
  assert.equal(seen[0]!.url, '/ready');
  assert.equal(seen[0]!.headers['user-agent'], PROBE_USER_AGENT);
  assert.equal(seen[0]!.headers.accept, '*/*');
  assert.equal(seen[0]!.headers.host, 'app.example');
  assert.deepEqual(seen[0]!.headers['x-probe'], 'a, b');
  seen.length = 0;
  await probeOnce({ httpGet: { port, httpHeaders: [{ name: 'user-agent', value: 'custom' }] } });
  assert.equal(seen[0]!.url, '/');
  assert.equal(seen[0]!.headers['user-agent'], 'custom');
  assert.equal(seen[0]!.headers.host, `127.0.0.1:${port}`);
  const named = await probeOnce({ httpGet: { port: 'http', path: '/' } }, target({ container: { name: 'app', ports: [{ name: 'http', containerPort: port }] } }));
  assert.equal(named.ok, true);
  const refused = await probeOnce({ httpGet: { port: await closedPort() } });
  assert.equal(refused.ok, false);
  assert.match(refused.message, /ECONNREFUSED/);
});

test('httpGet over IPv6 loopback uses a bracketed Host', async (t) => {
  const hosts: string[] = [];
  const server = createHttpServer((req, res) => {
    hosts.push(req.headers.host ?? '');
    res.end();
  });
  let port: number;
  try {
    port = await listen(t, server, '::1');
  } catch {
    t.skip('no IPv6 loopback here');
    return;
  }
  assert.equal((await probeOnce({ httpGet: { port } }, target({ podIp: '::1' }))).ok, true);
  assert.deepEqual(hosts, [`[::1]:${port}`]);
});

test('a probe aborted by its timeout fails and closes the connection', async (t) => {
  const server = createHttpServer(() => undefined);
  const port = await listen(t, server);
  const controller = new AbortController();
  const pending = probeOnce({ httpGet: { port } }, target(), controller.signal);
  // Once the request is in, the timeout fires.
  await new Promise<void>((resolve) => server.once('request', () => resolve()));
  controller.abort();
  const outcome = await pending;
  assert.equal(outcome.ok, false);
  assert.match(outcome.message, /timed out/);
  server.closeAllConnections();
});

test('exec runs through the injected function: exit 0 succeeds, anything else fails', async () => {
  const ran: (readonly string[])[] = [];
  const exec = async (argv: readonly string[]) => {
    ran.push(argv);
    return argv[0] === 'ok' ? { exitCode: 0, output: 'fine' } : { exitCode: 3, output: 'not yet\n' };
  };
  assert.deepEqual(await probeOnce({ exec: { command: ['ok', '-x'] } }, target({ exec })), { ok: true, message: 'fine' });
  const failed = await probeOnce({ exec: { command: ['cat', '/tmp/healthy'] } }, target({ exec }));
  assert.equal(failed.ok, false);
  assert.match(failed.message, /exited with 3: not yet/);
  assert.deepEqual(ran, [['ok', '-x'], ['cat', '/tmp/healthy']]);
  assert.equal((await probeOnce({ exec: { command: [] } }, target({ exec }))).ok, false);
  assert.match((await probeOnce({}, target())).message, /no action/);
});

test('grpc: the health service\'s SERVING succeeds, NOT_SERVING and errors fail', async (t) => {
  const statuses = new Map([['', 1], ['down', 2]]);
  const server = createHttp2Server();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      const service = body.length > 7 ? body.subarray(7).toString() : '';
      if (headers[':path'] !== '/grpc.health.v1.Health/Check' || !statuses.has(service)) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' }, { endStream: true });
        return;
      }
      const message = Buffer.from([0x08, statuses.get(service)!]);
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame);
    });
  });
  const port = await listen(t, server as unknown as Server);
  assert.deepEqual(await probeOnce({ grpc: { port } }), { ok: true, message: '' });
  const down = await probeOnce({ grpc: { port, service: 'down' } });
  assert.equal(down.ok, false);
  assert.match(down.message, /status 2/);
  const unknown = await probeOnce({ grpc: { port, service: 'nope' } });
  assert.equal(unknown.ok, false);
  assert.match(unknown.message, /grpc-status 5/);
});

/** A worker whose runs the test answers one by one. */
function scripted(t: TestContext, type: 'readiness' | 'liveness' | 'startup', probe: V1Probe, startedAt = 0) {
  const clock = new ManualClock(0);
  const answers: boolean[] = [];
  const runsAt: number[] = [];
  const changes: ProbeResult[] = [];
  let hang: 'no' | 'until-abort' | 'forever' = 'no';
  const worker = new ProbeWorker({
    type,
    probe,
    clock,
    startedAt,
    run: (signal) => {
      runsAt.push(clock.now());
      if (hang === 'forever') return new Promise<ProbeOutcome>(() => undefined);
      if (hang === 'until-abort') return new Promise((resolve) => signal.addEventListener('abort', () => resolve({ ok: true, message: 'late' })));
      return Promise.resolve({ ok: answers.shift() ?? true, message: '' });
    },
    onChange: (result) => changes.push(result),
  });
  t.after(() => worker.stop());
  const flush = async () => {
    // Fires what is due now (a 0 ms timer), letting each run settle, until nothing more happens.
    for (let i = 0; i < 5; i++) {
      clock.advance(0);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  /** Advances `ms` in steps of 100 ms (below any timeout), letting each run settle. */
  const step = async (ms: number) => {
    for (let done = 0; done < ms; done += 100) {
      clock.advance(Math.min(100, ms - done));
      await flush();
    }
  };
  return { clock, worker, answers, runsAt, changes, step, flush, hang: (how: 'until-abort' | 'forever') => (hang = how) };
}

test('the worker waits initialDelaySeconds from the container start, then probes every periodSeconds', async (t) => {
  const w = scripted(t, 'readiness', { exec: { command: ['x'] }, initialDelaySeconds: 5, periodSeconds: 3 }, 0);
  assert.equal(w.worker.result, 'failure', 'not ready before the first success');
  w.worker.start();
  await w.step(4000);
  assert.deepEqual(w.runsAt, []);
  await w.step(1000);
  assert.deepEqual(w.runsAt, [5000]);
  assert.deepEqual(w.changes, ['success']);
  await w.step(6000);
  assert.deepEqual(w.runsAt, [5000, 8000, 11000]);
});

test('thresholds: readiness flips after failureThreshold failures and successThreshold successes', async (t) => {
  const w = scripted(t, 'readiness', { exec: { command: ['x'] }, periodSeconds: 1, failureThreshold: 3, successThreshold: 2 });
  w.answers.push(true, true, false, false, true, false, false, false, true, true);
  w.worker.start();
  await w.flush();
  assert.deepEqual(w.changes, [], 'one success is below successThreshold 2');
  await w.step(1000);
  assert.deepEqual(w.changes, ['success']);
  await w.step(3000);
  assert.deepEqual(w.changes, ['success'], 'two failures, then a success: still ready');
  await w.step(3000);
  assert.deepEqual(w.changes, ['success', 'failure'], 'the third failure in a row');
  await w.step(2000);
  assert.deepEqual(w.changes, ['success', 'failure', 'success']);
  assert.equal(w.worker.running, true, 'readiness keeps probing');
});

test('liveness stops after a failure (the container restarts with a new worker); startup after a success', async (t) => {
  const live = scripted(t, 'liveness', { exec: { command: ['x'] }, periodSeconds: 1, failureThreshold: 2 });
  assert.equal(live.worker.result, 'success');
  live.answers.push(true, false, false);
  live.worker.start();
  await live.step(2000);
  assert.deepEqual(live.changes, ['failure']);
  assert.equal(live.worker.running, false);
  await live.step(5000);
  assert.deepEqual(live.runsAt, [0, 1000, 2000]);

  const startup = scripted(t, 'startup', { exec: { command: ['x'] }, periodSeconds: 1, failureThreshold: 30 });
  assert.equal(startup.worker.result, 'unknown');
  startup.answers.push(false, false, true);
  startup.worker.start();
  await startup.step(2000);
  assert.deepEqual(startup.changes, ['success']);
  assert.equal(startup.worker.running, false);
});

test('timeoutSeconds aborts a run on the worker\'s clock and counts as a failure', async (t) => {
  const w = scripted(t, 'liveness', { exec: { command: ['x'] }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 1 });
  w.hang('until-abort');
  w.worker.start();
  await w.flush();
  assert.deepEqual(w.changes, []);
  await w.step(2000);
  assert.deepEqual(w.changes, ['failure'], 'a success that arrives after the timeout is a failure');

  const stuck = scripted(t, 'readiness', { exec: { command: ['x'] }, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 1 });
  stuck.hang('forever');
  stuck.worker.start();
  await stuck.step(11_000);
  assert.deepEqual(stuck.runsAt, [0, 5000, 10_000], 'a run that never settles does not stop the worker');
});

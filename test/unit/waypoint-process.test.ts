// The waypoint process as a pod runs it: `meshlet waypoint` from the CLI, the
// linear-time regex fallback and the heap's growth limit in effect,
// readiness that waits for its own certificate from a real CA and for its
// Gateway in the cluster state, the recent requests `meshlet flows` reads as
// JSON, and Istio's metrics.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Command } from 'commander';
import { WAYPOINT_NODE_OPTIONS } from '../../ca/waypoint-objects.ts';
import { addFlags } from '../../lib/config/flags.ts';
import { WAYPOINT_FLAGS, type WaypointConfig } from '../../lib/config/waypoint.ts';
import { ConfigError } from '../../lib/core/errors.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { REPO_ROOT } from '../../lib/core/repo.ts';
import type { IssuedCertificate, SignRequest } from '../../lib/identity/issuer.ts';
import { CertificateStore } from '../../lib/identity/store.ts';
import { WaypointConfigSource } from '../../waypoint/config-source.ts';
import { startWaypoint } from '../../waypoint/waypoint.ts';
import { PodsSource } from '../support/ca-doubles.ts';
import { eventually } from '../support/eventually.ts';
import { NS, startStack, testCa, WAYPOINT_NAME, WAYPOINT_POD } from '../waypoint/router-fixtures.ts';

/** Runs `node <args>` from the repository; its exit code and output. */
async function node(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c));
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

test('meshlet waypoint --help lists the waypoint\'s flags', async () => {
  const { code, stdout } = await node(['cli/main.ts', 'waypoint', '--help']);
  assert.equal(code, 0);
  for (const flag of ['--gateway <namespace>/<name>', '--ca-url', '--ca-bundle', '--ca-token-file', '--trust-domain', '--kubeconfig', '--listen', '--readiness', '--admin', '--metrics', '--log-level']) {
    assert.ok(stdout.includes(flag), `${flag} in the help`);
  }
  assert.match(stdout, /\[::\]:15008/);
});

test('meshlet waypoint refuses a CA configuration that is half there, naming the flags', async () => {
  const { code, stderr } = await node(['cli/main.ts', 'waypoint', '--gateway', 'demo/waypoint', '--ca-url', 'https://127.0.0.1:1', '--listen', '127.0.0.1:0']);
  assert.equal(code, 1);
  assert.match(stderr, /--ca-url, --ca-bundle and --ca-token-file go together/);
  const bad = await node(['cli/main.ts', 'waypoint', '--gateway', 'waypoint']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--gateway "waypoint": is not <namespace>\/<name>/);
});

test('the waypoint turns on V8\'s linear-time fallback before any route is compiled: a catastrophic pattern finishes', async () => {
  // (a*)*b on 60 a's backtracks 2^60 times without the fallback; with it, the linear engine answers at once.
  const script = "await import('./waypoint/command.ts'); const re = new RegExp('(a*)*b'); console.log(String(re.test('a'.repeat(60))));";
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c));
  // A bound for liveness only: without the flag the child would run for years.
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(killer);
  assert.equal(code, 0, 'the child finished');
  assert.equal(out.trim(), 'false');
});

test('the waypoint holds its heap to about 1.5x what is live: under churn that promotes, the heap in use stays under twice the live set', async (t) => {
  // A live set, then "requests" that each outlive a few scavenges (promoted, as
  // a busy waypoint's are) and die; the peak of the heap in use is sampled.
  // With V8's default growth the same churn peaks at ~3.4x the live set.
  const churn = `const { getHeapStatistics } = await import('node:v8');
    const live = Array.from({ length: 200000 }, (_, i) => ({ i, s: 'x'.repeat(100) + i }));
    const built = getHeapStatistics().used_heap_size;
    const inflight = [];
    let peak = 0;
    for (let r = 0; r < 300000; r++) {
      inflight.push({ r, fields: new Array(64).fill(r) });
      if (inflight.length > 2000) inflight.shift();
      if ((r & 1023) === 0) peak = Math.max(peak, getHeapStatistics().used_heap_size);
    }
    console.log(live.length && peak / built);`;
  const { code, stdout, stderr } = await node(['--input-type=module', '-e', `await import('./waypoint/command.ts');${churn}`], { NODE_OPTIONS: WAYPOINT_NODE_OPTIONS });
  assert.equal(code, 0, stderr);
  const ratio = Number(stdout.trim());
  t.diagnostic(`peak heap in use ÷ heap once the live set is built: ${ratio.toFixed(2)}`);
  assert.ok(ratio > 0 && ratio < 2, `the heap in use peaked at ${ratio.toFixed(2)}x the live set`);
});

test('readiness waits for the waypoint\'s own certificate and for its Gateway in the cluster state', async (t) => {
  const ca = await testCa(t, [WAYPOINT_POD], ['wp']);
  const issuer = await ca.issuer('wp');
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  // The CA answers only once the test lets it.
  const held = { issue: async (request: SignRequest): Promise<IssuedCertificate> => (await released, issuer.issue(request)) };
  const certs = new CertificateStore({ issuer: held });
  t.after(() => certs.close());
  const source = new PodsSource([]);
  const waypoint = await startWaypoint({
    gateway: { namespace: NS, name: WAYPOINT_NAME }, trustDomain: 'cluster.local', serviceAccount: 'waypoint', certs,
    listen: { host: '127.0.0.1', port: 0 }, readiness: { host: '127.0.0.1', port: 0 }, hbonePort: 15008,
    log: silentLogger, accessLog: new Writable({ write: (_c, _e, cb) => cb() }), source,
  });
  t.after(() => waypoint.shutdown(0));
  const ready = async () => {
    const res = await fetch(`http://127.0.0.1:${waypoint.ports.readiness}/healthz/ready`);
    return { status: res.status, body: await res.text() };
  };
  await eventually('the source started', () => source.synced);
  const before = await ready();
  assert.equal(before.status, 503);
  assert.match(before.body, /certificate for spiffe:\/\/cluster.local\/ns\/demo\/sa\/waypoint is not issued yet/);
  assert.match(before.body, /Gateway demo\/waypoint is not in the cluster/);
  source.set([{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: WAYPOINT_NAME, namespace: NS }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } }]);
  const gatewayOnly = await ready();
  assert.equal(gatewayOnly.status, 503);
  assert.doesNotMatch(gatewayOnly.body, /Gateway/);
  release();
  await eventually('ready', async () => (await ready()).status === 200);
  assert.equal((await ready()).body, 'ready\n');
  assert.equal(certs.list()[0]?.state, 'valid');
  assert.ok(certs.list()[0]?.nextRotation, 'renewal is scheduled');
});

test('the admin port lists recent requests as JSON for meshlet flows; the metrics port serves Istio\'s metrics', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }], listeners: true });
  const { admin, metrics } = stack.waypoint.ports;
  const res = await stack.send({ to: 'reviews', path: '/ratings/7', headers: { 'x-request-id': 'flows-1' } });
  assert.equal(res.status, 200);
  const summary = await eventually('the request listed', async () => {
    const list = (await (await fetch(`http://127.0.0.1:${admin}/requests`)).json()) as { requestId: string }[];
    return list.find((s) => s.requestId === 'flows-1');
  });
  assert.deepEqual(
    (({ method, authority, path, status, route, flags, service }) => ({ method, authority, path, status, route, flags, service }))(summary as unknown as Record<string, unknown>),
    { method: 'GET', authority: 'reviews.demo:9080', path: '/ratings/7', status: 200, route: 'default', flags: '-', service: { namespace: NS, name: 'reviews' } },
  );
  const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
  assert.match(text, /istio_requests_total\{reporter="waypoint",[^}]*destination_service="reviews\.demo\.svc\.cluster\.local"[^}]*response_code="200"[^}]*\} 1/);
  assert.match(text, /istio_request_duration_milliseconds_bucket\{le="0\.5",reporter="waypoint"/);
  const config = (await (await fetch(`http://127.0.0.1:${admin}/config`)).json()) as { synced: boolean; gateway: boolean; rejected: unknown[] };
  assert.deepEqual([config.synced, config.gateway, config.rejected], [true, true, []]);
  assert.equal((await fetch(`http://127.0.0.1:${admin}/nope`)).status, 404);
});

test('the readiness port answers /healthz/ready only; the admin API, loopback by default, serves what it shows', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }], listeners: true });
  const { readiness, admin } = stack.waypoint.ports;
  assert.notEqual(readiness, admin);
  await eventually('ready', async () => (await fetch(`http://127.0.0.1:${readiness}/healthz/ready`)).status === 200);
  // Recent requests carry paths and principals: nothing of them where the kubelet (and anyone reaching the pod) probes.
  for (const path of ['/requests', '/requests?follow=1', '/config', '/clusters', '/certs', '/memory', '/constructor']) {
    const res = await fetch(`http://127.0.0.1:${readiness}${path}`);
    assert.equal(res.status, 404, path);
    assert.match(await res.text(), /try GET \/healthz\/ready"/);
  }
  for (const path of ['/requests', '/config', '/clusters', '/certs', '/memory']) assert.equal((await fetch(`http://127.0.0.1:${admin}${path}`)).status, 200, path);
  const memory = (await (await fetch(`http://127.0.0.1:${admin}/memory`)).json()) as { usage: { rss: number }; heapSpaces: { space: string }[] };
  assert.ok(memory.usage.rss > 0 && memory.heapSpaces.some((s) => s.space === 'old_space'), 'GET /memory: process.memoryUsage() and V8\'s heap spaces');
  assert.equal((await fetch(`http://127.0.0.1:${admin}/healthz/ready`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${admin}/requests`, { method: 'POST' })).status, 404);
  // What a pod runs without flags: readiness on every address at Istio's port, the admin API on loopback at Envoy's.
  const defaults = addFlags(new Command('waypoint').exitOverride(), WAYPOINT_FLAGS).parse(['--gateway', 'demo/waypoint'], { from: 'user' }).opts() as WaypointConfig;
  assert.deepEqual([defaults.readiness, defaults.admin], ['[::]:15021', '127.0.0.1:15000']);
});

test('the admin API streams recent requests as NDJSON on ?follow', async (t) => {
  const stack = await startStack(t, { services: [{ name: 'reviews', ports: [9080], versions: ['v1'] }], listeners: true });
  const abort = new AbortController();
  t.after(() => abort.abort());
  const res = await fetch(`http://127.0.0.1:${stack.waypoint.ports.admin}/requests?follow=1`, { signal: abort.signal });
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await stack.send({ to: 'reviews', path: '/followed', headers: { 'x-request-id': 'follow-1' } })).status, 200);
  let text = '';
  while (!text.includes('\n')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const line = JSON.parse(text.split('\n')[0]!) as { requestId: string; path: string };
  assert.deepEqual([line.requestId, line.path], ['follow-1', '/followed']);
});

test('without --kubeconfig the waypoint needs the pod\'s in-cluster configuration, and says so', () => {
  const saved = process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_HOST;
  try {
    assert.throws(() => new WaypointConfigSource({ self: { gateway: { namespace: NS, name: WAYPOINT_NAME }, trustDomain: 'cluster.local' }, log: silentLogger, onConfig: () => {} }), (err: unknown) => err instanceof ConfigError && /^no --kubeconfig and no in-cluster configuration \(KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset\): run in a pod, or pass --kubeconfig$/.test(err.message));
  } finally {
    if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
  }
});

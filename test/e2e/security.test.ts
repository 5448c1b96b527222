// Zero trust end to end: mTLS on the wire, Istio policies at the destination,
// STRICT in the kernel, certificates from the sandbox CA with fast rotation.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { run } from '../../lib/core/exec.ts';
import type { AgentStatus } from '../../lib/mesh/agent-status.ts';
import type { CertificateListing } from '../../lib/identity/store.ts';
import { sandboxApply, sandboxDelete, sandboxDown, sandboxExec, sandboxSpawn, sandboxStatus, sandboxUp, type SandboxInfo } from '../../sandbox/api.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { eventually, leftovers, meshlet, meshletJson, REPO, runName } from '../support/harness.ts';
import { inZtunnel, nodeLog, ZTUNNEL_CA_ACCESS } from '../support/meshlet-node.ts';

const NAME = runName('sec');
const WWW = join(tmpdir(), `meshlet-${NAME}-www`);
const MARKER = `meshlet-plaintext-${randomBytes(8).toString('hex')}`;
const SENTINEL = `meshlet-sentinel-${randomBytes(8).toString('hex')}`;
const CERT_TTL = '6s';
const demo = (pod: string) => ({ pod, namespace: 'demo' });

let info: SandboxInfo;
let blobSha = '';

const vip = (name: string) => info.services!.find((s) => s.name === name && s.namespace === 'demo')!.clusterIPs[0]!;
const podOf = (name: string, namespace = 'demo') => info.pods.find((p) => p.name === name && p.namespace === namespace)!;
const nodeOf = (name: string) => info.nodes.find((n) => n.name === name)!;
const flows = async () => (await meshletJson<{ flows: FlowRecord[] }>(['flows', '--sandbox', NAME, '-o', 'json'])).flows;
const agents = async () => (await meshletJson<{ nodes: AgentStatus[] }>(['status', '--sandbox', NAME, '-o', 'json'])).nodes;
const certs = async () => (await meshletJson<{ nodes: { node: string; certificates: CertificateListing[] }[] }>(['certs', '--sandbox', NAME, '-o', 'json'])).nodes;

const curl = (pod: string, url: string, namespace = 'demo', seconds = 5) =>
  sandboxExec(NAME, { pod, namespace }, ['curl', '-sf', '--max-time', String(seconds), url], { timeoutMs: 30_000 });

/** Runs argv inside a node's network namespace only, as the kubelet's probes do. */
const inNode = (node: string, argv: string[]) => run('nsenter', [`--net=/run/netns/${nodeOf(node).netns}`, '--', ...argv], { allowFailure: true });

const policy = (name: string, app: string, spec: string) =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: demo}\nspec:\n  selector: {matchLabels: {app: ${app}}}\n${spec}`;
const peerAuth = (mode: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: demo}\nspec:\n  mtls: {mode: ${mode}}\n`;
const ALLOW_ALPHA_TO_WEB = policy('web-allow-alpha', 'web', '  action: ALLOW\n  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/alpha"]}}]}]\n');

/** What the kernel enforces for a demo pod, as its node's agent reports it. */
const inboundOf = async (pod: string) => (await agents()).flatMap((n) => n.enrolledPods).find((p) => p.namespace === 'demo' && p.name === pod)?.inbound;

/**
 * The suite's known policy set is none: no ztunnel holds an AuthorizationPolicy
 * or PeerAuthentication, and every enrolled pod's kernel mode is plain
 * PERMISSIVE. Each test starts there and returns there.
 */
async function noPolicies(): Promise<boolean> {
  for (const node of info.nodes) {
    const r = await run('curl', ['-sf', '--unix-socket', node.ztunnelAdminSocket, 'http://ztunnel/state']);
    const { state } = JSON.parse(r.stdout) as { state: { authorizationPolicies: unknown[]; peerAuthentications: unknown[] } };
    if (state.authorizationPolicies.length > 0 || state.peerAuthentications.length > 0) return false;
  }
  return (await agents()).flatMap((n) => n.enrolledPods).every((p) => p.inbound?.mode === 'PERMISSIVE' && Object.keys(p.inbound.portModes ?? {}).length === 0);
}

/** Applies policies for one test only: when it ends they are deleted, and the next test waits for none to be left anywhere. */
async function withPolicies(t: TestContext, ...docs: string[]): Promise<void> {
  const yaml = docs.join('---\n');
  t.after(async () => {
    await sandboxDelete(NAME, yaml);
    await eventually('no policies left on any node', noPolicies);
  });
  await sandboxApply(NAME, yaml);
}

describe('zero trust between pods', { timeout: 300_000 }, () => {
  before(async () => {
    await mkdir(WWW, { recursive: true });
    await writeFile(join(WWW, 'index.html'), `${MARKER}\n`);
    const blob = randomBytes(40 * 1024 * 1024);
    blobSha = createHash('sha256').update(blob).digest('hex');
    await writeFile(join(WWW, 'blob'), blob);
    const manifest = (await readFile(join(REPO, 'test/e2e/fixtures/security.yaml'), 'utf8')).replaceAll('WWW_DIR', WWW);
    await sandboxUp({ name: NAME, nodes: 2, manifest, certTtl: CERT_TTL });
    info = await sandboxStatus(NAME);
    await eventually('pods enrolled', async () => (await agents()).flatMap((n) => n.enrolledPods).length === 5, 30_000);
    await eventually('web reachable through the mesh', async () => (await curl('client-a', `http://${vip('web')}/index.html`)).exitCode === 0, 30_000);
    await eventually('echo serving', async () => (await curl('client-a', `http://${podOf('echo').ip}:8080/`)).exitCode === 0, 30_000);
    await eventually('the known policy set: none', noPolicies);
  });

  after(async () => {
    await sandboxDown(NAME);
    await rm(WWW, { recursive: true, force: true });
    assert.deepEqual(await leftovers(NAME), [], 'the sandbox left something behind');
  });

  test('the underlay between nodes carries TLS 1.3 and never the application\'s plaintext', async () => {
    const pcap = join(WWW, 'underlay.pcap');
    // node-1's port on the underlay bridge: the bridge device itself sees only what is addressed to it.
    const dump = spawn('nsenter', [`--net=/run/netns/${info.underlayNetns}`, '--', 'tcpdump', '-i', 'u-node-1', '-Z', 'root', '--immediate-mode', '-U', '-n', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const stopped = new Promise((resolve) => dump.once('exit', resolve));
    let dumpLog = '';
    dump.stderr!.on('data', (d: Buffer) => (dumpLog += d.toString()));
    await new Promise<void>((resolve, reject) => {
      dump.stderr!.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve());
      dump.once('exit', () => reject(new Error('tcpdump exited before listening')));
    });
    // Plaintext from outside the mesh crosses the same port in clear: seeing it
    // in the file proves the capture saw everything sent before it.
    const captured = async (tag: string) => {
      const r = await curl('outsider', `http://${podOf('echo').ip}:8080/${tag}`, 'plain');
      assert.equal(r.exitCode, 0, `outsider → echo: ${r.stderr}`);
      await eventually(`${tag} in the capture`, async () => (await readFile(pcap)).includes(tag));
    };
    await captured(`${SENTINEL}-before`);
    // beta has not talked to web yet: its tunnel session, and so its handshake, is new.
    const r = await curl('client-b', `http://${vip('web')}/index.html?q=${MARKER}`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), MARKER);
    await captured(`${SENTINEL}-after`);
    dump.kill('SIGINT');
    await stopped;
    const bytes = await readFile(pcap);
    assert.ok(bytes.length > 1000, `captured ${bytes.length} bytes; tcpdump said: ${dumpLog}`);
    assert.equal(bytes.indexOf(MARKER), -1, 'the application bytes appear in clear on the underlay');
    // ServerHello's supported_versions extension selecting TLS 1.3 (0x002b, length 2, 0x0304).
    assert.notEqual(bytes.indexOf(Buffer.from([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04])), -1, 'no TLS 1.3 ServerHello on the underlay');
    // Application data records: content type 23, legacy version 3.3.
    assert.notEqual(bytes.indexOf(Buffer.from([0x17, 0x03, 0x03])), -1, 'no TLS application data records');
  });

  test('flows carry both SPIFFE identities and the verdict; metrics use Istio\'s names', async () => {
    const flow = await eventually('an allowed mTLS flow', async () =>
      (await flows()).find((f) => f.direction === 'inbound' && f.source.workload?.name === 'client-a' && f.destination?.workload?.name === 'web' && f.state === 'closed'));
    assert.equal(flow.source.identity, 'spiffe://cluster.local/ns/demo/sa/alpha');
    assert.equal(flow.destination?.identity, 'spiffe://cluster.local/ns/demo/sa/web');
    assert.equal(flow.verdict, 'allow');
    assert.equal(flow.security, 'mutual_tls');
    const wide = await meshlet(['flows', '--sandbox', NAME, '-o', 'wide']);
    assert.match(wide.stdout, /spiffe:\/\/cluster\.local\/ns\/demo\/sa\/alpha/);

    const metrics = await run('curl', ['-sf', '--unix-socket', nodeOf('node-2').ztunnelAdminSocket, 'http://ztunnel/metrics']);
    const opened = metrics.stdout.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('source_principal="spiffe://cluster.local/ns/demo/sa/alpha"'));
    assert.ok(opened, 'istio_tcp_connections_opened_total for the alpha → web connection');
    assert.match(opened, /connection_security_policy="mutual_tls"/);
    assert.match(opened, /destination_workload="web"/);
    assert.match(metrics.stdout, /istio_tcp_received_bytes_total\{/);
    assert.match(metrics.stdout, /istio_tcp_sent_bytes_total\{/);
    assert.match(metrics.stdout, /istio_tcp_connections_closed_total\{/);
  });

  test('meshlet certs lists each node\'s identities; rotation at half of a short TTL keeps a long transfer intact', async () => {
    const webCert = async () => (await certs()).find((n) => n.node === 'node-2')!.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/demo/sa/web');
    const first = await eventually('web certificate', webCert);
    assert.equal(first.state, 'valid');
    const table = await meshlet(['certs', '--sandbox', NAME]);
    assert.match(table.stdout, /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/alpha\s+valid/);

    const transfer = sandboxExec(NAME, demo('client-a'), ['sh', '-c', `curl -sf --limit-rate 5M http://${vip('web')}/blob | sha256sum`], { timeoutMs: 120_000 });
    const result = await transfer;
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout.split(' ')[0], blobSha, 'the transfer arrived intact across rotations');
    const later = await webCert();
    assert.notEqual(later?.serial, first.serial, 'the certificate rotated during the transfer');
  });

  test('the CA signs only identities with a pod on the asking node', async () => {
    const ca = ZTUNNEL_CA_ACCESS;
    const ask = async (sa: string) => {
      const r = await inZtunnel(NAME, 'node-1', [process.execPath, join(REPO, 'test/e2e/fixtures/ca-request.ts'), ca.url, ca.bundleFile, ca.tokenFile, 'demo', sa], { timeoutMs: 30_000 });
      assert.equal(r.exitCode, 0, r.stderr);
      return JSON.parse(r.stdout) as { signed: boolean; status?: number; message?: string };
    };
    assert.deepEqual((await ask('alpha')).signed, true);
    const refused = await ask('web');
    assert.equal(refused.signed, false);
    assert.equal(refused.status, 403);
    assert.match(refused.message!, /node-1/);
  });

  test('an ALLOW policy naming one principal admits that pod and refuses another with 401', async (t) => {
    await withPolicies(t, ALLOW_ALPHA_TO_WEB);
    await eventually('beta refused', async () => (await curl('client-b', `http://${vip('web')}/index.html`)).exitCode !== 0);
    const allowed = await curl('client-a', `http://${vip('web')}/index.html`);
    assert.equal(allowed.exitCode, 0, allowed.stderr);
    // A connection of beta's in flight when the policy landed is closed by the re-check; this one is refused outright.
    assert.notEqual((await curl('client-b', `http://${vip('web')}/index.html`)).exitCode, 0);
    const denied = await eventually('deny verdict in flows', async () =>
      (await flows()).find((f) => f.source.workload?.name === 'client-b' && f.verdict === 'deny' && f.node === 'node-2' && f.closeReason === 'denied'));
    assert.match(denied.verdictReason ?? '', /.+/);
    await eventually('a 401 for beta in the destination ztunnel\'s log', async () =>
      (await nodeLog(NAME, 'node-2', 'ztunnel')).split('\n').some((l) => l.includes('"status":401') && l.includes('sa/beta')));
    const table = await meshlet(['flows', '--sandbox', NAME, '--namespace', 'demo']);
    assert.match(table.stdout, /demo\/client-b.*DENY/);
  });

  test('a DENY policy on a port closes a connection that is already open', async (t) => {
    const open = await sandboxSpawn(NAME, demo('client-a'), ['python3', join(REPO, 'test/e2e/fixtures/line-client.py'), podOf('banner').ip, '2525']);
    const lines = createInterface({ input: open.stdout! })[Symbol.asyncIterator]();
    const next = async () => (await lines.next()).value as string | undefined;
    try {
      assert.match((await next())!, /^peer /);
      assert.match((await next())!, /^220 /);
      open.stdin!.write('before\n');
      assert.equal(await next(), 'before');
      await withPolicies(t, policy('banner-deny-2525', 'banner', '  action: DENY\n  rules: [{to: [{operation: {ports: ["2525"]}}]}]\n'));
      const closed = await eventually('open connection closed by policy', async () =>
        (await flows()).find((f) => f.node === 'node-2' && f.destination?.workload?.name === 'banner' && f.closeReason === 'policy_denied'), 10_000);
      assert.equal(closed.verdict, 'deny');
      const fresh = await sandboxExec(NAME, demo('client-a'), ['python3', join(REPO, 'test/e2e/fixtures/line-client.py'), podOf('banner').ip, '2525'], { timeoutMs: 15_000 });
      assert.notEqual(fresh.exitCode, 0, 'a new connection to the denied port is refused');
    } finally {
      open.kill('SIGKILL');
    }
  });

  test('STRICT drops plaintext from outside the mesh in the kernel, but lets the node probe a declared port', async (t) => {
    await withPolicies(t, peerAuth('STRICT'));
    await eventually('STRICT in force', async () => (await curl('outsider', `http://${podOf('echo').ip}:8080/`, 'plain', 2)).exitCode !== 0, 15_000);
    // Matched by destination too: another test may have had plaintext to another pod dropped.
    const drop = await eventually('drop in flows', async () =>
      (await flows()).find((f) => f.source.ip === podOf('outsider', 'plain').ip && f.destination?.workload?.name === 'echo' && f.closeReason === 'dropped'));
    assert.equal(drop.verdict, 'deny');
    assert.equal(drop.destination?.workload?.name, 'echo');
    assert.match(drop.verdictReason!, /STRICT/);

    const probe = await inNode('node-2', ['curl', '-sf', '--max-time', '5', `http://${podOf('echo').ip}:8080/`]);
    assert.equal(probe.exitCode, 0, `the node's probe on the declared port: ${probe.stderr}`);
    const notProbe = await inNode('node-2', ['curl', '-s', '--max-time', '2', `http://${podOf('banner').ip}:2525/`]);
    assert.notEqual(notProbe.exitCode, 0, 'the node reaches only declared probe ports');
    const meshed = await curl('client-a', `http://${podOf('echo').ip}:8080/`);
    assert.equal(meshed.exitCode, 0, 'mesh traffic still flows under STRICT');
  });

  test('switching to STRICT ends a plaintext connection admitted under PERMISSIVE, and the agent counts it', async (t) => {
    const open = await sandboxSpawn(NAME, { pod: 'outsider', namespace: 'plain' }, ['python3', join(REPO, 'test/e2e/fixtures/line-client.py'), podOf('banner').ip, '2525']);
    const exited = new Promise<number | null>((resolve) => open.once('exit', resolve));
    let stderr = '';
    open.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    open.stdin!.on('error', () => undefined);
    const lines = createInterface({ input: open.stdout! })[Symbol.asyncIterator]();
    const next = async () => (await lines.next()).value as string | undefined;
    try {
      assert.match((await next())!, /^peer /);
      assert.match((await next())!, /^220 /);
      open.stdin!.write('plaintext\n');
      assert.equal(await next(), 'plaintext', 'PERMISSIVE admitted the plaintext connection');
      await withPolicies(t, peerAuth('STRICT'));
      const sweep = await eventually('node-2\'s agent closed it', async () =>
        (await agents()).find((n) => n.node === 'node-2')?.strictSweeps?.recent.find((r) => r.pod === 'demo/banner' && r.closed > 0), 15_000);
      assert.equal(sweep.error, undefined);
      // The reset arrived while the client waited on its stdin: its next send fails.
      open.stdin!.write('after\n');
      assert.notEqual(await exited, 0, 'the client saw its connection end');
      assert.match(stderr, /ConnectionResetError|BrokenPipeError/);
      const status = await meshlet(['status', '--sandbox', NAME, '--node', 'node-2']);
      assert.match(status.stdout, /connections closed when inbound mode tightened: [1-9]/);
      assert.match(status.stdout, /demo\/banner: [1-9]\d* closed/);
      const log = await nodeLog(NAME, 'node-2', 'agent');
      assert.ok(log.split('\n').some((l) => l.includes('closed connections the inbound mode no longer admits') && l.includes('demo/banner')), 'a log line names the pod and the count');
    } finally {
      open.kill('SIGKILL');
    }
  });

  test('PERMISSIVE admits plaintext, but only to workloads no AuthorizationPolicy selects', async (t) => {
    await withPolicies(t, peerAuth('PERMISSIVE'), ALLOW_ALPHA_TO_WEB);
    await eventually('web held STRICT in the kernel (a policy selects it), echo PERMISSIVE', async () =>
      (await inboundOf('web'))?.mode === 'STRICT' && (await inboundOf('echo'))?.mode === 'PERMISSIVE');
    await eventually('PERMISSIVE in force', async () => (await curl('outsider', `http://${podOf('echo').ip}:8080/`, 'plain', 2)).exitCode === 0, 15_000);
    const web = await curl('outsider', `http://${podOf('web').ip}:8080/index.html`, 'plain', 2);
    assert.notEqual(web.exitCode, 0, 'web is selected by an AuthorizationPolicy: plaintext stays out (fail closed)');
  });

  test('an ALLOW rule on HTTP-only attributes fails closed at L4 and the operator sees why', async (t) => {
    assert.equal((await curl('client-a', `http://${podOf('echo').ip}:8080/`)).exitCode, 0);
    await withPolicies(t, policy('echo-get-only', 'echo', '  action: ALLOW\n  rules: [{to: [{operation: {methods: ["GET"]}}]}]\n'));
    await eventually('echo denied: the rule can never match at L4', async () => (await curl('client-a', `http://${podOf('echo').ip}:8080/`)).exitCode !== 0);
    const text = await meshlet(['status', '--sandbox', NAME]);
    assert.match(text.stdout, /AuthorizationPolicy demo\/echo-get-only: .*methods/);
  });
});

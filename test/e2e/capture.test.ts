// The capture path end to end on this kernel: a two-node sandbox, real
// network namespaces, cgroups and BPF, the real CLI, curl, python and redis.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { run } from '../../lib/core/exec.ts';
import type { AgentStatus } from '../../lib/mesh/agent-status.ts';
import { POD_PROGRAMS } from '../../agent/bpf/objects.ts';
import { ApplyRefusedError, sandboxApply, sandboxDelete, sandboxDown, sandboxExec, sandboxSpawn, sandboxStatus, sandboxUp, type SandboxInfo } from '../../sandbox/api.ts';
import type { FlowRecord } from '../../lib/telemetry/flow.ts';
import { eventually, leftovers, meshlet, meshletJson, REPO, runName } from '../support/harness.ts';

const NAME = runName('cap');
const WWW = join(tmpdir(), `meshlet-${NAME}-www`);
const BLOB_BYTES = 48 * 1024 * 1024;
const demo = (pod: string) => ({ pod, namespace: 'demo' });

let info: SandboxInfo;
let blobSha = '';

const vip = (name: string) => info.services!.find((s) => s.name === name && s.namespace === 'demo')!.clusterIPs[0]!;
const podOf = (name: string, namespace = 'demo') => info.pods.find((p) => p.name === name && p.namespace === namespace)!;
const flows = async () => (await meshletJson<{ flows: FlowRecord[] }>(['flows', '--sandbox', NAME, '-o', 'json'])).flows;
const agentStatus = async () => (await meshletJson<{ nodes: AgentStatus[] }>(['status', '--sandbox', NAME, '-o', 'json'])).nodes;

async function exec(pod: string, argv: string[], namespace = 'demo') {
  const r = await sandboxExec(NAME, { pod, namespace }, argv, { timeoutMs: 60_000 });
  assert.equal(r.exitCode, 0, `${argv.join(' ')} in ${namespace}/${pod} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * The address the echo pod saw as the peer of one request from `pod`: the
 * pod's own address when the connection went direct, the ztunnel's inbound
 * source address when it was captured.
 */
async function echoPeer(pod: string, namespace = 'demo'): Promise<string> {
  const { peer } = JSON.parse(await exec(pod, ['curl', '-sf', '--max-time', '10', `http://${podOf('echo').ip}:8080/`], namespace)) as { peer: string };
  // host:port, IPv4 clients as ::ffff:a.b.c.d (the echo server listens dual-stack).
  return peer.slice(0, peer.lastIndexOf(':')).replace(/^::ffff:/, '');
}

async function enrolledPods(): Promise<string[]> {
  return (await agentStatus()).flatMap((n) => n.enrolledPods.map((p) => `${p.namespace}/${p.name}`)).sort();
}

const manifest = async () => (await readFile(join(REPO, 'test/e2e/fixtures/capture.yaml'), 'utf8')).replaceAll('WWW_DIR', WWW);
const namespaceYaml = (labelled: boolean) =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels: ${labelled ? '{istio.io/dataplane-mode: ambient}' : '{}'}\n`;

describe('capture path in a two-node sandbox', { timeout: 300_000 }, () => {
  before(async () => {
    await mkdir(WWW, { recursive: true });
    const blob = randomBytes(BLOB_BYTES);
    blobSha = createHash('sha256').update(blob).digest('hex');
    await writeFile(join(WWW, 'blob'), blob);
    await writeFile(join(WWW, 'index.html'), 'hello from web\n');
    await sandboxUp({ name: NAME, nodes: 2, manifest: await manifest() });
    info = await sandboxStatus(NAME);
    await eventually('demo pods enrolled', async () => {
      const pods = await enrolledPods();
      return ['demo/banner', 'demo/client', 'demo/echo', 'demo/local-client', 'demo/redis', 'demo/web'].every((p) => pods.includes(p));
    }, 30_000);
    await eventually('web serving', async () => (await sandboxExec(NAME, demo('client'), ['curl', '-sf', `http://${podOf('web').ip}:8080/index.html`])).exitCode === 0);
    await eventually('echo serving', async () => (await sandboxExec(NAME, demo('client'), ['curl', '-sf', `http://${podOf('echo').ip}:8080/`])).exitCode === 0);
  });

  after(async () => {
    await sandboxDown(NAME);
    await rm(WWW, { recursive: true, force: true });
    assert.deepEqual(await leftovers(NAME), [], 'the sandbox left something behind');
  });

  test('curl on node-1 reaches a Service on node-2 through both ztunnels, and the flow shows the VIP', async () => {
    const body = await exec('client', ['curl', '-sf', '--max-time', '10', `http://${vip('web')}/index.html`]);
    assert.equal(body, 'hello from web\n');
    const flow = await eventually('outbound flow to the web VIP', async () =>
      (await flows()).find((f) => f.direction === 'outbound' && f.originalDestination.ip === vip('web') && f.state === 'closed'));
    assert.equal(flow.originalDestination.port, 80);
    assert.deepEqual(flow.service, { namespace: 'demo', name: 'web' });
    assert.equal(flow.source.workload?.name, 'client');
    assert.equal(flow.source.ip, podOf('client').ip);
    assert.equal(flow.destination?.workload?.name, 'web');
    assert.equal(flow.destination?.ip, podOf('web').ip);
    assert.equal(flow.destination?.port, 8080);
    assert.equal(flow.destination?.node, 'node-2');
    assert.equal(flow.node, 'node-1');
    assert.equal(flow.path, 'tunnel');
    assert.ok(flow.bytesReceived > 'hello from web\n'.length, `bytes received ${flow.bytesReceived}`);
    assert.ok(flow.bytesSent > 0);
    const inbound = (await flows()).find((f) => f.direction === 'inbound' && f.node === 'node-2' && f.source.ip === podOf('client').ip);
    assert.ok(inbound, 'the destination ztunnel records the inbound side');

    const table = await meshlet(['flows', '--sandbox', NAME, '--namespace', 'demo']);
    assert.equal(table.exitCode, 0, table.stderr);
    assert.match(table.stdout, /demo\/client\s+demo\/web/);
  });

  test('the application still sees the address it dialled as its peer (getpeername)', async () => {
    const peer = await exec('client', ['python3', join(REPO, 'test/e2e/fixtures/peer.py'), vip('web'), '80']);
    assert.equal(peer.trim(), `${vip('web')} 80`);
  });

  test('IPv6 pod-to-pod traffic is captured too', async () => {
    const web6 = podOf('web').ip6!;
    const body = await exec('client', ['curl', '-sf', '--max-time', '10', `http://[${web6}]:8080/index.html`]);
    assert.equal(body, 'hello from web\n');
    await eventually('IPv6 flow', async () => (await flows()).find((f) => f.originalDestination.ip === web6 && f.direction === 'outbound'));
  });

  test('a server-first protocol works through the mesh', async () => {
    const out = await exec('client', ['python3', join(REPO, 'test/e2e/fixtures/line-client.py'), vip('banner'), '25']);
    const lines = out.trim().split('\n');
    assert.equal(lines[0], `peer ${vip('banner')} 25`);
    assert.match(lines[1]!, /^220 /, 'the greeting arrives before the client sends anything');
  });

  test('redis-benchmark and redis-cli run through the mesh without errors', async () => {
    assert.equal((await exec('client', ['redis-cli', '-h', vip('redis'), 'set', 'greeting', 'hello'])).trim(), 'OK');
    assert.equal((await exec('client', ['redis-cli', '-h', vip('redis'), 'get', 'greeting'])).trim(), 'hello');
    const bench = await sandboxExec(NAME, demo('client'), ['redis-benchmark', '-h', vip('redis'), '-p', '6379', '-n', '5000', '-c', '20', '-t', 'set,get,lpush', '-q'], { timeoutMs: 120_000 });
    assert.equal(bench.exitCode, 0, bench.stderr);
    assert.match(bench.stdout, /SET: [\d.]+ requests per second/);
    assert.match(bench.stdout, /GET: [\d.]+ requests per second/);
    assert.doesNotMatch(bench.stdout + bench.stderr, /error/i);
    const redisFlows = (await flows()).filter((f) => f.service?.name === 'redis' && f.direction === 'outbound');
    assert.ok(redisFlows.length >= 20, `redis connections captured: ${redisFlows.length}`);
  });

  test('same-node traffic goes straight to the local pod, and excluded ports bypass the mesh', async () => {
    await exec('local-client', ['curl', '-sf', '--max-time', '10', `http://${vip('web')}/index.html`]);
    const local = await eventually('same-node flow', async () =>
      (await flows()).find((f) => f.source.workload?.name === 'local-client' && f.originalDestination.ip === vip('web')));
    assert.equal(local.path, 'local');
    assert.equal(local.node, 'node-2');
    // A captured connection reaches the server from the ztunnel, not from the client.
    assert.notEqual(await echoPeer('client'), podOf('client').ip, 'a captured connection arrives from the ztunnel');
    // Port 8080 is excluded for this pod: the server sees the client itself, so the ztunnel never had it.
    assert.equal(await echoPeer('local-client'), podOf('local-client').ip, 'the excluded port went direct');
    assert.equal((await flows()).filter((f) => f.source.workload?.name === 'local-client' && f.originalDestination.port === 8080).length, 0);
  });

  test('a pod outside the mesh talks directly', async () => {
    assert.equal(await echoPeer('outsider', 'plain'), podOf('outsider', 'plain').ip, 'the server sees the outsider itself');
    assert.equal((await flows()).filter((f) => f.source.ip === podOf('outsider', 'plain').ip).length, 0);
  });

  test('kill -9 of the agents during a long transfer loses no byte, and the new agent attaches nothing twice', async () => {
    const before = await sandboxStatus(NAME);
    const transfer = sandboxExec(NAME, demo('client'), ['sh', '-c', `curl -sf --limit-rate 12M http://${vip('web')}/blob | sha256sum`], { timeoutMs: 120_000 });
    await eventually('the transfer to be under way', async () =>
      (await flows()).some((f) => f.direction === 'outbound' && f.source.workload?.name === 'client' && f.originalDestination.ip === vip('web') && f.state === 'open'));
    for (const node of before.nodes) process.kill(node.agentPid!, 'SIGKILL');
    const result = await transfer;
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout.split(' ')[0], blobSha);

    await eventually('agents restarted', async () => {
      const now = await sandboxStatus(NAME);
      return now.nodes.every((n, i) => n.agentPid !== undefined && n.agentPid !== before.nodes[i]!.agentPid) && (await agentStatus()).every((s) => s.ztunnel.connected);
    }, 30_000);
    const attached = JSON.parse((await run('bpftool', ['cgroup', 'show', podOf('client').cgroup, '-j'])).stdout) as { id: number; name: string }[];
    const names = attached.map((p) => p.name).sort();
    assert.deepEqual(names, [...new Set(names)], `programs attached twice: ${names.join(', ')}`);
    assert.deepEqual(names, POD_PROGRAMS.map((p) => p.name).sort(), 'the client cgroup has each pod program, once');
    assert.equal(await exec('client', ['curl', '-sf', '--max-time', '10', `http://${vip('web')}/index.html`]), 'hello from web\n');
  });

  test('the API server refuses what the schemas refuse; what they admit but meshlet cannot use shows in status while the rest keeps working', async (t) => {
    const schemaInvalid = [
      'apiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: demo}\nspec:\n  selector: {app: web}\n  ports: [{port: 99999}]',
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: maybe, namespace: demo}\nspec:\n  action: MAYBE',
    ].join('\n---\n');
    const unusable = [
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: misconfigured\n  namespace: demo\n  annotations: {meshlet.io/exclude-outbound-ports: "postgres"}\nspec:\n  nodeName: node-1\n  containers: [{name: c, image: busybox, command: [sleep, infinity]}]',
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: audit, namespace: demo}\nspec:\n  selector: {matchLabels: {app: nobody}}\n  action: AUDIT',
    ].join('\n---\n');
    t.after(async () => {
      await sandboxDelete(NAME, unusable);
      await eventually('the rejections to clear', async () =>
        !(await agentStatus()).flatMap((n) => n.rejected).some((r) => r.object === 'Pod demo/misconfigured' || r.object === 'AuthorizationPolicy demo/audit'));
    });
    await assert.rejects(sandboxApply(NAME, schemaInvalid), (err: unknown) => {
      assert.ok(err instanceof ApplyRefusedError);
      assert.match(err.message, /service\/broken: HTTP 422: .*spec\.ports\[0\]\.port: Invalid value: 99999/);
      assert.match(err.message, /authorizationpolicy\.security\.istio\.io\/maybe: HTTP 422: .*spec\.action: Unsupported value: "MAYBE"/);
      return true;
    });
    await sandboxApply(NAME, unusable);
    const rejected = await eventually('rejections reported', async () => {
      const all = (await agentStatus()).flatMap((n) => n.rejected);
      return all.some((r) => r.object === 'Pod demo/misconfigured') && all.some((r) => r.object === 'AuthorizationPolicy demo/audit') ? all : undefined;
    });
    assert.match(rejected.find((r) => r.object === 'Pod demo/misconfigured')!.reason, /meshlet\.io\/exclude-outbound-ports.*comma-separated numbers/);
    const text = await meshlet(['status', '--sandbox', NAME]);
    assert.match(text.stdout, /AuthorizationPolicy demo\/audit: action AUDIT only marks requests for an Envoy audit plugin/);
    assert.equal(await exec('client', ['curl', '-sf', '--max-time', '10', `http://${vip('web')}/index.html`]), 'hello from web\n');
  });

  test('un-enrolling keeps open connections and returns the pod to direct traffic; re-enrolling captures again', async (t) => {
    // Whatever happens here, the next test finds demo enrolled.
    t.after(async () => {
      await sandboxApply(NAME, namespaceYaml(true));
      await eventually('demo enrolled', async () => (await enrolledPods()).includes('demo/client'));
    });
    const open = await sandboxSpawn(NAME, demo('client'), ['python3', join(REPO, 'test/e2e/fixtures/line-client.py'), vip('banner'), '25']);
    const lines = createInterface({ input: open.stdout! })[Symbol.asyncIterator]();
    const next = async () => (await lines.next()).value as string;
    try {
      assert.equal(await next(), `peer ${vip('banner')} 25`);
      assert.match(await next(), /^220 /);

      await sandboxApply(NAME, namespaceYaml(false));
      await eventually('demo un-enrolled', async () => !(await enrolledPods()).includes('demo/client'));
      open.stdin!.write('still there\n');
      assert.equal(await next(), 'still there', 'the connection opened while enrolled keeps working');

      const flowsBefore = (await flows()).filter((f) => f.source.workload?.name === 'client').length;
      assert.equal(await exec('client', ['curl', '-sf', '--max-time', '10', `http://${podOf('web').ip}:8080/index.html`]), 'hello from web\n');
      const peer = await exec('client', ['python3', join(REPO, 'test/e2e/fixtures/peer.py'), podOf('web').ip, '8080']);
      assert.equal(peer.trim(), `${podOf('web').ip} 8080`);
      assert.equal(await echoPeer('client'), podOf('client').ip, 'the server sees the un-enrolled client itself');
      assert.equal((await flows()).filter((f) => f.source.workload?.name === 'client').length, flowsBefore, 'no new captured flow');

      await sandboxApply(NAME, namespaceYaml(true));
      await eventually('demo enrolled again', async () => (await enrolledPods()).includes('demo/client'));
      assert.equal(await exec('client', ['curl', '-sf', '--max-time', '10', `http://${vip('web')}/index.html`]), 'hello from web\n');
      open.stdin!.write('after re-enrolling\n');
      assert.equal(await next(), 'after re-enrolling');
    } finally {
      open.kill('SIGKILL');
    }
  });
});

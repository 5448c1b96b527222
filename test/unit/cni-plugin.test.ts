// The CNI plugin as the container runtime runs it: a child process with the
// CNI environment and the network config on stdin, against an agent's socket.
// A pod of an ambient namespace starts only once its agent answers (fail
// closed); other pods never wait for the agent; DEL never fails.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { closeServer, listenUnix } from '../../lib/core/listen.ts';

const PLUGIN = fileURLToPath(new URL('../../cni/plugin.ts', import.meta.url));
const UID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const PREV_RESULT = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/cni-1' }],
  ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 }, { address: 'fd00:10:244:1::5/64', interface: 0 }],
  dns: {},
};

interface Run {
  code: number | null;
  stdout: string;
  /** stdout as JSON, when it is. */
  output: Record<string, unknown> | undefined;
}

interface Fixture {
  dir: string;
  socket: string;
  ambientFile: string;
  /** The bodies the agent was sent. */
  requests: unknown[];
  conf: (extra?: Record<string, unknown>) => Record<string, unknown>;
}

/** `ambient` null: the agent has written no list of ambient namespaces. */
async function fixture(t: TestContext, ambient: string[] | null = ['shop']): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cni-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, 'agent.sock');
  const ambientFile = join(dir, 'ambient-namespaces.json');
  if (ambient) await writeFile(ambientFile, JSON.stringify({ namespaces: ambient }));
  const conf = (extra: Record<string, unknown> = {}) => ({
    cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'meshlet-cni', agentSocket: socket, ambientNamespacesFile: ambientFile,
    excludeNamespaces: ['kube-system', 'meshlet-system'], prevResult: PREV_RESULT, ...extra,
  });
  return { dir, socket, ambientFile, requests: [], conf };
}

/** An agent on the fixture's socket that answers every POST /cni/add with `status` and `body`. */
async function fakeAgent(t: TestContext, f: Fixture, status: number, body: Record<string, unknown>): Promise<void> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      assert.equal(`${req.method} ${req.url}`, 'POST /cni/add');
      f.requests.push(JSON.parse(Buffer.concat(chunks).toString()));
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await listenUnix(server, f.socket);
  t.after(() => closeServer(server));
}

async function runPlugin(command: string, stdin: string, namespace?: string): Promise<Run> {
  const podArgs = namespace === undefined ? '' : `K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=web-0;K8S_POD_UID=${UID};`;
  const child = spawn(process.execPath, [PLUGIN], {
    env: {
      PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/cni-1', CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;${podArgs}K8S_POD_INFRA_CONTAINER_ID=c0ffee`,
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const out: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stdin.end(stdin);
  const [code] = await once(child, 'close') as [number | null];
  const stdout = Buffer.concat(out).toString();
  let output: Record<string, unknown> | undefined;
  try {
    output = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    output = undefined;
  }
  return { code, stdout, output };
}

const add = (f: Fixture, namespace: string, extra?: Record<string, unknown>): Promise<Run> => runPlugin('ADD', JSON.stringify(f.conf(extra)), namespace);

test('VERSION lists the spec versions the plugin speaks', async () => {
  const run = await runPlugin('VERSION', '');
  assert.equal(run.code, 0);
  assert.deepEqual(run.output, { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('DEL, CHECK, GC and STATUS succeed silently with no agent running', async (t) => {
  const f = await fixture(t);
  for (const command of ['DEL', 'CHECK', 'GC', 'STATUS']) {
    const run = await runPlugin(command, JSON.stringify(f.conf()), 'shop');
    assert.deepEqual([run.code, run.stdout], [0, ''], command);
  }
  assert.deepEqual([(await runPlugin('DEL', 'not json', 'shop')).code], [0], 'DEL never fails, not even on a broken config');
});

test('an unknown CNI_COMMAND is a CNI error', async () => {
  const run = await runPlugin('UPGRADE', '{}');
  assert.equal(run.code, 1);
  assert.equal(run.output?.code, 4);
  assert.match(String(run.output?.msg), /CNI_COMMAND "UPGRADE" is not one of ADD, DEL/);
});

test('pods that must not wait for the agent pass without contacting it, with the previous result', async (t) => {
  const f = await fixture(t, ['shop']);
  await fakeAgent(t, f, 500, { error: 'must not be asked' });
  const cases: { name: string; namespace: string | undefined }[] = [
    { name: 'not a Kubernetes pod', namespace: undefined },
    { name: 'an excluded namespace', namespace: 'kube-system' },
    { name: 'a namespace absent from the ambient list', namespace: 'default' },
  ];
  for (const c of cases) {
    const run = await runPlugin('ADD', JSON.stringify(f.conf({ cniVersion: '0.4.0' })), c.namespace);
    assert.equal(run.code, 0, c.name);
    assert.deepEqual(run.output, { ...PREV_RESULT, cniVersion: '0.4.0' }, c.name);
  }
  assert.deepEqual(f.requests, []);
});

test('a pod of an ambient namespace is posted to the agent and passes once it is enrolled', async (t) => {
  const f = await fixture(t, ['shop']);
  await fakeAgent(t, f, 200, { enrolled: true });
  const run = await add(f, 'shop');
  assert.equal(run.code, 0);
  assert.deepEqual(run.output, PREV_RESULT);
  assert.deepEqual(f.requests, [{
    uid: UID, namespace: 'shop', name: 'web-0', ips: ['10.244.1.5', 'fd00:10:244:1::5'], containerId: 'c0ffee', netns: '/var/run/netns/cni-1',
  }]);
});

test('without a previous result the plugin outputs the bare result', async (t) => {
  const f = await fixture(t, ['shop']);
  await fakeAgent(t, f, 200, { enrolled: false });
  const run = await add(f, 'shop', { prevResult: undefined });
  assert.equal(run.code, 0);
  assert.deepEqual(run.output, { cniVersion: '1.0.0' });
  assert.deepEqual((f.requests[0] as { ips: unknown }).ips, []);
});

test('the agent\'s refusal fails the sandbox with "try again later" and the agent\'s reason', async (t) => {
  const f = await fixture(t, ['shop']);
  await fakeAgent(t, f, 503, { error: 'the meshlet agent is starting (it has not applied the cluster state yet); pod shop/web-0 waits' });
  const run = await add(f, 'shop');
  assert.equal(run.code, 1);
  assert.equal(run.output?.cniVersion, '1.0.0');
  assert.equal(run.output?.code, 11);
  assert.match(String(run.output?.msg), /did not enroll pod shop\/web-0 \(HTTP 503\): the meshlet agent is starting/);
});

test('no agent on the socket fails the sandbox with "try again later", naming the socket', async (t) => {
  const f = await fixture(t, ['shop']);
  const run = await add(f, 'shop');
  assert.equal(run.code, 1);
  assert.equal(run.output?.code, 11);
  const msg = String(run.output?.msg);
  assert.ok(msg.startsWith(`meshlet agent on this node is not reachable at ${f.socket} (connect ENOENT`), msg);
  assert.match(msg, /pods of ambient namespace shop wait until it runs \(kubectl get pods -A -l app\.kubernetes\.io\/name=meshlet-node/);
});

test('an agent that does not answer in timeoutSeconds fails the sandbox', async (t) => {
  const f = await fixture(t, ['shop']);
  const server = createServer(() => {});
  await listenUnix(server, f.socket);
  t.after(() => {
    server.closeAllConnections();
    return closeServer(server);
  });
  const run = await add(f, 'shop', { timeoutSeconds: 0.2 });
  assert.equal(run.output?.code, 11);
  assert.match(String(run.output?.msg), /not reachable at .* \(no answer within 0\.2 s\)/);
});

test('without the ambient list every pod asks the agent (fail closed)', async (t) => {
  const f = await fixture(t, null);
  await fakeAgent(t, f, 200, { enrolled: false });
  assert.equal((await add(f, 'default')).code, 0);
  assert.equal((await add(f, 'kube-system')).code, 0);
  assert.deepEqual(f.requests.map((r) => (r as { namespace: string }).namespace), ['default'], 'excluded namespaces still never wait');

  await writeFile(f.ambientFile, '{"namespaces": "shop"}');
  assert.equal((await add(f, 'default')).code, 0);
  assert.equal(f.requests.length, 2, 'a malformed list is no list');

  await rm(f.socket);
  const run = await add(f, 'default');
  assert.equal(run.output?.code, 11);
  assert.match(String(run.output?.msg), /list of ambient namespaces is unreadable \(.*is not \{"namespaces": \[\.\.\.\]\}\)/);
});

test('a malformed network config is a decoding or invalid-config error', async (t) => {
  const f = await fixture(t);
  const cases: { name: string; stdin: string; code: number; msg: RegExp; cniVersion: string }[] = [
    { name: 'not JSON', stdin: '{"cniVersion":', code: 6, msg: /not JSON/, cniVersion: '1.0.0' },
    { name: 'not an object', stdin: '[]', code: 6, msg: /not a JSON object/, cniVersion: '1.0.0' },
    { name: 'no agentSocket', stdin: JSON.stringify(f.conf({ cniVersion: '0.4.0', agentSocket: undefined })), code: 7, msg: /agentSocket must be .*restart the agent/, cniVersion: '0.4.0' },
    { name: 'bad excludeNamespaces', stdin: JSON.stringify(f.conf({ excludeNamespaces: 'kube-system' })), code: 7, msg: /excludeNamespaces must be a list/, cniVersion: '1.0.0' },
    { name: 'bad timeoutSeconds', stdin: JSON.stringify(f.conf({ timeoutSeconds: 0 })), code: 7, msg: /timeoutSeconds must be a positive number/, cniVersion: '1.0.0' },
    { name: 'bad prevResult.ips', stdin: JSON.stringify(f.conf({ prevResult: { ips: [{ ip: '10.0.0.1' }] } })), code: 7, msg: /prevResult\.ips must list/, cniVersion: '1.0.0' },
  ];
  for (const c of cases) {
    const run = await runPlugin('ADD', c.stdin, 'shop');
    assert.equal(run.code, 1, c.name);
    assert.equal(run.output?.code, c.code, c.name);
    assert.equal(run.output?.cniVersion, c.cniVersion, c.name);
    assert.match(String(run.output?.msg), c.msg, c.name);
  }
});

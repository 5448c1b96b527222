// When the agent ends connections a pod's inbound enforcement no longer
// admits: which changes count as tightening, that sweeps queue one at a time
// with the newest enforcement, what status and the log show, and how the
// iterator's lines are read. The kernel side is test/bpf/strict-sweep.test.ts.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeAgent } from '../../agent/node-agent.ts';
import { parseSweepOutput, type SweepResult } from '../../agent/bpf/strict-sweep.ts';
import type { PodCapture } from '../../agent/datapath.ts';
import { StrictSweeps, tightened } from '../../agent/strict-sweeps.ts';
import { type Fields, type Logger, silentLogger } from '../../lib/core/log.ts';
import type { EnrolledPod, InboundEnforcement } from '../../lib/mesh/agent-status.ts';
import { makePodCgroup, ManualSource, namespace, NODE, peerAuthentication, pod, RecordingControl, RecordingDatapath } from '../support/agent-doubles.ts';

const STRICT: InboundEnforcement = { mode: 'STRICT' };
const PERMISSIVE: InboundEnforcement = { mode: 'PERMISSIVE' };

test('tightening: STRICT where it was PERMISSIVE, or a probe port withdrawn under STRICT', () => {
  assert.equal(tightened(PERMISSIVE, STRICT), true);
  assert.equal(tightened(undefined, STRICT), true, 'enrolled under STRICT: before it nothing was enforced');
  assert.equal(tightened(undefined, { mode: 'PERMISSIVE', portModes: { 80: 'STRICT' } }), true);
  assert.equal(tightened(PERMISSIVE, { mode: 'PERMISSIVE', portModes: { 80: 'STRICT' } }), true);
  assert.equal(tightened({ mode: 'STRICT', portModes: { 80: 'PERMISSIVE' } }, STRICT), true, 'the port-level PERMISSIVE went');
  assert.equal(tightened({ mode: 'STRICT', probePorts: [8080] }, STRICT), true, 'the probe port went');

  assert.equal(tightened(STRICT, STRICT), false);
  assert.equal(tightened(STRICT, PERMISSIVE), false);
  assert.equal(tightened(undefined, PERMISSIVE), false);
  assert.equal(tightened(STRICT, undefined), false, 'un-enrolled: nothing is enforced any more');
  assert.equal(tightened(STRICT, { mode: 'STRICT', probePorts: [8080] }), false, 'a probe port added loosens');
  assert.equal(tightened({ mode: 'STRICT', failClosed: ['AuthorizationPolicy demo/x'] }, STRICT), false, 'only the modes and ports count');
  assert.equal(tightened({ mode: 'PERMISSIVE', portModes: { 80: 'STRICT' } }, { mode: 'STRICT', portModes: { 81: 'PERMISSIVE' } }), true);
  assert.equal(tightened({ mode: 'STRICT', portModes: { 81: 'PERMISSIVE' } }, { mode: 'STRICT', portModes: { 81: 'PERMISSIVE' } }), false);
});

const enrolled = (name: string, inbound?: InboundEnforcement): EnrolledPod => ({
  uid: `uid-${name}`, namespace: 'demo', name, cgroupPath: `/cg/${name}`, cgroupId: '1', ips: [], excludeOutboundPorts: [], since: '', ...(inbound ? { inbound } : {}),
});

const conn = (peerPort: number): SweepResult['closed'][number] => ({ local: { ip: '10.0.0.5', port: 8080 }, peer: { ip: '10.0.1.9', port: peerPort } });

/** A datapath whose sweeps wait until the test releases them. */
class HeldSweeps {
  readonly calls: PodCapture[] = [];
  #release: (() => void)[] = [];
  result: (pod: PodCapture) => SweepResult = () => ({ closed: [conn(40000)], failed: [] });

  async closeInadmissible(pod: PodCapture): Promise<SweepResult> {
    this.calls.push(pod);
    await new Promise<void>((resolve) => this.#release.push(resolve));
    return this.result(pod);
  }

  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }
}

function recordingLog(): { log: Logger; lines: { level: string; event: string; fields: Fields }[] } {
  const lines: { level: string; event: string; fields: Fields }[] = [];
  const at = (level: string) => (event: string, fields: Fields = {}) => void lines.push({ level, event, fields });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

test('sweeps run one at a time, once per pod, with the newest enforcement; status and the log count what closed', async () => {
  const dp = new HeldSweeps();
  const { log, lines } = recordingLog();
  const sweeps = new StrictSweeps(dp, log);
  sweeps.afterReconcile([enrolled('a', PERMISSIVE), enrolled('b', PERMISSIVE)], [enrolled('a', STRICT), enrolled('b', STRICT)]);
  assert.deepEqual(dp.calls.map((p) => (p as EnrolledPod).name), ['a'], 'one at a time');
  // b tightens again while queued, then loosens partly: its sweep judges by the newest enforcement.
  const newest: InboundEnforcement = { mode: 'STRICT', portModes: { 81: 'PERMISSIVE' } };
  sweeps.afterReconcile([enrolled('a', STRICT), enrolled('b', STRICT)], [enrolled('a', STRICT), enrolled('b', newest)]);
  while (dp.calls.length < 2) {
    dp.releaseAll();
    await new Promise((resolve) => setImmediate(resolve));
  }
  dp.releaseAll();
  await sweeps.idle();
  assert.deepEqual(dp.calls.map((p) => [(p as EnrolledPod).name, p.inbound]), [['a', STRICT], ['b', newest]]);
  assert.deepEqual(sweeps.status().closed, 2);
  assert.deepEqual(sweeps.status().recent.map((r) => [r.pod, r.closed, r.failed]), [['demo/a', 1, 0], ['demo/b', 1, 0]]);
  assert.deepEqual(lines.map((l) => [l.level, l.fields.pod, l.fields.closed]), [['info', 'demo/a', 1], ['info', 'demo/b', 1]]);
  assert.deepEqual(lines[0]?.fields.connections, ['10.0.1.9:40000 → 10.0.0.5:8080']);
});

test('a pod that leaves before its sweep is not swept; nothing closed leaves status and the log alone; failures show', async () => {
  const dp = new HeldSweeps();
  const { log, lines } = recordingLog();
  const sweeps = new StrictSweeps(dp, log);
  sweeps.afterReconcile([], [enrolled('a', STRICT), enrolled('b', STRICT)]);
  sweeps.afterReconcile([enrolled('a', STRICT), enrolled('b', STRICT)], [enrolled('a', STRICT)]);
  dp.result = () => ({ closed: [], failed: [], skipped: 'the pod has no process, so no network namespace to enter' });
  dp.releaseAll();
  await sweeps.idle();
  assert.deepEqual(dp.calls.map((p) => (p as EnrolledPod).name), ['a']);
  assert.deepEqual(sweeps.status(), { closed: 0, failed: 0, recent: [] });
  assert.equal(lines.length, 0);

  const failing = new StrictSweeps({ closeInadmissible: async () => Promise.reject(new Error('nsenter: cannot open')) }, log);
  failing.afterReconcile([enrolled('a', PERMISSIVE)], [enrolled('a', STRICT)]);
  await failing.idle();
  assert.deepEqual(failing.status().recent.map((r) => [r.pod, r.error]), [['demo/a', 'nsenter: cannot open']]);
  assert.deepEqual(lines.map((l) => [l.level, l.fields.pod, l.fields.error]), [['error', 'demo/a', 'nsenter: cannot open']]);
});

test('the iterator\'s lines: a close per connection, a failed one retracts its close', () => {
  const v4 = (a: number) => `0000:0000:0000:0000:0000:ffff:0a00:00${a.toString(16).padStart(2, '0')}`;
  const out = [
    `close ${v4(5)} 8080 ${v4(9)} 40000`,
    'close fd77:0002:0000:0000:0000:0000:0000:0002 8080 fd77:0000:0000:0000:0000:0000:0000:0009 40001',
    `close ${v4(5)} 8080 ${v4(8)} 40002`,
    `failed ${v4(5)} 8080 ${v4(8)} 40002 95`,
    '',
  ].join('\n');
  assert.deepEqual(parseSweepOutput(out), {
    closed: [
      { local: { ip: '10.0.0.5', port: 8080 }, peer: { ip: '10.0.0.9', port: 40000 } },
      { local: { ip: 'fd77:2::2', port: 8080 }, peer: { ip: 'fd77::9', port: 40001 } },
    ],
    failed: [{ local: { ip: '10.0.0.5', port: 8080 }, peer: { ip: '10.0.0.8', port: 40002 }, errno: 95 }],
  });
  assert.throws(() => parseSweepOutput('closed everything'), { code: 'MESHLET_BPF' });
  assert.throws(() => parseSweepOutput(`close 10.0.0.5 8080 ${v4(9)} 1`), { code: 'MESHLET_BPF' });
});

async function agentFixture(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-sweeps-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await makePodCgroup(dir, 'web');
  const datapath = new RecordingDatapath();
  const source = new ManualSource();
  const agent = new NodeAgent(
    { node: NODE, kubeletCgroupRoot: dir, cgroupDriver: 'cgroupfs', ztunnelCgroup: join(dir, 'ztunnel'), bpfDir: join(dir, 'bpf'), rootNamespace: 'istio-system', serviceCidrs: '10.96.0.0/16', adminSocket: join(dir, 'admin.sock') },
    { source, control: new RecordingControl(), log: silentLogger, openDatapath: async () => datapath, schedule: () => undefined },
  );
  await agent.start();
  t.after(() => agent.stop());
  return { agent, datapath, source };
}

test('the agent sweeps a pod once its mode tightens, after enrolling the tighter mode, and shows it in status', async (t) => {
  const f = await agentFixture(t);
  f.source.deliver([namespace('demo', 'ambient'), pod('web')]);
  await f.agent.idle();
  assert.equal(f.datapath.sweeps.length, 0, 'enrolled PERMISSIVE: nothing tightened');

  f.source.deliver([namespace('demo', 'ambient'), pod('web'), peerAuthentication('default', 'STRICT')]);
  await f.agent.idle();
  await eventuallySwept(f.datapath, 1);
  assert.equal(f.datapath.sweeps[0]?.inbound?.mode, 'STRICT');
  assert.equal(f.datapath.of('enroll').at(-1)?.pods[0]?.inbound?.mode, 'STRICT', 'the tighter mode was enrolled first');

  f.source.deliver([namespace('demo', 'ambient'), pod('web'), peerAuthentication('default', 'STRICT')]);
  await f.agent.idle();
  assert.equal(f.datapath.sweeps.length, 1, 'an unchanged mode is not swept again');
  assert.deepEqual((await f.agent.status()).strictSweeps, { closed: 0, failed: 0, recent: [] });
});

/** Sweeps run off the reconcile path: wait for them to be called (a few turns of the event loop). */
async function eventuallySwept(datapath: RecordingDatapath, n: number): Promise<void> {
  for (let i = 0; i < 100 && datapath.sweeps.length < n; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(datapath.sweeps.length, n);
}

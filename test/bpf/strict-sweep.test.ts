// The strict sweep on the real kernel: plaintext connections into a pod are
// established under PERMISSIVE, the pod is switched to STRICT and the sweep
// runs in the pod's namespace. The ones STRICT refuses are reset; the
// ztunnel's, the probe's, the port-level PERMISSIVE one and the pod's own
// outward connections carry on. Needs root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { run } from '../../lib/core/exec.ts';
import { BpfDatapath, type InboundEnforcement, type PodCapture, type SweptConnection } from '../../agent/bpf/datapath.ts';
import { sweepConfigCodec, SWEEP_OBJECT_FILE } from '../../agent/bpf/strict-sweep.ts';
import { ADDR, cannotRun, KernelSandbox, type LineProcess } from './harness.ts';
import { REPO } from './build.ts';

const skip = cannotRun();
const APP = 8080;
const PROBE = 8081;
const OVERRIDE = 8083;
const OUTSIDE = 9090;
/** How long a reset client may take to see its connection end: an event wait, not a measurement. */
const RESET_WAIT_MS = 10_000;

describe('eBPF strict sweep', { timeout: 180_000 }, () => {
  const sb = new KernelSandbox();
  let dp: BpfDatapath;
  let peer: LineProcess;
  let podClient: LineProcess;
  let connSeq = 0;

  const capture = (inbound: InboundEnforcement): PodCapture => ({ cgroupPath: sb.podCgroup, ips: [ADDR.pod4, ADDR.pod6], excludeOutboundPorts: [OUTSIDE], inbound });
  const open = async (from: string, host: string, port: number, proc = peer): Promise<{ conn: string; localPort: number }> => {
    const conn = `c${++connSeq}`;
    const r = await proc.request({ op: 'connect', conn, host, port, localAddress: from, timeoutMs: 5000 });
    assert.equal(r.error, undefined, `${from} → ${host}:${port} should connect: ${String(r.error)}`);
    return { conn, localPort: r.localPort as number };
  };
  const alive = async (c: { conn: string }, proc = peer): Promise<void> => {
    const r = await proc.request({ op: 'send', conn: c.conn, text: 'still there' });
    assert.equal((r.reply as Record<string, unknown> | undefined)?.echo, 'still there', `${c.conn} should still carry traffic: ${JSON.stringify(r)}`);
  };
  const reset = async (c: { conn: string }): Promise<void> => {
    const r = await peer.request({ op: 'ended', conn: c.conn, timeoutMs: RESET_WAIT_MS });
    assert.deepEqual(r.ended, true, `${c.conn} should have been ended`);
    assert.ok(r.error === 'ECONNRESET' || r.error === 'EPIPE', `${c.conn} ends with a reset, not ${String(r.error)}`);
  };
  const key = (c: SweptConnection): string => `${c.peer.ip}:${c.peer.port} → ${c.local.ip}:${c.local.port}`;

  before(async () => {
    if (!(await sb.prepare(skip))) return;
    await sb.addPodNetns();
    const peerCgroup = join(sb.cgroupRoot, 'peer');
    await sb.makeCgroup(peerCgroup);
    dp = await BpfDatapath.open({
      pinDir: sb.pinDir,
      captureIp4: ADDR.ztunnel4,
      captureIp6: ADDR.ztunnel6,
      inboundSourceIp4: ADDR.inbound4,
      inboundSourceIp6: ADDR.inbound6,
      probeSourceIp4: ADDR.node4,
      probeSourceIp6: ADDR.node6,
    });
    await dp.attachZtunnel(sb.ztunnelCgroup);
    await dp.enroll([capture({ mode: 'PERMISSIVE', probePorts: [PROBE] })]);
    const pod = sb.spawn(sb.containerCgroup, 'server-fixture.ts', [APP, PROBE, OVERRIDE].flatMap((port) => [`pod@${ADDR.pod4}:${port}`, `pod6@[${ADDR.pod6}]:${port}`]), sb.podNetns);
    const outside = sb.spawn(peerCgroup, 'server-fixture.ts', [`outside@${ADDR.other4}:${OUTSIDE}`]);
    const ztunnel = sb.spawn(sb.ztunnelCgroup, 'server-fixture.ts', [`ztunnel@${ADDR.ztunnel4}:15001`]);
    await Promise.all([pod, outside, ztunnel].map((p) => p.waitFor((m) => m.ready === true)));
    peer = sb.spawn(peerCgroup, 'client-fixture.ts');
    podClient = sb.spawn(sb.containerCgroup, 'client-fixture.ts', [], sb.podNetns);
  });

  after(async () => {
    await sb.cleanUp();
  });

  test('sweep_config matches the layout the agent writes', async (t) => {
    if (skip) return t.skip(skip);
    const { stdout } = await run('bpftool', ['btf', 'dump', 'file', join(REPO, 'build/bpf', SWEEP_OBJECT_FILE), '-j']);
    const types = (JSON.parse(stdout) as { types: { kind: string; name: string; size?: number; members?: { name: string; bits_offset: number }[] }[] }).types;
    const config = types.find((ty) => ty.kind === 'STRUCT' && ty.name === 'sweep_config');
    assert.deepEqual(
      { size: config?.size, members: Object.fromEntries((config?.members ?? []).map((m) => [m.name, m.bits_offset / 8])) },
      { size: sweepConfigCodec.layout.size, members: sweepConfigCodec.layout.members },
    );
  });

  test('switching to STRICT resets the plaintext connections STRICT refuses, and only those', async (t) => {
    if (skip) return t.skip(skip);
    // Admitted under PERMISSIVE.
    const plain4 = await open(ADDR.other4, ADDR.pod4, APP);
    const plain6 = await open(ADDR.other6, ADDR.pod6, APP);
    const nodeOnApp = await open(ADDR.node4, ADDR.pod4, APP);
    // Admitted under STRICT as well.
    const ztunnel4 = await open(ADDR.inbound4, ADDR.pod4, APP);
    const ztunnel6 = await open(ADDR.inbound6, ADDR.pod6, APP);
    const probe = await open(ADDR.node4, ADDR.pod4, PROBE);
    const override = await open(ADDR.other4, ADDR.pod4, OVERRIDE);
    // The pod's own: straight out (an excluded port), and captured to the ztunnel.
    const direct = await open(ADDR.pod4, ADDR.other4, OUTSIDE, podClient);
    const captured = await open(ADDR.pod4, ADDR.other4, 7000, podClient);

    const strict = capture({ mode: 'STRICT', portModes: { [OVERRIDE]: 'PERMISSIVE' }, probePorts: [PROBE] });
    await dp.enroll([strict]);
    const result = await dp.closeInadmissible(strict);

    assert.deepEqual(result.failed, []);
    assert.equal(result.skipped, undefined);
    assert.deepEqual(
      result.closed.map(key).sort(),
      [
        `${ADDR.other4}:${plain4.localPort} → ${ADDR.pod4}:${APP}`,
        `${ADDR.node4}:${nodeOnApp.localPort} → ${ADDR.pod4}:${APP}`,
        `${ADDR.other6}:${plain6.localPort} → ${ADDR.pod6}:${APP}`,
      ].sort(),
    );
    for (const c of [plain4, plain6, nodeOnApp]) await reset(c);
    for (const c of [ztunnel4, ztunnel6, probe, override]) await alive(c);
    for (const c of [direct, captured]) await alive(c, podClient);

    // The listeners stay: STRICT's admitted sources connect anew, and another sweep finds nothing.
    await alive(await open(ADDR.inbound4, ADDR.pod4, APP));
    assert.deepEqual((await dp.closeInadmissible(strict)).closed, []);
  });

  test('a port-level STRICT ends only that port\'s plaintext', async (t) => {
    if (skip) return t.skip(skip);
    await dp.enroll([capture({ mode: 'PERMISSIVE', probePorts: [PROBE] })]);
    const onApp = await open(ADDR.other4, ADDR.pod4, APP);
    const onOverride = await open(ADDR.other4, ADDR.pod4, OVERRIDE);
    const strictApp = capture({ mode: 'PERMISSIVE', portModes: { [APP]: 'STRICT' }, probePorts: [PROBE] });
    await dp.enroll([strictApp]);
    const result = await dp.closeInadmissible(strictApp);
    assert.deepEqual(result.closed.map(key), [`${ADDR.other4}:${onApp.localPort} → ${ADDR.pod4}:${APP}`]);
    await reset(onApp);
    await alive(onOverride);
  });

  test('a pod with no process has no namespace to sweep', async (t) => {
    if (skip) return t.skip(skip);
    const empty = join(sb.cgroupRoot, 'empty-pod');
    await sb.makeCgroup(empty);
    const pod: PodCapture = { cgroupPath: empty, ips: ['10.77.3.3'], excludeOutboundPorts: [], inbound: { mode: 'STRICT' } };
    await dp.enroll([pod]);
    assert.deepEqual(await dp.closeInadmissible(pod), { closed: [], failed: [], skipped: 'the pod has no process, so no network namespace to enter' });
    await dp.unenroll([empty]);
  });
});

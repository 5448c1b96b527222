// The kernel's source check on the real kernel: a pod in its own netns
// connects from its own address, or from a second address its netns has that
// is not the pod's (as a pod with NET_ADMIN, or IP_FREEBIND, could claim
// another pod's). Both are redirected; the second is marked, and the
// ztunnel's getsockname answers the mismatch marker (port 0, with the pod's
// own address) instead of the original destination. Needs root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../lib/core/exec.ts';
import { BpfDatapath } from '../../agent/bpf/datapath.ts';
import { cgroupId } from '../../agent/bpf/cgroup.ts';
import { ORIG_DST_FLAGS } from '../../agent/bpf/codec.ts';
import { dumpMap } from '../../agent/bpf/maps.ts';
import { ADDR, cannotRun, KernelSandbox, type LineProcess } from './harness.ts';

const skip = cannotRun();
/** On the pod's interface, but not the pod's address: what the agent wrote to the pods map is ADDR.pod4/pod6. */
const FOREIGN4 = '10.77.2.3';
const FOREIGN6 = 'fd77:2::3';

describe('eBPF source check', { timeout: 180_000 }, () => {
  const sb = new KernelSandbox();
  let dp: BpfDatapath;
  let client: LineProcess;
  let podId: bigint;
  let connSeq = 0;

  /** Bound explicitly: with two addresses on its interface, the kernel would pick either as the source. */
  const connect = async (host: string, port: number, localAddress: string): Promise<{ r: Record<string, unknown>; greeting: Record<string, unknown> }> => {
    const r = await client.request({ op: 'connect', conn: `c${++connSeq}`, host, port, localAddress });
    assert.equal(r.error, undefined, `connect ${host}:${port} from ${localAddress}: ${String(r.error)}`);
    return { r, greeting: r.greeting as Record<string, unknown> };
  };
  const seenByZtunnel = (g: Record<string, unknown>): unknown[] => [g.server, g.localAddress, g.localPort, g.remoteAddress];
  const recordOf = async (r: Record<string, unknown>) =>
    (await dumpMap(sb.pinDir, 'flow_dst')).find((e) => e.key.address === r.localAddress && e.key.port === r.localPort)?.value;
  const enrollPod = async (ips: string[]): Promise<void> => assert.deepEqual(await dp.enroll([{ cgroupPath: sb.podCgroup, ips, excludeOutboundPorts: [] }]), [], 'the pod fits');

  before(async () => {
    if (!(await sb.prepare(skip))) return;
    await sb.addPodNetns();
    await run('ip', ['-n', sb.podNetns, 'addr', 'add', `${FOREIGN4}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', sb.podNetns, '-6', 'addr', 'add', `${FOREIGN6}/64`, 'dev', 'eth0', 'nodad']);
    dp = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    await dp.attachZtunnel(sb.ztunnelCgroup);
    podId = await cgroupId(sb.podCgroup);
    await enrollPod([ADDR.pod4, ADDR.pod6]);
    const ztunnel = sb.spawn(sb.ztunnelCgroup, 'server-fixture.ts', [`ztunnel@${ADDR.ztunnel4}:15001`, `ztunnel6@[${ADDR.ztunnel6}]:15001`]);
    await ztunnel.waitFor((m) => m.ready === true);
    client = sb.spawn(sb.containerCgroup, 'client-fixture.ts', [], sb.podNetns);
  });

  after(() => sb.cleanUp());

  test('IPv4: from the pod\'s own address, the ztunnel sees the original destination', async (t) => {
    if (skip) return t.skip(skip);
    const { r, greeting } = await connect(ADDR.dest4, 8080, ADDR.pod4);
    assert.deepEqual(seenByZtunnel(greeting), ['ztunnel', ADDR.dest4, 8080, ADDR.pod4]);
    assert.deepEqual(await recordOf(r), { address: ADDR.dest4, port: 8080, family: 4, flags: 0, cgroupId: podId });
  });

  test('IPv4: from an address that is not the pod\'s, redirected but marked: port 0 and the pod\'s own address', async (t) => {
    if (skip) return t.skip(skip);
    const { r, greeting } = await connect(ADDR.dest4, 8080, FOREIGN4);
    assert.deepEqual(seenByZtunnel(greeting), ['ztunnel', ADDR.pod4, 0, FOREIGN4]);
    assert.deepEqual([r.remoteAddress, r.remotePort], [ADDR.dest4, 8080], 'the pod still sees its original destination');
    assert.deepEqual(await recordOf(r), { address: ADDR.dest4, port: 8080, family: 4, flags: ORIG_DST_FLAGS.sourceMismatch, cgroupId: podId });
  });

  test('IPv6: own address carried, another address marked', async (t) => {
    if (skip) return t.skip(skip);
    const own = await connect(ADDR.dest6, 8080, ADDR.pod6);
    assert.deepEqual(seenByZtunnel(own.greeting), ['ztunnel6', ADDR.dest6, 8080, ADDR.pod6]);
    const foreign = await connect(ADDR.dest6, 8080, FOREIGN6);
    assert.deepEqual(seenByZtunnel(foreign.greeting), ['ztunnel6', ADDR.pod6, 0, FOREIGN6]);
    assert.deepEqual(await recordOf(foreign.r), { address: ADDR.dest6, port: 8080, family: 6, flags: ORIG_DST_FLAGS.sourceMismatch, cgroupId: podId });
  });

  test('a dual-stack socket bound to a v4-mapped address that is not the pod\'s is marked too', async (t) => {
    if (skip) return t.skip(skip);
    const { greeting } = await connect(`::ffff:${ADDR.dest4}`, 8080, `::ffff:${FOREIGN4}`);
    assert.deepEqual(seenByZtunnel(greeting), ['ztunnel', ADDR.pod4, 0, FOREIGN4]);
  });

  test('a pod with no address of the family: every connection of it is marked, with the unspecified address', async (t) => {
    if (skip) return t.skip(skip);
    await enrollPod([ADDR.pod4]);
    t.after(() => enrollPod([ADDR.pod4, ADDR.pod6]));
    const { greeting } = await connect(ADDR.dest6, 8080, ADDR.pod6);
    assert.deepEqual(seenByZtunnel(greeting), ['ztunnel6', '::', 0, ADDR.pod6]);
  });

  test('a connect straight to the capture address has no record: the ztunnel sees its own listener address', async (t) => {
    if (skip) return t.skip(skip);
    const { greeting } = await connect(ADDR.ztunnel4, 15001, FOREIGN4);
    assert.deepEqual(seenByZtunnel(greeting), ['ztunnel', ADDR.ztunnel4, 15001, FOREIGN4]);
  });
});

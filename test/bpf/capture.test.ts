// The capture path on the real kernel: pod connects land at the ztunnel's
// outbound listener, which reads the original destination from
// socket.localAddress/localPort, while the pod still sees that destination as
// its peer. Runs in a per-run netns and cgroups; needs root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BpfDatapath } from '../../agent/bpf/datapath.ts';
import { cgroupId } from '../../agent/bpf/cgroup.ts';
import { batch } from '../../agent/bpf/bpftool.ts';
import { deleteCommand, dumpMap, updateCommand } from '../../agent/bpf/maps.ts';
import { POD_PROGRAMS, PROGRAMS, ZTUNNEL_PROGRAMS } from '../../agent/bpf/objects.ts';
import { removeCgroup } from '../../sandbox/cgroup.ts';
import { eventually } from '../support/eventually.ts';
import { ADDR, cannotRun, cgroupPrograms, KernelSandbox, type LineProcess } from './harness.ts';

const skip = cannotRun();
const EXCLUDED = 5432;
const POD_NAMES = POD_PROGRAMS.map((p) => p.name).sort();
const ZTUNNEL_NAMES = ZTUNNEL_PROGRAMS.map((p) => p.name).sort();

describe('eBPF capture', { timeout: 180_000 }, () => {
  const sb = new KernelSandbox();
  let dp: BpfDatapath;
  let client: LineProcess;
  let container: LineProcess;
  let connSeq = 0;

  const connect = async (proc: LineProcess, host: string, port: number): Promise<{ conn: string; r: Record<string, unknown>; greeting: Record<string, unknown> }> => {
    const conn = `c${++connSeq}`;
    const r = await proc.request({ op: 'connect', conn, host, port });
    assert.equal(r.error, undefined, `connect ${host}:${port}: ${String(r.error)}`);
    return { conn, r, greeting: r.greeting as Record<string, unknown> };
  };
  /** In this one namespace a redirected connect's source is the ztunnel's address: it is local, so the kernel picks it. */
  const POD_IPS = [ADDR.ztunnel4, ADDR.ztunnel6];
  const enrollPod = async (d: BpfDatapath, ports = [EXCLUDED]): Promise<void> => assert.deepEqual(await d.enroll([{ cgroupPath: sb.podCgroup, ips: POD_IPS, excludeOutboundPorts: ports }]), [], 'the pod fits');

  before(async () => {
    if (!(await sb.prepare(skip))) return;
    dp = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    await dp.attachZtunnel(sb.ztunnelCgroup);
    await enrollPod(dp);
    const server = sb.spawn(sb.ztunnelCgroup, 'server-fixture.ts', [
      `ztunnel@${ADDR.ztunnel4}:15001`,
      `ztunnel6@[${ADDR.ztunnel6}]:15001`,
      `ztunnel-other@${ADDR.ztunnel4}:8081`,
      `direct@${ADDR.dest4}:8080`,
      `direct6@[${ADDR.dest6}]:8080`,
      `excluded@${ADDR.dest4}:${EXCLUDED}`,
      'loopback@127.0.0.1:9000',
      `udp:udp@${ADDR.dest4}:5353`,
    ]);
    await server.waitFor((m) => m.ready === true);
    client = sb.spawn(sb.podCgroup, 'client-fixture.ts');
    container = sb.spawn(sb.containerCgroup, 'client-fixture.ts');
  });

  after(() => sb.cleanUp());

  test('IPv4: redirected to the ztunnel, which sees the original destination', async (t) => {
    if (skip) return t.skip(skip);
    const { conn, r, greeting } = await connect(client, ADDR.dest4, 8080);
    assert.deepEqual([greeting.server, greeting.localAddress, greeting.localPort], ['ztunnel', ADDR.dest4, 8080]);
    assert.deepEqual([r.remoteAddress, r.remotePort], [ADDR.dest4, 8080], 'getpeername reports the original destination');
    assert.deepEqual([greeting.remoteAddress, greeting.remotePort], [r.localAddress, r.localPort], 'the ztunnel peer is the pod side');

    const isThisFlow = (e: { key: { address: string; port: number } }): boolean => e.key.address === r.localAddress && e.key.port === r.localPort;
    const flow = (await dumpMap(sb.pinDir, 'flow_dst')).find(isThisFlow);
    assert.deepEqual(flow?.value, { address: ADDR.dest4, port: 8080, family: 4, flags: 0, cgroupId: await cgroupId(sb.podCgroup) });

    await client.request({ op: 'close', conn });
    await eventually('the flow_dst entry to be removed at TCP close', async () => !(await dumpMap(sb.pinDir, 'flow_dst')).some(isThisFlow));
  });

  test('a container in a child cgroup of the pod is captured', async (t) => {
    if (skip) return t.skip(skip);
    const { r, greeting } = await connect(container, ADDR.dest4, 8080);
    assert.deepEqual([greeting.server, greeting.localAddress, greeting.localPort], ['ztunnel', ADDR.dest4, 8080]);
    assert.deepEqual([r.remoteAddress, r.remotePort], [ADDR.dest4, 8080]);
  });

  test('IPv6: redirected to the ztunnel, which sees the original destination', async (t) => {
    if (skip) return t.skip(skip);
    const { r, greeting } = await connect(client, ADDR.dest6, 8080);
    assert.deepEqual([greeting.server, greeting.localAddress, greeting.localPort], ['ztunnel6', ADDR.dest6, 8080]);
    assert.deepEqual([r.remoteAddress, r.remotePort], [ADDR.dest6, 8080]);
  });

  test('dual-stack socket to a v4-mapped address goes to the IPv4 ztunnel', async (t) => {
    if (skip) return t.skip(skip);
    const { r, greeting } = await connect(client, `::ffff:${ADDR.dest4}`, 8080);
    assert.deepEqual([greeting.server, greeting.localAddress, greeting.localPort], ['ztunnel', ADDR.dest4, 8080]);
    assert.deepEqual([r.remoteAddress, r.remotePort], [`::ffff:${ADDR.dest4}`, 8080]);
  });

  test('excluded port, loopback, the ztunnel address and UDP go direct', async (t) => {
    if (skip) return t.skip(skip);
    const excluded = await connect(client, ADDR.dest4, EXCLUDED);
    assert.deepEqual([excluded.greeting.server, excluded.greeting.localPort, excluded.r.remotePort], ['excluded', EXCLUDED, EXCLUDED]);
    const loopback = await connect(client, '127.0.0.1', 9000);
    assert.equal(loopback.greeting.server, 'loopback');
    const ztunnel = await connect(client, ADDR.ztunnel4, 8081);
    assert.equal(ztunnel.greeting.server, 'ztunnel-other');
    const udp = await client.request({ op: 'udp', host: ADDR.dest4, port: 5353, text: 'hi' });
    assert.deepEqual(udp.reply, { server: 'udp', text: 'hi' });
  });

  test('enroll is idempotent and keeps excluded ports in step', async (t) => {
    if (skip) return t.skip(skip);
    const podId = await cgroupId(sb.podCgroup);
    const portsOf = async (): Promise<number[]> =>
      (await dumpMap(sb.pinDir, 'excluded_ports')).filter((e) => e.key.cgroupId === podId).map((e) => e.key.port).sort((a, b) => a - b);

    await enrollPod(dp, [EXCLUDED, 6000]);
    assert.deepEqual(await portsOf(), [EXCLUDED, 6000]);
    await enrollPod(dp);
    assert.deepEqual(await portsOf(), [EXCLUDED]);

    const progs = await cgroupPrograms(sb.podCgroup);
    assert.deepEqual(progs.map((p) => p.name).sort(), POD_NAMES, 'each pod program attached once');
    assert.deepEqual((await dp.attachedTo(sb.podCgroup)).sort(), POD_NAMES);
    assert.deepEqual((await dp.attachedTo(sb.ztunnelCgroup)).sort(), ZTUNNEL_NAMES);
    assert.deepEqual(await dp.attachedTo(sb.containerCgroup), [], 'containers inherit, nothing attached directly');
    assert.deepEqual(await dp.enrolledCgroupIds(), [podId]);
  });

  test('a datapath whose mirror went stale (an entry deleted behind it) re-reads the maps and retries', async (t) => {
    if (skip) return t.skip(skip);
    const podId = await cgroupId(sb.podCgroup);
    await enrollPod(dp, [EXCLUDED, 6000]);
    await batch([deleteCommand(sb.pinDir, 'excluded_ports', { cgroupId: podId, port: 6000 })]);
    // The planned delete of 6000 now fails the batch; the retry plans from the kernel.
    await enrollPod(dp);
    const ports = (await dumpMap(sb.pinDir, 'excluded_ports')).filter((e) => e.key.cgroupId === podId).map((e) => e.key.port);
    assert.deepEqual(ports, [EXCLUDED]);
    assert.deepEqual((await cgroupPrograms(sb.podCgroup)).map((p) => p.name).sort(), POD_NAMES, 'each pod program attached once');
  });

  test('a re-opened datapath that learnt the cgroup tree enrolls without walking it or attaching twice', async (t) => {
    if (skip) return t.skip(skip);
    const again = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    await again.learnAttachments(sb.cgroupRoot);
    await enrollPod(again, [EXCLUDED, 7000]);
    await enrollPod(again);
    assert.deepEqual((await cgroupPrograms(sb.podCgroup)).map((p) => p.name).sort(), POD_NAMES, 'each pod program attached once');
    const fresh = join(sb.cgroupRoot, 'learnt-later');
    await sb.makeCgroup(fresh);
    t.after(() => removeCgroup(fresh));
    await again.enroll([{ cgroupPath: fresh, ips: [], excludeOutboundPorts: [] }]);
    assert.deepEqual((await cgroupPrograms(fresh)).map((p) => p.name).sort(), POD_NAMES, 'a cgroup made after the walk gets its programs');
    await again.unenroll([fresh]);
    assert.deepEqual(await cgroupPrograms(fresh), []);
    assert.deepEqual(await dp.enrolledCgroupIds(), [await cgroupId(sb.podCgroup)]);
  });

  test('unenroll: new connects go direct, an open redirected connection keeps working', async (t) => {
    if (skip) return t.skip(skip);
    const podId = await cgroupId(sb.podCgroup);
    const open = await connect(client, ADDR.dest4, 8080);
    assert.equal(open.greeting.server, 'ztunnel');

    await dp.unenroll([sb.podCgroup]);
    assert.deepEqual(await dp.enrolledCgroupIds(), []);
    assert.deepEqual(await dp.attachedTo(sb.podCgroup), []);
    assert.ok(!(await dumpMap(sb.pinDir, 'excluded_ports')).some((e) => e.key.cgroupId === podId));

    const fresh = await connect(client, ADDR.dest4, 8080);
    assert.deepEqual([fresh.greeting.server, fresh.r.remoteAddress], ['direct', ADDR.dest4]);
    const echo = await client.request({ op: 'send', conn: open.conn, text: 'still there' });
    assert.deepEqual(echo.reply, { server: 'ztunnel', echo: 'still there' });

    await enrollPod(dp);
    assert.equal((await connect(client, ADDR.dest4, 8080)).greeting.server, 'ztunnel');
  });

  test('unenroll tolerates cgroups that are already gone', async (t) => {
    if (skip) return t.skip(skip);
    const known = join(sb.cgroupRoot, 'gone-known');
    const unknown = join(sb.cgroupRoot, 'gone-unknown');
    await sb.makeCgroup(known);
    await sb.makeCgroup(unknown);
    await dp.enroll([{ cgroupPath: known, ips: [], excludeOutboundPorts: [1] }, { cgroupPath: unknown, ips: [], excludeOutboundPorts: [] }]);
    const ids = [await cgroupId(known), await cgroupId(unknown)];
    await removeCgroup(known);
    await removeCgroup(unknown);

    await dp.unenroll([known]);
    // A second handle never saw this cgroup's id: it prunes entries of every vanished cgroup.
    const other = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    await other.unenroll([unknown]);
    const enrolled = await dp.enrolledCgroupIds();
    assert.ok(ids.every((id) => !enrolled.includes(id)));
    assert.deepEqual(enrolled, [await cgroupId(sb.podCgroup)]);
    assert.ok(!(await dumpMap(sb.pinDir, 'excluded_ports')).some((e) => ids.includes(e.key.cgroupId)));
  });

  test('re-open on the same pin dir re-adopts without loading or attaching twice', async (t) => {
    if (skip) return t.skip(skip);
    const before = await dp.status();
    const again = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    const status = await again.status();
    assert.equal(status.adopted, true);
    assert.deepEqual(status.programs, before.programs, 'same program ids');
    await again.attachZtunnel(sb.ztunnelCgroup);
    await enrollPod(again);

    const ids = (await cgroupPrograms(sb.podCgroup)).map((p) => p.id).sort();
    const ours = before.programs.filter((p) => POD_NAMES.includes(p.name)).map((p) => p.id).sort();
    assert.deepEqual(ids, ours, 'bpftool cgroup show: each pod program once');
    assert.deepEqual((await cgroupPrograms(sb.ztunnelCgroup)).map((p) => p.name).sort(), ZTUNNEL_NAMES, 'bpftool cgroup show: each ztunnel program once');
    const { greeting } = await connect(client, ADDR.dest4, 8080);
    assert.deepEqual([greeting.server, greeting.localAddress], ['ztunnel', ADDR.dest4]);
  });

  test('a pod the excluded_ports table cannot hold is not written at all, and a batch a full table stopped partway is undone', async (t) => {
    if (skip) return t.skip(skip);
    const fresh = join(sb.cgroupRoot, 'no-room');
    await sb.makeCgroup(fresh);
    t.after(() => removeCgroup(fresh));
    const freshId = await cgroupId(fresh);
    const capacity = (await dp.status()).maps.find((m) => m.name === 'excluded_ports')!.maxEntries;
    // Another pod's entries, written behind dp's back: no cgroup has this id.
    const filler = Array.from({ length: capacity - (await dumpMap(sb.pinDir, 'excluded_ports')).length - 2 }, (_, i) => ({ cgroupId: 4_000_000_000n, port: i + 1 }));
    await batch(filler.map((key) => updateCommand(sb.pinDir, 'excluded_ports', key, true)));
    t.after(() => batch(filler.map((key) => deleteCommand(sb.pinDir, 'excluded_ports', key))));
    const pod = { cgroupPath: fresh, ips: [], excludeOutboundPorts: [1, 2, 3] };
    const held = async (): Promise<unknown[]> => [
      (await dumpMap(sb.pinDir, 'pods')).filter((e) => e.key === freshId),
      (await dumpMap(sb.pinDir, 'excluded_ports')).filter((e) => e.key.cgroupId === freshId),
      await cgroupPrograms(fresh),
    ];
    const noRoom = [{ cgroupPath: fresh, map: 'excluded_ports', needed: 3, free: 2, capacity }];

    // Opened after the fill, its mirror sees room for two: the pod is refused before anything is written.
    const seeing = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
    assert.deepEqual(await seeing.enroll([pod]), noRoom);
    assert.deepEqual(await held(), [[], [], []]);

    // dp's mirror predates the fill: the kernel takes two ports and refuses the third. Those two are
    // undone, the maps read again, and the pod refused as above.
    assert.deepEqual(await dp.enroll([pod]), noRoom);
    assert.deepEqual(await held(), [[], [], []], 'no part of the pod is left in the kernel');
    assert.deepEqual(await dp.enrolledCgroupIds(), [await cgroupId(sb.podCgroup)]);
  });

  test('status reports programs and map occupancy', async (t) => {
    if (skip) return t.skip(skip);
    const status = await dp.status();
    assert.deepEqual(status.programs.map((p) => p.name), PROGRAMS.map((p) => p.name));
    const maps = Object.fromEntries(status.maps.map((m) => [m.name, m]));
    assert.deepEqual(maps.pods, { name: 'pods', entries: 1, maxEntries: 4096 });
    assert.deepEqual(maps.node_config, { name: 'node_config', entries: 1, maxEntries: 1 });
    assert.equal(maps.flow_dst?.maxEntries, 65536);
    assert.ok((maps.flow_dst?.entries ?? 0) >= 1, 'open connections have flow entries');
  });

  test('destroy removes the pins', async (t) => {
    if (skip) return t.skip(skip);
    await BpfDatapath.destroy(sb.pinDir);
    await assert.rejects(dp.enrolledCgroupIds(), { code: 'MESHLET_BPF' });
  });
});

// Inbound enforcement on the real kernel: a pod in its own netns and cgroup
// listens; clients in the node netns connect from the addresses the kernel
// judges (another host, the ztunnel's inbound source, the node). Dropped
// connects time out and show up as drop events and counts. Needs root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { eventually } from '../support/eventually.ts';
import { BpfDatapath, type DatapathOptions, type DropEvent, type DropWatch, type InboundEnforcement } from '../../agent/bpf/datapath.ts';
import { bpftool } from '../../agent/bpf/bpftool.ts';
import { cgroupId } from '../../agent/bpf/cgroup.ts';
import { dumpMap } from '../../agent/bpf/maps.ts';
import { mapPin, POD_PROGRAMS } from '../../agent/bpf/objects.ts';
import { ADDR, cannotRun, cgroupPrograms, KernelSandbox, type LineProcess } from './harness.ts';

const skip = cannotRun();
const APP = 8080;
const PROBE = 8081;
const LOOPBACK = 8082;
const OVERRIDE = 8083;
const EXCLUDED = 9090;
/** Long enough for a local handshake many times over, short enough to keep the suite quick. */
const DROP_TIMEOUT_MS = 1500;
const POD_NAMES = POD_PROGRAMS.map((p) => p.name).sort();

describe('eBPF inbound enforcement', { timeout: 180_000 }, () => {
  const sb = new KernelSandbox();
  const drops: DropEvent[] = [];
  const watchErrors: Error[] = [];
  let opts: DatapathOptions;
  let dp: BpfDatapath;
  let watch: DropWatch | undefined;
  let podId: bigint;
  let peer: LineProcess;
  let podClient: LineProcess;
  let connSeq = 0;

  const enroll = async (inbound?: InboundEnforcement): Promise<void> => assert.deepEqual(await dp.enroll([{ cgroupPath: sb.podCgroup, ips: [ADDR.pod4, ADDR.pod6], excludeOutboundPorts: [EXCLUDED], ...(inbound ? { inbound } : {}) }]), [], 'the pod fits');
  const attempt = async (from: string, host: string, port: number, proc = peer): Promise<Record<string, unknown>> =>
    proc.request({ op: 'connect', conn: `c${++connSeq}`, host, port, localAddress: from, timeoutMs: DROP_TIMEOUT_MS });
  const admitted = async (from: string, host: string, port: number): Promise<void> => {
    const r = await attempt(from, host, port);
    assert.equal(r.error, undefined, `${from} → ${host}:${port} should connect: ${String(r.error)}`);
    assert.equal((r.greeting as Record<string, unknown>).remoteAddress, from, 'the pod sees the real source');
  };
  /** The connect times out and its drop event (matched by source port) arrives. */
  const dropped = async (from: string, host: string, port: number): Promise<void> => {
    const r = await attempt(from, host, port);
    assert.equal(r.error, 'timeout', `${from} → ${host}:${port} should be dropped`);
    const sport = r.localPort;
    const seen = () => drops.map((d) => `${d.source.ip}:${d.source.port} → ${d.destination.ip}:${d.destination.port}`).join(', ') || 'none';
    const e = await eventually(`the drop event for ${from}:${String(sport)} → ${host}:${port}`, () => {
      const event = drops.find((d) => d.source.port === sport && d.source.ip === from);
      if (event) return event;
      throw new Error(`seen: ${seen()}; watch errors: ${watchErrors.map((w) => w.message).join('; ') || 'none'}`);
    }, 3000);
    assert.deepEqual({ ...e, at: undefined }, { cgroupId: podId, source: { ip: from, port: sport }, destination: { ip: host, port }, reason: 'not_from_ztunnel', at: undefined });
    assert.ok(e.at instanceof Date);
  };
  const entriesOf = async (name: 'port_mode' | 'probe_ports'): Promise<string[]> =>
    (await dumpMap(sb.pinDir, name))
      .filter((e) => e.key.cgroupId === podId)
      .map((e) => `${e.key.port}=${String(e.value)}`)
      .sort();

  before(async () => {
    if (!(await sb.prepare(skip))) return;
    await sb.addPodNetns();
    const peerCgroup = join(sb.cgroupRoot, 'peer');
    await sb.makeCgroup(peerCgroup);
    opts = {
      pinDir: sb.pinDir,
      captureIp4: ADDR.ztunnel4,
      captureIp6: ADDR.ztunnel6,
      inboundSourceIp4: ADDR.inbound4,
      inboundSourceIp6: ADDR.inbound6,
      probeSourceIp4: ADDR.node4,
      probeSourceIp6: ADDR.node6,
    };
    dp = await BpfDatapath.open(opts);
    // Started early: bpftool needs a moment before it receives events.
    watch = dp.watchDrops((e) => drops.push(e), (err) => watchErrors.push(err));
    await dp.attachZtunnel(sb.ztunnelCgroup);
    podId = await cgroupId(sb.podCgroup);
    await enroll({ mode: 'STRICT', portModes: { [OVERRIDE]: 'PERMISSIVE' }, probePorts: [PROBE] });

    const pod = sb.spawn(
      sb.containerCgroup,
      'server-fixture.ts',
      [APP, PROBE, OVERRIDE].flatMap((port) => [`pod@${ADDR.pod4}:${port}`, `pod6@[${ADDR.pod6}]:${port}`]).concat(`loopback@127.0.0.1:${LOOPBACK}`),
      sb.podNetns,
    );
    const outside = sb.spawn(peerCgroup, 'server-fixture.ts', [`outside@${ADDR.other4}:${EXCLUDED}`, `outside6@[${ADDR.other6}]:${EXCLUDED}`, `udp:udp@${ADDR.other4}:5353`]);
    const ztunnel = sb.spawn(sb.ztunnelCgroup, 'server-fixture.ts', [`ztunnel@${ADDR.ztunnel4}:15001`]);
    await Promise.all([pod, outside, ztunnel].map((p) => p.waitFor((m) => m.ready === true)));
    peer = sb.spawn(peerCgroup, 'client-fixture.ts');
    podClient = sb.spawn(sb.containerCgroup, 'client-fixture.ts', [], sb.podNetns);
  });

  after(async () => {
    watch?.stop();
    await sb.cleanUp();
  });

  test('STRICT: a connect from another address is dropped, counted and reported (IPv4, IPv6)', async (t) => {
    if (skip) return t.skip(skip);
    await dropped(ADDR.other4, ADDR.pod4, APP);
    await dropped(ADDR.other6, ADDR.pod6, APP);
    assert.ok(((await dp.dropCounts()).get(podId) ?? 0n) >= 2n);
    assert.deepEqual(watchErrors, []);
  });

  test('STRICT: the ztunnel inbound source address and loopback are admitted', async (t) => {
    if (skip) return t.skip(skip);
    await admitted(ADDR.inbound4, ADDR.pod4, APP);
    await admitted(ADDR.inbound6, ADDR.pod6, APP);
    const r = await attempt('127.0.0.1', '127.0.0.1', LOOPBACK, podClient);
    assert.equal((r.greeting as Record<string, unknown> | undefined)?.server, 'loopback');
  });

  test('STRICT: the node address is admitted on probe ports only', async (t) => {
    if (skip) return t.skip(skip);
    await admitted(ADDR.node4, ADDR.pod4, PROBE);
    await admitted(ADDR.node6, ADDR.pod6, PROBE);
    await dropped(ADDR.node4, ADDR.pod4, APP);
  });

  test('a port-level PERMISSIVE override admits anyone on that port', async (t) => {
    if (skip) return t.skip(skip);
    await admitted(ADDR.other4, ADDR.pod4, OVERRIDE);
    await admitted(ADDR.other6, ADDR.pod6, OVERRIDE);
  });

  test('STRICT: connections the pod opens itself work (replies are not judged), UDP too', async (t) => {
    if (skip) return t.skip(skip);
    const direct = await attempt(ADDR.pod4, ADDR.other4, EXCLUDED, podClient);
    assert.deepEqual([direct.error, (direct.greeting as Record<string, unknown>).server], [undefined, 'outside']);
    const direct6 = await attempt(ADDR.pod6, ADDR.other6, EXCLUDED, podClient);
    assert.deepEqual([direct6.error, (direct6.greeting as Record<string, unknown>).server], [undefined, 'outside6']);
    const captured = await attempt(ADDR.pod4, ADDR.other4, 7000, podClient);
    assert.deepEqual([captured.error, (captured.greeting as Record<string, unknown>).server], [undefined, 'ztunnel']);
    const udp = await podClient.request({ op: 'udp', host: ADDR.other4, port: 5353, text: 'hi' });
    assert.deepEqual(udp.reply, { server: 'udp', text: 'hi' });
  });

  test('enroll updates modes in place: PERMISSIVE with a STRICT port, stale entries go', async (t) => {
    if (skip) return t.skip(skip);
    assert.deepEqual(await entriesOf('port_mode'), [`${OVERRIDE}=PERMISSIVE`]);
    assert.deepEqual(await entriesOf('probe_ports'), [`${PROBE}=true`]);

    await enroll({ mode: 'PERMISSIVE', portModes: { [PROBE]: 'STRICT' } });
    assert.deepEqual(await entriesOf('port_mode'), [`${PROBE}=STRICT`]);
    assert.deepEqual(await entriesOf('probe_ports'), []);
    await admitted(ADDR.other4, ADDR.pod4, APP);
    await dropped(ADDR.node4, ADDR.pod4, PROBE);

    await enroll({ mode: 'PERMISSIVE' });
    assert.deepEqual(await entriesOf('port_mode'), []);
    await admitted(ADDR.other4, ADDR.pod4, PROBE);
    await admitted(ADDR.other6, ADDR.pod6, APP);

    await enroll({ mode: 'STRICT', probePorts: [PROBE] });
    await dropped(ADDR.other4, ADDR.pod4, APP);
    assert.deepEqual((await cgroupPrograms(sb.podCgroup)).map((p) => p.name).sort(), POD_NAMES, 'each pod program, ml_ingress included, attached once');
  });

  test('a re-opened datapath (agent restart) adopts the pins and keeps enforcing', async (t) => {
    if (skip) return t.skip(skip);
    watch?.stop();
    dp = await BpfDatapath.open(opts);
    assert.equal((await dp.status()).adopted, true);
    // No wait for the new watch to be reading: each SYN retransmission of the
    // dropped connect is dropped and reported again, and dropped() waits for one.
    watch = dp.watchDrops((e) => drops.push(e), (err) => watchErrors.push(err));
    await enroll({ mode: 'STRICT', probePorts: [PROBE] });
    await dropped(ADDR.other4, ADDR.pod4, APP);
    await admitted(ADDR.node4, ADDR.pod4, PROBE);
    assert.deepEqual((await cgroupPrograms(sb.podCgroup)).map((p) => p.name).sort(), POD_NAMES, 'each pod program attached once after the restart');
  });

  test('unenroll removes enforcement and the pod entries', async (t) => {
    if (skip) return t.skip(skip);
    await enroll({ mode: 'STRICT', portModes: { [OVERRIDE]: 'PERMISSIVE' }, probePorts: [PROBE] });
    await dp.unenroll([sb.podCgroup]);
    assert.deepEqual(await dp.attachedTo(sb.podCgroup), [], 'every pod program detached, ml_ingress included');
    assert.deepEqual(await entriesOf('port_mode'), []);
    assert.deepEqual(await entriesOf('probe_ports'), []);
    assert.equal((await dp.dropCounts()).has(podId), false);
    await admitted(ADDR.other4, ADDR.pod4, APP);
    await admitted(ADDR.other6, ADDR.pod6, APP);
  });

  test('pins from another build are refused with instructions', async (t) => {
    if (skip) return t.skip(skip);
    const pinDir = join('/sys/fs/bpf', sb.prefix, 'stale');
    await BpfDatapath.open({ ...opts, pinDir });
    // An older layout: node_config without the inbound addresses, no drop_events.
    await bpftool(['map', 'create', `${pinDir}/maps/node_config_old`, 'type', 'array', 'key', '4', 'value', '24', 'entries', '1', 'name', 'node_config']);
    await rm(mapPin(pinDir, 'node_config'));
    await rename(`${pinDir}/maps/node_config_old`, mapPin(pinDir, 'node_config'));
    await assert.rejects(BpfDatapath.open({ ...opts, pinDir }), { code: 'MESHLET_BPF', message: /node_config with key\/value sizes 4\/24 .*meshlet sandbox down.*rm -r/s });
    await rm(mapPin(pinDir, 'drop_events'));
    await assert.rejects(BpfDatapath.open({ ...opts, pinDir }), { code: 'MESHLET_BPF', message: /lacks maps\/drop_events.*meshlet sandbox down/s });
  });
});

// Uninstall: the agent detaches its programs from every pod cgroup and the
// ztunnel's, and removes its pins, so the kernel holds nothing of meshlet.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BpfDatapath } from '../../agent/bpf/datapath.ts';
import { bpftoolJson } from '../../agent/bpf/bpftool.ts';
import { ADDR, cannotRun, cgroupPrograms, KernelSandbox } from './harness.ts';

const skip = cannotRun();
const sb = new KernelSandbox();
let ran = false;

before(async () => {
  ran = await sb.prepare(skip);
});
after(() => sb.cleanUp());

test('removeFromKernel detaches every program from the pods and the ztunnel, and no program or pin is left', { skip: skip ?? false }, async () => {
  assert.ok(ran);
  const other = join(sb.cgroupRoot, 'pod-2');
  await sb.makeCgroup(other);
  const dp = await BpfDatapath.open({ pinDir: sb.pinDir, captureIp4: ADDR.ztunnel4, captureIp6: ADDR.ztunnel6 });
  await dp.attachZtunnel(sb.ztunnelCgroup);
  assert.deepEqual(await dp.enroll([sb.podCgroup, other].map((cgroupPath) => ({ cgroupPath, ips: [], excludeOutboundPorts: [] }))), []);
  const progIds = (await dp.status()).programs.map((p) => p.id);
  const attached = [sb.podCgroup, other, sb.ztunnelCgroup];
  const before = (await Promise.all(attached.map(cgroupPrograms))).map((progs) => progs.filter((p) => progIds.includes(p.id)).length);
  for (const [i, n] of before.entries()) assert.ok(n > 0, `${attached[i]} has programs before`);

  const removed = await dp.removeFromKernel([sb.cgroupRoot, sb.ztunnelCgroup]);

  assert.equal(removed, before.reduce((a, b) => a + b), 'every attachment counted');
  for (const cg of attached) assert.deepEqual(await cgroupPrograms(cg), [], `${cg} has no program left`);
  await assert.rejects(stat(sb.pinDir), { code: 'ENOENT' }, 'the pins are gone');
  const live = new Set(((await bpftoolJson(['prog', 'show'])) as { id: number }[]).map((p) => p.id));
  assert.deepEqual(progIds.filter((id) => live.has(id)), [], 'the kernel freed every program');
});

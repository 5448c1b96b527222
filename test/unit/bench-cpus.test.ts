// The bench's CPU plan: each node's client or server and its proxy on CPUs of their own, the same on every path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCpuList, pinnedArgv, planCpus } from '../../scripts/bench/cpus.ts';

test('kernel CPU lists are read as CPU numbers', () => {
  assert.deepEqual(parseCpuList('0-1\n'), [0, 1]);
  assert.deepEqual(parseCpuList('0,2-4,7'), [0, 2, 3, 4, 7]);
  assert.deepEqual(parseCpuList('3'), [3]);
  assert.throws(() => parseCpuList('0-x'), { code: 'MESHLET_BENCH_SETUP' });
});

test('two CPUs: node-1 (client side) gets CPU 1, node-2 (server side) CPU 0', () => {
  assert.deepEqual(planCpus([0, 1], 2), { byNode: ['1', '0'] });
  assert.deepEqual(planCpus([2, 3], 2), { byNode: ['3', '2'] }, 'the CPUs the bench may use, not 0 and 1');
});

test('more CPUs are split between the nodes, the first node taking an odd one over', () => {
  assert.deepEqual(planCpus([0, 1, 2, 3], 2), { byNode: ['2,3', '0,1'] });
  assert.deepEqual(planCpus([0, 1, 2], 2), { byNode: ['1,2', '0'] });
});

test('one CPU: both nodes share it', () => {
  assert.deepEqual(planCpus([0], 2), { byNode: ['0', '0'] });
  assert.throws(() => planCpus([], 2), { code: 'MESHLET_BENCH_SETUP' });
});

test('a pinned command is started by taskset, which execs it', () => {
  assert.deepEqual(pinnedArgv('1', ['wrk', '-t', '2']), ['taskset', '-c', '1', 'wrk', '-t', '2']);
});

// The bench's aggregation over rounds: paths compared within each round, the rounds' ratios summarised as min / median / max.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QUICK } from '../../scripts/bench/options.ts';
import { Collector, figureDefs, judgeTargets, summarize } from '../../scripts/bench/report.ts';
import { alignRounds, differenceOverRounds, perRound, ratioOverRounds, spread } from '../../scripts/bench/rounds.ts';

test('a ratio is taken within each round, then summarised as min / median / max', () => {
  // Ratio of the medians would be 200 / 200 = 1; the rounds say meshlet was ahead in two of three.
  assert.deepEqual(ratioOverRounds([100, 200, 300], [50, 250, 200]), { min: 0.8, median: 1.5, max: 2, rounds: [2, 0.8, 1.5] });
  assert.deepEqual(ratioOverRounds([10], [40]), { min: 0.25, median: 0.25, max: 0.25, rounds: [0.25] });
  assert.deepEqual(ratioOverRounds([1, 2, 3, 4], [3, 3, 3, 3], 2), { min: 0.33, median: 0.83, max: 1.33, rounds: [0.33, 0.67, 1, 1.33] });
});

test('a round where either path failed, or whose ratio is not finite, counts for neither side', () => {
  assert.deepEqual(ratioOverRounds([100, null, 300, 50], [100, 100, 100, 0]), { min: 1, median: 2, max: 3, rounds: [1, null, 3, null] });
  assert.deepEqual(perRound([1, 2], [1], (a, b) => a + b), [2, null]);
  assert.equal(ratioOverRounds([null, null], [1, 1]), null);
  assert.equal(ratioOverRounds([], []), null);
  assert.equal(spread([null], 3), null);
});

test('a difference is taken within each round too (latency a path adds)', () => {
  assert.deepEqual(differenceOverRounds([0.9, 1.4, 0.8], [0.2, 0.3, 0.2]), { min: 0.6, median: 0.7, max: 1.1, rounds: [0.7, 1.1, 0.6] });
});

test('alignRounds gives one entry per round, holes and non-finite values as null', () => {
  const sparse: (number | undefined)[] = [];
  sparse[1] = 5;
  sparse[2] = Number.NaN;
  assert.deepEqual(alignRounds(sparse, 4), [null, 5, null, null]);
  assert.deepEqual(alignRounds([1, 2, 3], 2), [1, 2]);
});

test('summarize keeps each figure per round and each ratio over the rounds; the targets use the median of the rounds', () => {
  const c = new Collector();
  const keepalive = { direct: [400, 380, 420], meshlet: [100, 200, 300], 'haproxy-mtls': [50, 250, 200] } as const;
  for (const [path, values] of Object.entries(keepalive)) values.forEach((v, round) => c.add('keepaliveRps', path as keyof typeof keepalive, round, v));
  c.add('newConnRps', 'meshlet', 0, 30);
  c.add('newConnRps', 'haproxy-mtls', 0, 20);
  c.fail('newConnRps', 'meshlet', 1, new Error('hey: exit 1'));
  c.add('newConnRps', 'haproxy-mtls', 1, 20);
  c.add('newConnRps', 'meshlet', 2, 40);
  c.add('newConnRps', 'haproxy-mtls', 2, 20);
  for (const [path, values] of Object.entries({ direct: [0.1, 0.2, 0.1], meshlet: [0.5, 0.9, 0.4] })) values.forEach((v, round) => c.add('latencyP50Ms', path as 'direct' | 'meshlet', round, v));

  const figures = summarize(figureDefs(QUICK), c, 3);
  const ka = figures.keepaliveRps!;
  assert.deepEqual(ka.paths.meshlet.rounds, [100, 200, 300]);
  assert.deepEqual(ka.paths.meshlet.samples, [100, 200, 300]);
  assert.equal(ka.paths.meshlet.median, 200);
  assert.deepEqual(ka.ratioRounds.meshletToHaproxy, { min: 0.8, median: 1.5, max: 2, rounds: [2, 0.8, 1.5] });
  assert.equal(ka.ratios.meshletToHaproxy, 1.5);
  assert.deepEqual(ka.ratioRounds.meshletToDirect?.rounds, [0.25, 0.526, 0.714]);

  const nc = figures.newConnRps!;
  assert.deepEqual(nc.paths.meshlet.rounds, [30, null, 40]);
  assert.deepEqual(nc.paths.meshlet.samples, [30, 40]);
  assert.deepEqual(nc.paths.meshlet.errors, ['round 2: hey: exit 1']);
  assert.deepEqual(nc.ratioRounds.meshletToHaproxy, { min: 1.5, median: 1.75, max: 2, rounds: [1.5, null, 2] });
  assert.equal(nc.ratioRounds.meshletToDirect, null, 'direct was not measured');

  // A figure that means nothing on a path has no rounds there.
  assert.deepEqual(figures.proxyRssMB!.paths.direct, { applicable: false, median: null, samples: [], rounds: [], errors: [] });
  assert.deepEqual(figures.singleStreamMBps!.paths.meshlet.rounds, [null, null, null]);

  const targets = new Map(judgeTargets(figures, QUICK).map((t) => [t.id, t]));
  assert.deepEqual({ value: targets.get('keepalive')!.value, spread: targets.get('keepalive')!.spread, pass: targets.get('keepalive')!.pass }, { value: 1.5, spread: { min: 0.8, max: 2 }, pass: true });
  assert.deepEqual({ value: targets.get('newconn')!.value, pass: targets.get('newconn')!.pass }, { value: 1.75, pass: true });
  assert.deepEqual({ value: targets.get('p50added')!.value, spread: targets.get('p50added')!.spread, pass: targets.get('p50added')!.pass }, { value: 0.4, spread: { min: 0.3, max: 0.7 }, pass: true });
  assert.deepEqual({ value: targets.get('stream')!.value, pass: targets.get('stream')!.pass }, { value: null, pass: null });
});

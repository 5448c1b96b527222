// `npm run bench` options: --only picks a group of figures and keeps the full profile's sizes; --rounds sets the rounds of either profile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FULL, MAX_ROUNDS, parseOptions, QUICK } from '../../scripts/bench/options.ts';

test('--only enrollment keeps the full profile (100 pods, 40 cycles) and takes --rounds', () => {
  const opts = parseOptions(['--only', 'enrollment', '--rounds', '1']);
  assert.ok(opts !== 'help');
  assert.equal(opts.only, 'enrollment');
  assert.deepEqual({ ...opts.profile, rounds: FULL.rounds }, FULL);
  assert.equal(opts.profile.rounds, 1);
});

test('no --only runs everything; an unknown group is refused', () => {
  const opts = parseOptions([]);
  assert.ok(opts !== 'help');
  assert.equal(opts.only, undefined);
  assert.deepEqual(opts.profile, FULL);
  assert.throws(() => parseOptions(['--only', 'latency']), { code: 'MESHLET_CONFIG', message: /--only must be one of enrollment/ });
});

test('--quick takes few short rounds, and --rounds overrides them', () => {
  const quick = parseOptions(['--quick']);
  assert.ok(quick !== 'help');
  assert.deepEqual(quick.profile, QUICK);
  assert.ok(QUICK.rounds > 1 && QUICK.rounds < FULL.rounds, 'quick keeps more than one round, so its ratios still have a spread');
  assert.ok(QUICK.loadSeconds < FULL.loadSeconds && QUICK.latencySeconds < FULL.latencySeconds);
  const two = parseOptions(['--quick', '--rounds', '2']);
  assert.ok(two !== 'help');
  assert.deepEqual(two.profile, { ...QUICK, rounds: 2 });
});

test('--rounds must be a whole number of rounds within bounds; the old --runs is gone', () => {
  for (const bad of ['0', String(MAX_ROUNDS + 1), '2.5', 'three']) {
    assert.throws(() => parseOptions(['--rounds', bad]), { code: 'MESHLET_CONFIG', message: new RegExp(`--rounds must be an integer from 1 to ${MAX_ROUNDS}, got ${bad}`) });
  }
  const most = parseOptions(['--rounds', String(MAX_ROUNDS)]);
  assert.ok(most !== 'help');
  assert.equal(most.profile.rounds, MAX_ROUNDS);
  assert.throws(() => parseOptions(['--runs', '3']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
});

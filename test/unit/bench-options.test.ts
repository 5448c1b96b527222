// `npm run bench` options: --only picks a group of figures and keeps the full profile's sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FULL, parseOptions } from '../../scripts/bench/options.ts';

test('--only enrollment keeps the full profile (100 pods, 40 cycles) and takes --runs', () => {
  const opts = parseOptions(['--only', 'enrollment', '--runs', '1']);
  assert.ok(opts !== 'help');
  assert.equal(opts.only, 'enrollment');
  assert.deepEqual({ ...opts.profile, runs: FULL.runs }, FULL);
  assert.equal(opts.profile.runs, 1);
});

test('no --only runs everything; an unknown group is refused', () => {
  const opts = parseOptions([]);
  assert.ok(opts !== 'help');
  assert.equal(opts.only, undefined);
  assert.throws(() => parseOptions(['--only', 'latency']), { code: 'MESHLET_CONFIG', message: /--only must be one of enrollment/ });
});

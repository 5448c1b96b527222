// wrk's output as the bench reads it: throughput, and socket errors that
// either leave the figure standing (a stray dropped connection, reported) or
// fail the run (more than one in a thousand requests).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkloadError } from '../../scripts/bench/errors.ts';
import { parseWrk } from '../../scripts/bench/parse.ts';

const wrk = (requests: number, extra = '') => `Running 1s test @ http://10.96.0.20:8080/small
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.01ms    3.20ms  40.00ms   80.00%
  ${requests} requests in 1.00s, 2.10MB read
${extra}Requests/sec:   ${requests}.00
Transfer/sec:      2.10MB
`;

test('a clean run: requests and throughput, no socket errors', () => {
  assert.deepEqual(parseWrk(wrk(1500)), { requestsPerSecond: 1500, requests: 1500 });
});

test('one socket error in 1,500 requests leaves the figure and names the errors', () => {
  const line = 'Socket errors: connect 0, read 1, write 0, timeout 0';
  assert.deepEqual(parseWrk(wrk(1500, `  ${line}\n`)), { requestsPerSecond: 1500, requests: 1500, socketErrors: line });
});

test('more than one socket error in a thousand requests fails the run', () => {
  assert.throws(() => parseWrk(wrk(1500, '  Socket errors: connect 0, read 2, write 0, timeout 0\n')), (err: unknown) =>
    err instanceof WorkloadError && /socket errors: Socket errors: connect 0, read 2, write 0, timeout 0 in 1500 requests/.test(err.message));
});

test('responses that are not 2xx or 3xx fail the run', () => {
  assert.throws(() => parseWrk(wrk(1500, '  Non-2xx or 3xx responses: 3\n')), /3 responses were not 2xx\/3xx/);
});

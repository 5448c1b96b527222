// The cluster's circuit breakers as counters: Istio's connectionPool limits,
// Envoy's defaults when unset, and an endpoint's first connection always
// allowed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreakers, UNLIMITED, type Overflow } from '../../waypoint/upstream/circuit-breakers.ts';

test('each limit refuses past its value and counts the overflow', () => {
  const seen: Overflow[] = [];
  const b = new CircuitBreakers({ maxConnections: 1, http1MaxPendingRequests: 2, http2MaxRequests: 1, maxRetries: 1 }, (w) => seen.push(w));
  assert.equal(b.tryStartRequest(), true);
  assert.equal(b.tryStartRequest(), false);
  assert.deepEqual([b.tryEnterPending(), b.tryEnterPending(), b.tryEnterPending()], [true, true, false]);
  assert.deepEqual([b.tryStartRetry(), b.tryStartRetry()], [true, false]);
  b.requestEnded();
  b.leavePending();
  b.retryEnded();
  assert.deepEqual([b.tryStartRequest(), b.tryEnterPending(), b.tryStartRetry()], [true, true, true]);
  assert.deepEqual(b.overflows, { connections: 0, pending: 1, requests: 1, retries: 1 });
  assert.deepEqual(seen, ['requests', 'pending', 'retries']);
});

test('maxConnections: past it only an endpoint without any connection may open one (counted as an overflow)', () => {
  const b = new CircuitBreakers({ maxConnections: 1 });
  assert.equal(b.tryOpenConnection(true), true);
  assert.equal(b.tryOpenConnection(false), false);
  assert.equal(b.tryOpenConnection(true), true);
  assert.equal(b.active.connections, 2);
  assert.equal(b.overflows.connections, 2);
  b.connectionClosed();
  b.connectionClosed();
  assert.equal(b.tryOpenConnection(false), true);
});

test('unset limits are Istio\'s 2^32-1; maxRequestsPerConnection 0 or unset is unlimited; setLimits applies to what comes next', () => {
  const b = new CircuitBreakers({});
  for (let i = 0; i < 10_000; i++) assert.equal(b.tryEnterPending(), true);
  assert.equal(b.maxRequestsPerConnection, 0);
  assert.equal(UNLIMITED, 4294967295);
  b.setLimits({ http1MaxPendingRequests: 5, maxRequestsPerConnection: 3 });
  assert.equal(b.tryEnterPending(), false, 'already past the new limit');
  assert.equal(b.maxRequestsPerConnection, 3);
});

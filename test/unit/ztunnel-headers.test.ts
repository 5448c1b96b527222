// Address literals and the tunnel's request headers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { baggage, forwardedFor, newTraceContext, parseForwardedFor, traceIdOf } from '../../lib/hbone/headers.ts';
import { canonicalIp, endpointOf, endpointWithoutZone, hostPort, parseHostPort } from '../../lib/core/ip.ts';
import { workload } from '../ztunnel/fixtures.ts';

test('IP literals are canonical; authorities need brackets for IPv6 and a real port', () => {
  assert.equal(canonicalIp('FD00:0:0::1'), 'fd00::1');
  assert.equal(canonicalIp('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalIp('pod.example'), undefined);
  assert.equal(hostPort('fd00::1', 80), '[fd00::1]:80');
  assert.deepEqual(parseHostPort('[FD00::1]:8080'), { ip: 'fd00::1', port: 8080 });
  assert.deepEqual(parseHostPort('10.0.0.1:80'), { ip: '10.0.0.1', port: 80 });
  for (const bad of ['fd00::1:80', '[10.0.0.1]:80', 'example.com:80', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1']) assert.equal(parseHostPort(bad), undefined, bad);
});

test('a socket\'s link-local source is read without its zone only where asked; no zone reaches an endpoint otherwise', () => {
  assert.equal(endpointOf('fe80::1%veth0', 4711), undefined);
  assert.deepEqual(endpointWithoutZone('FE80::1%veth0', 4711), { ip: 'fe80::1', port: 4711 });
  assert.deepEqual(endpointWithoutZone('::ffff:10.0.0.1', 80), { ip: '10.0.0.1', port: 80 });
  assert.equal(endpointWithoutZone('fe80::1%veth0', undefined), undefined, 'a socket closed early has no port');
  assert.equal(endpointWithoutZone(undefined, 80), undefined);
  assert.equal(endpointWithoutZone('%veth0', 80), undefined, 'a zone alone is no address');
});

test('Forwarded quotes the node (RFC 7239), baggage and traceparent are W3C', () => {
  assert.equal(forwardedFor({ ip: '10.0.0.1', port: 4711 }), 'for="10.0.0.1:4711"');
  assert.equal(forwardedFor({ ip: 'fd00::1', port: 4711 }), 'for="[fd00::1]:4711"');
  assert.deepEqual(parseForwardedFor('for="[fd00::1]:4711";proto=http'), { ip: 'fd00::1', port: 4711 });
  assert.equal(parseForwardedFor('for=unknown'), undefined);
  const w = workload({ name: 'web a', ips: [], node: 'n1' });
  assert.equal(baggage(w), 'k8s.namespace.name=default,k8s.pod.name=web%20a,k8s.node.name=n1,k8s.serviceaccount.name=default');
  const { traceId, traceparent } = newTraceContext();
  assert.match(traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.equal(traceIdOf(traceparent), traceId);
});

// The capture handler's paths other than the tunnel: a pod on the same node,
// a destination outside the mesh, a Service without endpoints.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { LOCAL_IP, readAll, twoNodes, upstream } from '../ztunnel/fixtures.ts';
import { eventually } from '../support/eventually.ts';

test('a pod on this node is reached directly, from the node address', async (t) => {
  const peers: string[] = [];
  const up = await upstream(t, (s) => {
    peers.push(s.remoteAddress ?? '');
    s.pipe(s);
  }, LOCAL_IP);
  const { n1, n2, dial } = await twoNodes(t, 1);
  const client = dial({ ip: LOCAL_IP, port: up.port });
  client.end('local');
  assert.equal((await readAll(client)).toString(), 'local');
  assert.deepEqual(peers, ['127.0.0.1']);
  await eventually('flow closed', () => n1.flows.list()[0]?.state === 'closed');
  const [f] = n1.flows.list();
  assert.equal(f.path, 'local');
  assert.equal(f.destination?.node, 'n1');
  assert.equal(f.closeReason, 'client_closed');
  assert.equal(n2.inbound.sessionCount, 0);
});

test('a destination outside the mesh passes through as addressed', async (t) => {
  const up = await upstream(t, (s) => s.end('outside'), '127.0.0.99');
  const { n1, dial } = await twoNodes(t, 1);
  const client = dial({ ip: '127.0.0.99', port: up.port });
  assert.equal((await readAll(client)).toString(), 'outside');
  client.end();
  await eventually('flow closed', () => n1.flows.list()[0]?.state === 'closed');
  const [f] = n1.flows.list();
  assert.equal(f.path, 'passthrough');
  assert.equal(f.destination?.workload, undefined);
  assert.equal(f.closeReason, 'server_closed');
});

test('a Service without endpoints: the client is reset, the flow says no_endpoint', async (t) => {
  const { n1, dial } = await twoNodes(t, 1);
  const events: string[] = [];
  n1.flows.subscribe((e) => events.push(`${e.event} ${e.flow.closeReason ?? ''}`.trim()));
  const client = dial({ ip: '10.96.0.11', port: 80 });
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  assert.deepEqual(events, ['open', 'close no_endpoint']);
  assert.deepEqual(n1.flows.list()[0].service, { namespace: 'default', name: 'nobody' });
});

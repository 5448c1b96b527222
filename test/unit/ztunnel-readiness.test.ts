// The ztunnel's readiness (15021 /healthz/ready, the DaemonSet's probe): ready
// only once it holds the agent's state and, with mutual TLS, a valid
// certificate for every identity its node hosts, saying what it waits for.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { CertificateListing } from '../../lib/identity/store.ts';
import { emptyMeshState } from '../../lib/mesh/kinds.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { readinessHandler } from '../../ztunnel/admin.ts';

const listing = (identity: string, state: CertificateListing['state'], lastError: string | null = null): CertificateListing => ({
  identity, state, serial: null, notBefore: null, notAfter: null, nextRotation: null, lastError,
});

test('ready once the agent\'s state and every hosted identity\'s certificate are held', async (t) => {
  const store = new StateStore();
  let certs: CertificateListing[] = [];
  const server = createServer(readinessHandler(store, { certs: () => certs }));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const ready = async () => {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz/ready`);
    return { status: res.status, body: await res.json() as Record<string, unknown> };
  };

  assert.deepEqual(await ready(), { status: 503, body: { status: 'waiting for the first snapshot from the agent' } });
  store.apply({ type: 'snapshot', version: 3, state: emptyMeshState() });
  certs = [listing('spiffe://cluster.local/ns/demo/sa/web', 'valid'), listing('spiffe://cluster.local/ns/demo/sa/db', 'pending', 'the CA answered 503')];
  assert.deepEqual(await ready(), {
    status: 503,
    body: {
      status: 'waiting for certificates of 1 identity this node hosts', version: 3,
      missing: [{ identity: 'spiffe://cluster.local/ns/demo/sa/db', state: 'pending', lastError: 'the CA answered 503' }],
    },
  });
  certs = [listing('spiffe://cluster.local/ns/demo/sa/web', 'valid'), listing('spiffe://cluster.local/ns/demo/sa/db', 'valid')];
  assert.deepEqual(await ready(), { status: 200, body: { status: 'ready', version: 3 } });
  certs = [listing('spiffe://cluster.local/ns/demo/sa/web', 'expired')];
  assert.equal((await ready()).status, 503, 'an expired certificate is not ready');
});

test('without mutual TLS (plaintext tunnels) the agent\'s state is enough', async (t) => {
  const store = new StateStore();
  const server = createServer(readinessHandler(store, {}));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  store.apply({ type: 'snapshot', version: 1, state: emptyMeshState() });
  assert.equal((await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz/ready`)).status, 200);
});

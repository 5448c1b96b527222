// The sandbox's KubeConfig hands every request the same undici Agent, where
// client-node's makes one per request (and so one TLS connection per call).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fetch } from 'undici';
import { HttpMethod, RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { PooledKubeConfig } from '../../lib/cluster/pooled-kubeconfig.ts';

// A CA of its own: client-node makes an Agent only for a cluster with TLS options.
const CLUSTER = { clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: false, caData: Buffer.from('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n').toString('base64') }], users: [{ name: 'u', token: 't' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' };

async function dispatchersOf(kc: KubeConfig, count: number): Promise<unknown[]> {
  kc.loadFromOptions(CLUSTER);
  const out: unknown[] = [];
  for (let i = 0; i < count; i++) {
    const context = new RequestContext('https://127.0.0.1:6443/api/v1/pods', HttpMethod.GET);
    await kc.applySecurityAuthentication(context);
    out.push(context.getDispatcher());
  }
  return out;
}

test('every request through a PooledKubeConfig gets the one Agent, so its connections are reused', async () => {
  const plain = await dispatchersOf(new KubeConfig(), 3);
  assert.equal(new Set(plain).size, 3, 'client-node alone makes an Agent per request (what this works around)');
  const pooled = await dispatchersOf(new PooledKubeConfig(), 3);
  assert.ok(pooled[0] !== undefined);
  assert.equal(new Set(pooled).size, 1);
});

test('a caller closing its dispatcher (as after a list) leaves the shared Agent serving the next request', async (t) => {
  const server = createServer((_req, res) => res.end('{"kind":"PodList","items":[]}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/pods`;
  const kc = new PooledKubeConfig();
  kc.loadFromOptions({ ...CLUSTER, clusters: [{ name: 'c', server: url.replace('/api/v1/pods', ''), skipTLSVerify: true }] });
  for (let i = 0; i < 3; i++) {
    const context = new RequestContext(url, HttpMethod.GET);
    await kc.applySecurityAuthentication(context);
    const dispatcher = context.getDispatcher();
    assert.ok(dispatcher);
    assert.equal((await fetch(url, { dispatcher })).status, 200, `request ${i + 1}`);
    await dispatcher.destroy();
  }
});

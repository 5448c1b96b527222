import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HttpMethod, RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { ConfigError } from '../../lib/core/errors.ts';
import { InClusterCredentials } from '../../lib/cluster/sources/in-cluster.ts';

async function serviceAccountDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-sa-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'token'), 'first');
  await writeFile(join(dir, 'ca.crt'), '');
  return dir;
}

test('the server comes from KUBERNETES_SERVICE_HOST/PORT as client-node builds it', () => {
  const server = (env: NodeJS.ProcessEnv): string => new InClusterCredentials({ env }).getCurrentCluster().server;
  assert.equal(server({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }), 'https://10.96.0.1:443');
  assert.equal(server({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }), 'https://[fd00::1]:6443');
  assert.equal(server({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '8080' }), 'http://127.0.0.1:8080');
  assert.throws(() => new InClusterCredentials({ env: {} }), ConfigError);
});

test('the token is sent as a bearer token and re-read once a minute old (rotation)', async (t) => {
  const dir = await serviceAccountDir(t);
  let now = 0;
  const creds = new InClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir, now: () => now });
  const authorization = async (): Promise<string | undefined> => {
    const ctx = new RequestContext('https://10.96.0.1:443/api', HttpMethod.GET);
    await creds.applySecurityAuthentication(ctx);
    assert.ok(ctx.getDispatcher(), 'a dispatcher trusting the cluster CA');
    await ctx.getDispatcher()?.destroy();
    return ctx.getHeaders().Authorization;
  };
  assert.equal(await authorization(), 'Bearer first');
  await writeFile(join(dir, 'token'), 'second');
  now = 30_000;
  assert.equal(await authorization(), 'Bearer first');
  now = 61_000;
  assert.equal(await authorization(), 'Bearer second');
});

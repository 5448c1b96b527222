// A real meshlet CA on 127.0.0.1 for the mutual TLS tests of the tunnel: its
// cluster state puts a `default/default` pod (plus one per service account in
// `others`) on nodes n1 and n2; each node gets its own CertificateStore.
import type { TestContext } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../../ca/root.ts';
import { serveCa } from '../../ca/service.ts';
import { CaClient } from '../../lib/identity/ca-client.ts';
import { CertificateStore } from '../../lib/identity/store.ts';
import { silentLogger } from '../../lib/core/log.ts';
import type { MeshIdentity } from '../../lib/identity/mesh-identity.ts';
import { PodsSource, runningPod, TokenCallers } from '../support/ca-doubles.ts';

export interface MeshCaOptions {
  /** Service accounts of further pods on n2. */
  others?: string[];
  /** Certificate lifetime the stores ask for (default the CA's, 1 h). */
  ttlSeconds?: number;
}

export async function meshCa(t: TestContext, options: MeshCaOptions = {}): Promise<{ n1: MeshIdentity; n2: MeshIdentity }> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-mtls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pod = (name: string, node: string, sa = 'default') => runningPod(name, 'default', sa, node, `10.0.0.${name.length}`);
  const pods = [pod('a', 'n1'), pod('bb', 'n2'), ...(options.others ?? []).map((sa, i) => pod(`x${i}`, 'n2', sa))];
  const ca = await serveCa({
    host: '127.0.0.1', port: 0, stateDir: join(dir, 'ca'),
    trustDomain: 'cluster.local', defaultTtlSeconds: 3600, maxTtlSeconds: 7200, serverNames: [], log: silentLogger,
  }, {
    root: await createRoot('cluster.local'), source: new PodsSource(pods),
    callers: new TokenCallers({ 'token-n1-0123456789abcdef': 'n1', 'token-n2-0123456789abcdef': 'n2' }),
  });
  t.after(() => ca.close());
  const identity = async (node: string): Promise<MeshIdentity> => {
    await writeFile(join(dir, `${node}.token`), `token-${node}-0123456789abcdef`);
    const client = new CaClient({ url: ca.url, bundleFile: ca.bundleFile, tokenFile: join(dir, `${node}.token`) });
    t.after(() => client.close());
    const certs = new CertificateStore({ issuer: client, ...(options.ttlSeconds ? { ttlSeconds: options.ttlSeconds } : {}) });
    t.after(() => certs.close());
    return { trustDomain: 'cluster.local', certs };
  };
  return { n1: await identity('n1'), n2: await identity('n2') };
}

// Kubeconfig files for the sandbox's clients: one cluster, one user with a
// client certificate from the cluster CA or a ServiceAccount token (embedded,
// so a file is whole).
import { readFile, writeFile } from 'node:fs/promises';
import type { IssuedPair } from './pki.ts';

const b64 = (pem: string): string => Buffer.from(pem).toString('base64');

export type KubeconfigCredentials = { client: IssuedPair } | { token: string };

/** Writes a kubeconfig for `user` against `server`; JSON, which kubectl and client-node read as YAML. */
export async function writeKubeconfig(path: string, o: { server: string; caFile: string; user: string } & KubeconfigCredentials): Promise<string> {
  const ca = await readFile(o.caFile, 'utf8');
  const user = 'token' in o ? { token: o.token } : { 'client-certificate-data': b64(o.client.certPem), 'client-key-data': b64(o.client.keyPem) };
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'sandbox', cluster: { server: o.server, 'certificate-authority-data': b64(ca) } }],
    users: [{ name: o.user, user }],
    contexts: [{ name: 'sandbox', context: { cluster: 'sandbox', user: o.user } }],
    'current-context': 'sandbox',
  };
  await writeFile(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return path;
}

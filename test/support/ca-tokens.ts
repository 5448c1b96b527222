// Tokens as a ztunnel presents them to the CA, from a real API server:
// TokenRequest tokens (pod-bound, as the kubelet projects them, or not), and
// tokens signed with the cluster's ServiceAccount key that the API server did
// not issue (expired ones, which TokenRequest cannot make).
import { createSign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { kubectlOk, type TestControlPlane } from './control-plane.ts';

/** A TokenRequest token of `namespace/account` for `audience`, bound to `pod` unless it is undefined. */
export async function accountToken(cp: TestControlPlane, namespace: string, account: string, pod: string | undefined, audience = 'meshlet-ca'): Promise<string> {
  const bound = pod === undefined ? [] : ['--bound-object-kind', 'Pod', '--bound-object-name', pod];
  return (await kubectlOk(cp, ['create', 'token', account, '-n', namespace, '--audience', audience, ...bound])).trim();
}

/** `template`'s header and claims with `overrides`, signed with the cluster's ServiceAccount key: a token the API server could have issued. */
export async function mintToken(cp: TestControlPlane, template: string, overrides: Record<string, unknown>): Promise<string> {
  const [header, claims] = template.split('.') as [string, string];
  const payload = { ...JSON.parse(Buffer.from(claims, 'base64url').toString('utf8')) as Record<string, unknown>, ...overrides };
  const signed = `${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = createSign('RSA-SHA256').update(signed).sign(await readFile(cp.pki.serviceAccountKey, 'utf8'));
  return `${signed}.${signature.toString('base64url')}`;
}

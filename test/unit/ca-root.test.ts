// The mesh root read back from its PEMs (what the root Secret holds): a
// usable root round-trips, and each way it can be unusable is named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRoot, readRoot } from '../../ca/root.ts';

test('a root reads back from its PEMs; a wrong key, another trust domain or no PEM at all is named', async () => {
  const root = await createRoot('cluster.local');
  const other = await createRoot('cluster.local');
  const read = readRoot(root.certPem, root.keyPem, 'cluster.local');
  assert.ok(typeof read !== 'string', String(read));
  assert.equal(read.cert.serialNumber, root.cert.serialNumber);
  assert.equal(read.keyId, root.keyId);
  assert.equal(readRoot(root.certPem, other.keyPem, 'cluster.local'), 'holds a key that is not the key of its certificate');
  assert.match(String(readRoot(root.certPem, root.keyPem, 'example.org')), /^holds the root of trust domain cluster\.local, but --trust-domain is example\.org/);
  assert.match(String(readRoot('not a certificate', root.keyPem, 'cluster.local')), /^holds no PEM certificate/);
  assert.match(String(readRoot(root.certPem, 'not a key', 'cluster.local')), /^holds no PEM RSA private key/);
});

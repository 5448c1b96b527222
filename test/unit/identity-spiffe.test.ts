import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidSpiffeIdError } from '../../lib/identity/errors.ts';
import { SNI_SUFFIX, SniIndex, sniFor } from '../../lib/identity/sni.ts';
import {
  formatPrincipal, formatSpiffeId, parsePrincipal, parseSpiffeId, sameIdentity, spiffeId, workloadIdentity,
} from '../../lib/identity/spiffe.ts';
import { uriSans } from '../../lib/identity/svid.ts';

test('an identity formats as a SPIFFE ID and an Istio principal, and parses back', () => {
  const id = spiffeId('demo', 'web');
  assert.equal(id.trustDomain, 'cluster.local');
  assert.equal(formatSpiffeId(id), 'spiffe://cluster.local/ns/demo/sa/web');
  assert.equal(formatPrincipal(id), 'cluster.local/ns/demo/sa/web');
  assert.deepEqual(parseSpiffeId('spiffe://cluster.local/ns/demo/sa/web'), id);
  assert.deepEqual(parsePrincipal('cluster.local/ns/demo/sa/web'), id);
  assert.deepEqual(parseSpiffeId('spiffe://prod.example_1/ns/Team.A/sa/svc-1'), { trustDomain: 'prod.example_1', namespace: 'Team.A', serviceAccount: 'svc-1' });
  assert.equal(formatSpiffeId(workloadIdentity({ namespace: 'demo', serviceAccount: 'db' }, 'corp.internal')), 'spiffe://corp.internal/ns/demo/sa/db');
  assert.ok(sameIdentity(id, parsePrincipal(formatPrincipal(id))));
  assert.ok(!sameIdentity(id, spiffeId('demo', 'db')));
});

test('invalid SPIFFE IDs are rejected with a reason', () => {
  const bad: [string, RegExp][] = [
    ['https://cluster.local/ns/demo/sa/web', /scheme/],
    ['SPIFFE://cluster.local/ns/demo/sa/web', /scheme/],
    ['spiffe://Cluster.local/ns/demo/sa/web', /lowercase/],
    ['spiffe://cluster.local:8080/ns/demo/sa/web', /lowercase/],
    ['spiffe://user@cluster.local/ns/demo/sa/web', /lowercase/],
    ['spiffe:///ns/demo/sa/web', /trust domain is empty/],
    ['spiffe://cluster.local', /only a trust domain/],
    ['spiffe://cluster.local/', /exactly \/ns/],
    ['spiffe://cluster.local/ns/demo/sa/web/', /exactly \/ns/],
    ['spiffe://cluster.local/ns/demo', /exactly \/ns/],
    ['spiffe://cluster.local/sa/web/ns/demo', /exactly \/ns/],
    ['spiffe://cluster.local/ns//sa/web', /namespace is empty/],
    ['spiffe://cluster.local/ns/../sa/web', /may not be "\." or "\.\."/],
    ['spiffe://cluster.local/ns/demo/sa/we%62', /service account/],
    ['spiffe://cluster.local/ns/demo/sa/web?x=1', /service account/],
    ['spiffe://cluster.local/ns/demo/sa/web#f', /service account/],
    [`spiffe://cluster.local/ns/demo/sa/${'a'.repeat(2048)}`, /longer than 2048/],
  ];
  for (const [input, reason] of bad) {
    assert.throws(() => parseSpiffeId(input), (err: unknown) => {
      assert.ok(err instanceof InvalidSpiffeIdError, input);
      assert.equal(err.code, 'MESHLET_INVALID_SPIFFE_ID');
      assert.match(err.message, reason, input);
      return true;
    });
  }
  assert.throws(() => parsePrincipal('spiffe://cluster.local/ns/demo/sa/web'), /no "spiffe:\/\/" scheme/);
  assert.throws(() => spiffeId('demo', 'web', 'Bad'), InvalidSpiffeIdError);
  assert.throws(() => spiffeId('de mo', 'web'), InvalidSpiffeIdError);
});

test('SNI names are DNS names that map back to the identity among the local ones', () => {
  const web = spiffeId('demo', 'web');
  const db = spiffeId('demo', 'db');
  const name = sniFor(web);
  assert.match(name, /^[0-9a-f]{32}\.hbone\.meshlet$/);
  assert.ok(name.endsWith(SNI_SUFFIX));
  assert.equal(sniFor(spiffeId('demo', 'web')), name, 'stable');
  assert.notEqual(sniFor(db), name);
  assert.notEqual(sniFor(spiffeId('demo', 'web', 'other.domain')), name, 'trust domain is part of the hash');

  const index = new SniIndex();
  assert.equal(index.add(web), name);
  index.add(db);
  assert.deepEqual(index.lookup(name), web);
  assert.deepEqual(index.lookup(name.toUpperCase()), web, 'DNS names are case-insensitive');
  assert.deepEqual(index.lookup(sniFor(db)), db);
  assert.equal(index.lookup(sniFor(spiffeId('demo', 'other'))), undefined);
  assert.equal(index.lookup('example.com'), undefined);
  index.delete(web);
  assert.equal(index.lookup(name), undefined);
});

test("URI SANs are read from Node's subjectAltName text, quoted or not", () => {
  assert.deepEqual(uriSans('URI:spiffe://cluster.local/ns/a/sa/b'), ['spiffe://cluster.local/ns/a/sa/b']);
  assert.deepEqual(uriSans('DNS:localhost, IP Address:127.0.0.1, URI:spiffe://td/ns/a/sa/b, URI:"x:a,b"'), ['spiffe://td/ns/a/sa/b', 'x:a,b']);
  assert.deepEqual(uriSans(undefined), []);
});

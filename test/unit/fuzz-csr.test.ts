// Property tests of CSR parsing, as a hostile caller would send it: any text,
// any bytes in PEM armour, and a real request with bytes flipped, cut or
// inserted. No input throws out of lib/identity/pkcs10.ts, every rejection
// names one of its reasons with a message, and the CA's readCsr/proveCsr
// only ever refuse with a 400 SignRefusal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SignRefusal } from '../../ca/errors.ts';
import { proveCsr, readCsr } from '../../ca/signer.ts';
import { newCertificateRequest } from '../../lib/identity/csr.ts';
import { checkKeyPolicy, parsePkcs10, verifyPkcs10, type CsrRejection } from '../../lib/identity/pkcs10.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';

const RUNS = { numRuns: 400 };
const REASONS = new Set(['bad-csr', 'unsupported-key', 'weak-key', 'key-too-large', 'bad-exponent', 'bad-signature']);

const { csrPem } = await newCertificateRequest(spiffeId('demo', 'web'));
const DER = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
const armour = (der: Uint8Array, label = 'CERTIFICATE REQUEST') =>
  `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;

function assertRejection(r: CsrRejection): void {
  assert.equal(r.ok, false);
  assert.ok(REASONS.has(r.reason), r.reason);
  assert.ok(r.message.length > 0);
}

/** Runs every step the CA runs on `pem`; each either passes or rejects with a reason, and none throws. */
function everyStep(pem: string): void {
  const parsed = parsePkcs10(pem);
  if (!parsed.ok) return assertRejection(parsed);
  const policy = checkKeyPolicy(parsed);
  if (policy) assertRejection(policy);
  const verified = verifyPkcs10(parsed);
  if (!verified.ok) assertRejection(verified);
  try {
    proveCsr(readCsr(pem, 'cluster.local').csr);
  } catch (err) {
    assert.ok(err instanceof SignRefusal, String(err));
    assert.equal(err.status, 400);
    assert.ok(err.reason === 'bad-san' || REASONS.has(err.reason), err.reason);
  }
}

test('the real request passes every step', () => {
  const parsed = parsePkcs10(csrPem);
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.names, [{ type: 6, value: 'spiffe://cluster.local/ns/demo/sa/web' }]);
  assert.ok(verifyPkcs10(parsed).ok);
  assert.deepEqual(readCsr(csrPem, 'cluster.local').id, spiffeId('demo', 'web'));
});

test('any text is a rejection with a reason or a request, never a throw', () => {
  fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'binary-ascii', maxLength: 200 })), everyStep), RUNS);
});

test('any bytes in PEM armour are a rejection with a reason or a request', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom('CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST', 'CERTIFICATE'), (bytes, label) => everyStep(armour(bytes, label))), RUNS);
});

/** A nesting of SEQUENCE headers as deep as the bytes allow, with long-form lengths: what makes recursive parsers overflow. */
test('deep or over-long nestings are rejected, not followed', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 4000 }), fc.constantFrom(0x80, 0x84, 0x85, 0xff), (depth, lengthByte) => {
    const bytes = Buffer.alloc(depth * 2);
    for (let i = 0; i < depth; i++) bytes.set([0x30, lengthByte], i * 2);
    everyStep(armour(bytes));
  }), { numRuns: 50 });
});

test('the real request with bytes flipped, cut or inserted is a rejection with a reason, never a throw', () => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(DER.length - 1), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(DER.length - 1) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(DER.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  );
  fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
    let der = Buffer.from(DER);
    for (const m of mutations) {
      const at = Math.min(m.at, der.length - 1);
      if (m.kind === 'flip') der[at]! ^= m.xor;
      else if (m.kind === 'cut') der = der.subarray(0, at);
      else der = Buffer.concat([der.subarray(0, at), m.bytes, der.subarray(at)]);
      if (der.length === 0) return;
    }
    everyStep(armour(der));
  }), RUNS);
});

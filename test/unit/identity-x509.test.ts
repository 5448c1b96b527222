import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { randomSerial } from '../../lib/identity/x509.ts';

test('serials are positive minimal DER integers of 16 octets, so OpenSSL parses every certificate', () => {
  for (let i = 0; i < 20_000; i++) assert.match(randomSerial(), /^[4-7][0-9a-f]{31}$/);
});

test('a serial starting with two zero octets, of which node-forge drops one, is what OpenSSL refuses', () => {
  const keys = forge.pki.rsa.generateKeyPair(1024);
  const pem = (serial: string): string => {
    const cert = forge.pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serial;
    cert.validity.notBefore = new Date(0);
    cert.validity.notAfter = new Date(86_400_000);
    cert.setSubject([{ name: 'commonName', value: 'x' }]);
    cert.setIssuer([{ name: 'commonName', value: 'x' }]);
    cert.sign(keys.privateKey, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  };
  assert.throws(() => new X509Certificate(pem('000012')), /illegal padding/);
  assert.doesNotThrow(() => new X509Certificate(pem(randomSerial())));
});

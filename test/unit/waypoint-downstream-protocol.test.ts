// How a Service port's declaration picks the waypoint's serving (Istio's
// rules: appProtocol first, then the port name's prefix), and how an
// undeclared port's first bytes are read: HTTP/2 preface, HTTP/1 request
// line, anything else, or not enough yet.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyFirstBytes, H2_PREFACE, MAX_SNIFF_BYTES } from '../../waypoint/downstream/first-bytes.ts';
import { declaredProtocol, declaresHttp2, servingOf, type PortDeclaration } from '../../waypoint/downstream/protocol.ts';

const cases: [PortDeclaration, ReturnType<typeof declaredProtocol>, ReturnType<typeof servingOf>][] = [
  [{ name: 'http' }, 'http', 'http'],
  [{ name: 'http-web' }, 'http', 'http'],
  [{ name: 'HTTP-Web' }, 'http', 'http'],
  [{ name: 'http2-api' }, 'http2', 'http'],
  [{ name: 'grpc' }, 'grpc', 'http'],
  [{ name: 'grpc-api' }, 'grpc', 'http'],
  [{ name: 'grpc-web' }, 'grpc-web', 'http'],
  [{ name: 'grpc-web-ui' }, 'grpc-web', 'http'],
  [{ name: 'tcp-db' }, 'tcp', 'tcp'],
  [{ name: 'mysql' }, 'mysql', 'tcp'],
  [{ name: 'redis-cache' }, 'redis', 'tcp'],
  [{ name: 'https' }, 'https', 'tcp'],
  [{ name: 'tls-passthrough' }, 'tls', 'tcp'],
  [{ name: 'web' }, undefined, 'detect'],
  [{ name: 'httpfoo' }, undefined, 'detect'],
  [{}, undefined, 'detect'],
  [{ appProtocol: 'http' }, 'http', 'http'],
  [{ appProtocol: 'HTTP2' }, 'http2', 'http'],
  [{ appProtocol: 'kubernetes.io/h2c' }, 'http2', 'http'],
  [{ appProtocol: 'kubernetes.io/ws' }, 'http', 'http'],
  [{ appProtocol: 'kubernetes.io/wss' }, 'https', 'tcp'],
  // appProtocol beats the name...
  [{ name: 'tcp-data', appProtocol: 'http' }, 'http', 'http'],
  [{ name: 'http', appProtocol: 'tcp' }, 'tcp', 'tcp'],
  [{ name: 'grpc', appProtocol: 'kubernetes.io/h2c' }, 'http2', 'http'],
  // ...when it names a protocol; otherwise the name decides.
  [{ name: 'grpc-api', appProtocol: 'example.com/custom' }, 'grpc', 'http'],
  [{ appProtocol: 'example.com/custom' }, undefined, 'detect'],
  [{ name: 'constructor' }, undefined, 'detect'],
  [{ appProtocol: 'toString' }, undefined, 'detect'],
];

for (const [port, protocol, serving] of cases) {
  test(`port ${JSON.stringify(port)} declares ${protocol ?? 'nothing'} and is served as ${serving}`, () => {
    assert.equal(declaredProtocol(port), protocol);
    assert.equal(servingOf(declaredProtocol(port)), serving);
  });
}

test('HTTP/2 upstream only for ports declared HTTP/2 or gRPC', () => {
  assert.equal(declaresHttp2('http2'), true);
  assert.equal(declaresHttp2('grpc'), true);
  assert.equal(declaresHttp2('http'), false);
  assert.equal(declaresHttp2('grpc-web'), false);
  assert.equal(declaresHttp2(undefined), false);
});

const b = (s: string) => Buffer.from(s, 'latin1');

const firstBytes: [string, Buffer, ReturnType<typeof classifyFirstBytes>][] = [
  ['nothing yet', b(''), 'incomplete'],
  ['a GET request line', b('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'http1'],
  ['an HTTP/1.0 request line', b('GET /index.html HTTP/1.0\r\n'), 'http1'],
  ['an OPTIONS * request line', b('OPTIONS * HTTP/1.1\r\n'), 'http1'],
  ['a custom method', b('PURGE /cache HTTP/1.1\r\n'), 'http1'],
  ['an empty line before the request line', b('\r\nPOST /x HTTP/1.1\r\n'), 'http1'],
  ['a bare LF line end', b('GET / HTTP/1.1\n'), 'http1'],
  ['part of a method', b('GE'), 'incomplete'],
  ['a request line without its end', b('GET /path HTTP/1.'), 'incomplete'],
  ['a request line up to CR', b('GET / HTTP/1.1\r'), 'incomplete'],
  ['the full HTTP/2 preface', H2_PREFACE, 'h2'],
  ['the preface and a SETTINGS frame', Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]), 'h2'],
  ['part of the preface', b('PRI * HTTP/2'), 'incomplete'],
  ['POST, which starts like the preface', b('POST /submit HTTP/1.1\r\n'), 'http1'],
  ['an HTTP/2.0 request line that is no preface', b('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n'), 'other'],
  ['a Redis inline command', b('PING\r\n'), 'other'],
  ['a Redis RESP array', b('*1\r\n$4\r\nPING\r\n'), 'other'],
  ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), 'other'],
  ['a PostgreSQL startup message', Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), 'other'],
  ['an SSH banner', b('SSH-2.0-OpenSSH_9.6\r\n'), 'other'],
  ['an HTTP/3-ish version', b('GET / HTTP/3\r\n'), 'other'],
  ['two spaces after the method', b('GET  / HTTP/1.1\r\n'), 'other'],
  ['a control byte in the target', b('GET /a\x01b HTTP/1.1\r\n'), 'other'],
  ['a method of 40 token characters', b(`${'A'.repeat(40)} / HTTP/1.1\r\n`), 'other'],
];

for (const [what, bytes, expected] of firstBytes) {
  test(`first bytes: ${what} → ${expected}`, () => {
    assert.equal(classifyFirstBytes(bytes), expected);
  });
}

test('first bytes: every prefix of a request line is incomplete until its line end', () => {
  const line = b('DELETE /items/42?force=1 HTTP/1.1\r\n');
  for (let n = 1; n < line.length; n++) assert.equal(classifyFirstBytes(line.subarray(0, n)), 'incomplete', `after ${n} bytes`);
  assert.equal(classifyFirstBytes(line), 'http1');
});

test('first bytes: a request target longer than the sniff window is taken for HTTP/1', () => {
  assert.equal(classifyFirstBytes(b(`GET /${'a'.repeat(MAX_SNIFF_BYTES)}`)), 'http1');
});

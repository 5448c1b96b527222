// The waypoint's own responses, as Envoy makes them: status, body,
// text/plain, response flag and details for each kind, the overflow header,
// the "retried" wording, and the gRPC trailers-only form with Envoy's
// HTTP-to-gRPC status mapping and a percent-encoded grpc-message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildLocalReply, grpcStatusForHttp, percentEncodeGrpcMessage, type LocalReply } from '../../waypoint/downstream/local-reply.ts';

const HTTP = { grpc: false, method: 'GET' };
const GRPC = { grpc: true, method: 'POST' };

const RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

const cases: [string, LocalReply, number, string, string | undefined, string][] = [
  ['no route', { kind: 'no_route' }, 404, '', 'NR', 'route_not_found'],
  ['no healthy upstream', { kind: 'no_healthy_upstream' }, 503, 'no healthy upstream', 'UH', 'no_healthy_upstream'],
  ['connect failure', { kind: 'upstream_reset', reason: 'remote connection failure' }, 503, `${RESET}remote connection failure`, 'UF', 'upstream_reset_before_response_started{remote_connection_failure}'],
  ['connect timeout', { kind: 'upstream_reset', reason: 'connection timeout' }, 503, `${RESET}connection timeout`, 'UF', 'upstream_reset_before_response_started{connection_timeout}'],
  ['connection termination', { kind: 'upstream_reset', reason: 'connection termination' }, 503, `${RESET}connection termination`, 'UC', 'upstream_reset_before_response_started{connection_termination}'],
  ['remote reset', { kind: 'upstream_reset', reason: 'remote reset' }, 503, `${RESET}remote reset`, 'UR', 'upstream_reset_before_response_started{remote_reset}'],
  ['refused stream', { kind: 'upstream_reset', reason: 'remote refused stream reset' }, 503, `${RESET}remote refused stream reset`, 'UR', 'upstream_reset_before_response_started{remote_refused_stream_reset}'],
  ['local reset', { kind: 'upstream_reset', reason: 'local reset' }, 503, `${RESET}local reset`, 'LR', 'upstream_reset_before_response_started{local_reset}'],
  ['protocol error', { kind: 'upstream_reset', reason: 'protocol error' }, 502, `${RESET}protocol error`, 'UPE', 'upstream_reset_before_response_started{protocol_error}'],
  ['overflow', { kind: 'overflow' }, 503, `${RESET}overflow`, 'UO', 'upstream_reset_before_response_started{overflow}'],
  ['timeout', { kind: 'upstream_timeout' }, 504, 'upstream request timeout', 'UT', 'response_timeout'],
  ['per-try timeout', { kind: 'upstream_timeout', perTry: true }, 504, 'upstream request timeout', 'UT', 'upstream_per_try_timeout'],
  ['fault abort', { kind: 'fault_abort', status: 418 }, 418, 'fault filter abort', 'FI', 'fault_filter_abort'],
  ['RBAC denial', { kind: 'rbac_denied' }, 403, 'RBAC: access denied', undefined, 'rbac_access_denied_matched_policy[none]'],
  ['RBAC denial by a named policy', { kind: 'rbac_denied', policy: 'ns[shop]-policy[deny-admin]-rule[0]' }, 403, 'RBAC: access denied', undefined, 'rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[0]]'],
  ['direct response', { kind: 'direct_response', status: 200, body: 'ok' }, 200, 'ok', undefined, 'direct_response'],
  ['internal error', { kind: 'internal_error' }, 500, '', undefined, 'waypoint_internal_error'],
];

for (const [what, reply, status, body, flag, details] of cases) {
  test(`local reply: ${what} → ${status} ${JSON.stringify(body)} ${flag ?? '-'}`, () => {
    const built = buildLocalReply(reply, HTTP);
    assert.equal(built.status, status);
    assert.equal(built.body, body);
    assert.equal(built.flag, flag);
    assert.equal(built.details, details);
    if (body === '') {
      assert.equal(built.headers['content-type'], undefined);
      assert.equal(built.headers['content-length'], undefined);
    } else {
      assert.equal(built.headers['content-type'], 'text/plain');
      assert.equal(built.headers['content-length'], String(Buffer.byteLength(body)));
    }
  });
}

test('local reply: overflow says x-envoy-overloaded, other resets do not', () => {
  assert.equal(buildLocalReply({ kind: 'overflow' }, HTTP).headers['x-envoy-overloaded'], 'true');
  assert.equal(buildLocalReply({ kind: 'upstream_reset', reason: 'overflow' }, HTTP).headers['x-envoy-overloaded'], 'true');
  assert.equal(buildLocalReply({ kind: 'upstream_reset', reason: 'remote reset' }, HTTP).headers['x-envoy-overloaded'], undefined);
});

test('local reply: after retries the body says so, with the transport failure reason', () => {
  const built = buildLocalReply({ kind: 'upstream_reset', reason: 'remote connection failure', retried: true, transportFailureReason: 'delayed connect error: 111' }, HTTP);
  assert.equal(built.body, 'upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111');
  assert.equal(built.details, 'upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_111}');
});

test('local reply: a HEAD request gets the head alone, with the length the body would have had', () => {
  const built = buildLocalReply({ kind: 'no_healthy_upstream' }, { grpc: false, method: 'HEAD' });
  assert.equal(built.body, '');
  assert.equal(built.headers['content-length'], '19');
});

test('local reply: a direct response keeps its own content type', () => {
  const built = buildLocalReply({ kind: 'direct_response', status: 200, body: '{}', headers: { 'content-type': 'application/json' } }, HTTP);
  assert.equal(built.headers['content-type'], 'application/json');
});

test('local reply to a gRPC request: trailers-only 200 with the mapped grpc-status and the body as grpc-message', () => {
  const expectations: [LocalReply, string, string | undefined][] = [
    [{ kind: 'no_route' }, '12', undefined],
    [{ kind: 'no_healthy_upstream' }, '14', 'no healthy upstream'],
    [{ kind: 'upstream_timeout' }, '14', 'upstream request timeout'],
    [{ kind: 'rbac_denied' }, '7', 'RBAC: access denied'],
    [{ kind: 'overflow' }, '14', 'upstream connect error or disconnect/reset before headers. reset reason: overflow'],
    [{ kind: 'fault_abort', status: 500 }, '2', 'fault filter abort'],
    [{ kind: 'fault_abort', status: 200, grpcStatus: 8 }, '8', 'fault filter abort'],
  ];
  for (const [reply, grpcStatus, message] of expectations) {
    const built = buildLocalReply(reply, GRPC);
    assert.equal(built.status, 200, reply.kind);
    assert.equal(built.body, '');
    assert.equal(built.headers['content-type'], 'application/grpc');
    assert.equal(built.headers['grpc-status'], grpcStatus, reply.kind);
    assert.equal(built.headers['grpc-message'], message, reply.kind);
  }
  assert.equal(buildLocalReply({ kind: 'overflow' }, GRPC).headers['x-envoy-overloaded'], 'true');
});

test('HTTP statuses map to gRPC codes as gRPC documents it', () => {
  assert.deepEqual([400, 401, 403, 404, 429, 502, 503, 504, 500, 418].map(grpcStatusForHttp), [13, 16, 7, 12, 14, 14, 14, 14, 2, 2]);
});

test('grpc-message percent-encodes what is not printable ASCII, and the percent sign', () => {
  assert.equal(percentEncodeGrpcMessage('RBAC: access denied'), 'RBAC: access denied');
  assert.equal(percentEncodeGrpcMessage('100% done\n'), '100%25 done%0A');
  assert.equal(percentEncodeGrpcMessage('café'), 'caf%C3%A9');
});

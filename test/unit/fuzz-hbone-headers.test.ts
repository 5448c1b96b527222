// Property tests of the HBONE request headers, as a hostile peer or pod
// would send them: arbitrary header sets, Forwarded, traceparent and baggage
// values, and workload names of any UTF-16 (lone surrogates included). No
// input throws out of the header code or the inbound plan, and every refusal
// carries the status the peer is answered with.
import assert from 'node:assert/strict';
import { validateHeaderValue } from 'node:http';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalIp, isPort } from '../../lib/core/ip.ts';
import { baggage, parseForwardedFor, traceIdOf, tunnelRequestOf } from '../../lib/hbone/headers.ts';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { planInbound, type SessionTls } from '../../ztunnel/inbound-plan.ts';
import { CLIENT_IP, SERVER_IP, twoNodeState, workload } from '../ztunnel/fixtures.ts';

const RUNS = { numRuns: 300 };

/** Any UTF-16 text, unpaired surrogates included (what a JSON object field may hold). */
const utf16 = (maxLength = 40) => fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength }).map((units) => String.fromCharCode(...units));
/** Text that looks like the header's own grammar, so the parser gets past its first character. */
const near = (...pieces: string[]) => fc.array(fc.oneof(fc.constantFrom(...pieces), fc.string({ unit: 'binary-ascii', maxLength: 6 })), { maxLength: 12 }).map((parts) => parts.join(''));
const forwardedLike = near('for=', '"', '[', ']', ':', ';', ',', ' ', 'proto=http', '10.0.1.1', '127.0.0.11', 'fd00::1', '::ffff:', '4711', '65536', '0', 'unknown', '_hidden');
const authorityLike = near(SERVER_IP, CLIENT_IP, '127.0.0.12', '[', ']', ':', 'fd00::1', '80', '0', '65535', '99999', '.', 'server.default');
const traceparentLike = near('00-', '-', '0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', '-01', 'ff', ' ', 'G');

test('Forwarded: any value parses to a canonical endpoint or to nothing, never a throw', () => {
  fc.assert(fc.property(fc.oneof(forwardedLike, utf16(), fc.constant(undefined)), (value) => {
    const endpoint = parseForwardedFor(value);
    if (endpoint === undefined) return;
    assert.equal(canonicalIp(endpoint.ip), endpoint.ip);
    assert.ok(isPort(endpoint.port));
  }), RUNS);
});

test('traceparent: any value gives a 32-hex trace id or nothing', () => {
  fc.assert(fc.property(fc.oneof(traceparentLike, utf16(), fc.constant(undefined)), (value) => {
    const id = traceIdOf(value);
    assert.ok(id === undefined || /^[0-9a-f]{32}$/.test(id), String(id));
  }), RUNS);
});

test('baggage: any workload name is encoded into a valid header value that decodes back', () => {
  fc.assert(fc.property(utf16(), utf16(), utf16(), utf16(), (namespace, name, node, serviceAccount) => {
    const value = baggage(workload({ namespace, name, node, serviceAccount, ips: [] }));
    validateHeaderValue('baggage', value);
    const members = value.split(',').map((m) => decodeURIComponent(m.slice(m.indexOf('=') + 1)));
    assert.deepEqual(members, [namespace, name, node, serviceAccount].map((v) => v.toWellFormed()));
  }), RUNS);
});

/** A header set as HTTP/2 delivers it: strings, or arrays for repeated headers; plus junk no parser should trust. */
const headerValue = fc.oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }), fc.constant(undefined), fc.integer());
const headerSet = fc.record({
  ':method': fc.oneof({ weight: 3, arbitrary: fc.constant('CONNECT') }, fc.constantFrom('GET', 'connect', ''), headerValue),
  ':authority': fc.oneof({ weight: 3, arbitrary: fc.constantFrom(`${SERVER_IP}:8080`, `${CLIENT_IP}:80`) }, authorityLike, headerValue),
  forwarded: fc.oneof(fc.constant(`for="${CLIENT_IP}:4711"`), forwardedLike, headerValue),
  traceparent: fc.oneof(traceparentLike, headerValue),
  baggage: fc.oneof(utf16(), headerValue),
  extra: headerValue,
}, { requiredKeys: [] });

const store = new StateStore();
store.apply({ type: 'snapshot', version: 1, state: twoNodeState(8080) });
const sessions: fc.Arbitrary<SessionTls | undefined> = fc.constantFrom(
  undefined,
  { sni: spiffeId('default', 'default'), client: { identity: spiffeId('default', 'default') } },
  { sni: spiffeId('default', 'default'), client: { error: new Error('no client certificate') } },
  { sni: undefined, client: { identity: spiffeId('default', 'default') } },
);

test('any header set through the inbound plan: a plan, never a throw; a refusal answers 400, 401 or 503', () => {
  fc.assert(fc.property(headerSet, fc.boolean(), sessions, fc.option(fc.record({ ip: fc.constantFrom(CLIENT_IP, '127.0.0.1'), port: fc.integer({ min: 1, max: 65535 }) }), { nil: undefined }),
    (headers, mtls, session, peer) => {
      const request = tunnelRequestOf(headers);
      for (const field of Object.values(request)) assert.ok(field === undefined || typeof field === 'string');
      const plan = planInbound(store.view, { node: 'n2', request, peer, ...(mtls ? { mtls: { trustDomain: 'cluster.local', session } } : {}) });
      switch (plan.kind) {
        case 'refuse':
          assert.ok([400, 401, 503].includes(plan.status), String(plan.status));
          break;
        case 'deny':
          assert.equal(plan.status, 401);
          assert.ok(plan.flow.verdictReason, 'a denial names why');
          break;
        case 'accept':
          assert.equal(plan.target.ip, SERVER_IP, 'only a pod of this node is dialled');
          assert.ok(canonicalIp(plan.flow.source.ip) === plan.flow.source.ip && isPort(plan.flow.source.port));
          break;
      }
    }), RUNS);
});

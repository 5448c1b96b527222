// Property tests over the control protocol: whatever line reaches the
// ztunnel's control socket, parsing and applying it throws nothing but a
// ControlProtocolError (answered with a nack, the last good view serving
// on), and the control server answers every line and keeps running.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import fc from 'fast-check';
import { ControlProtocolError } from '../../lib/core/errors.ts';
import { silentLogger } from '../../lib/core/log.ts';
import { parseControlMessage, type ControlReply } from '../../lib/mesh/control-protocol.ts';
import { StateStore } from '../../lib/mesh/state.ts';
import { convertAuthorizationPolicy, convertPeerAuthentication } from '../../lib/policy/index.ts';
import { startControlServer } from '../../ztunnel/control-server.ts';
import { twoNodeState } from '../ztunnel/fixtures.ts';
import { hostileString } from '../support/hostile.ts';

const RUNS = 400;

/** A valid snapshot with a policy of each kind, as the agent sends one. */
function snapshot(): Record<string, unknown> {
  const state = {
    ...twoNodeState(8080),
    authorizationPolicies: [convertAuthorizationPolicy({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'default' }, spec: { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }], to: [{ operation: { ports: ['80'] } }] }] } })],
    peerAuthentications: [convertPeerAuthentication({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'server' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 80: { mode: 'PERMISSIVE' } } } })],
  };
  return JSON.parse(JSON.stringify({ type: 'snapshot', version: 1, state })) as Record<string, unknown>;
}

const junk: fc.Arbitrary<unknown> = fc.oneof(fc.jsonValue({ maxDepth: 3 }), hostileString, fc.constantFrom(null, -1, 0, 1e308, '10.0.0.0/33', 'fe80::1%eth0', '__proto__', [], {}));

/** `value` with the node at the end of `path` (each step an index among the children there) replaced by `by`, or deleted. */
function mutate(value: unknown, path: readonly number[], by: unknown, remove: boolean): unknown {
  if (path.length === 0 || typeof value !== 'object' || value === null) return by;
  const keys = Object.keys(value);
  if (keys.length === 0) return by;
  const i = path[0]! % keys.length;
  const last = remove && path.length === 1;
  // As JSON has them: an array loses an element, never gets a hole.
  if (Array.isArray(value)) return last ? value.toSpliced(i, 1) : value.with(i, mutate(value[i], path.slice(1), by, remove));
  const copy = { ...(value as Record<string, unknown>) };
  const key = keys[i]!;
  if (last) delete copy[key];
  else copy[key] = mutate(copy[key], path.slice(1), by, remove);
  return copy;
}

const mutated = fc.record({ path: fc.array(fc.nat(), { minLength: 1, maxLength: 7 }), by: junk, remove: fc.boolean(), asDelta: fc.boolean() }).map(({ path, by, remove, asDelta }) => {
  const base = snapshot();
  const message = asDelta ? { type: 'delta', version: 2, upsert: base.state, remove: { workloads: ['uid-local'] } } : base;
  return mutate(message, path, by, remove);
});

/** Parse and apply as the control server does: only a ControlProtocolError may come out, and the view is left as it was. */
function applyLine(store: StateStore, raw: unknown): void {
  const before = store.view;
  try {
    store.apply(parseControlMessage(raw));
  } catch (err) {
    assert.ok(err instanceof ControlProtocolError, `not a ControlProtocolError: ${String(err)}`);
    assert.ok(err.message.length > 0);
    assert.equal(store.view, before, 'a refused message leaves the view');
  }
}

test('any JSON value as a message: parsed, or refused with a ControlProtocolError', () => {
  fc.assert(fc.property(junk, (raw) => applyLine(new StateStore(), raw)), { numRuns: RUNS });
});

test('a valid snapshot or delta with any one part broken: applied, or refused whole with a ControlProtocolError', () => {
  fc.assert(fc.property(mutated, (raw) => {
    const store = new StateStore();
    store.apply(parseControlMessage(snapshot()));
    applyLine(store, raw);
    // Whatever was applied serves lookups.
    const view = store.view!;
    view.workloadByIp('127.0.0.11');
    view.serviceAt('10.96.0.10', 80);
  }), { numRuns: RUNS });
});

test('the control server answers every line, garbage or not, and still takes a snapshot after', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-fuzz-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'control.sock');
  const store = new StateStore();
  const server = await startControlServer({ path, store, log: silentLogger });
  t.after(() => server.close());
  const socket = connect(path);
  await once(socket, 'connect');
  t.after(() => socket.destroy());
  const replies = createInterface({ input: socket })[Symbol.asyncIterator]();
  const send = async (line: string): Promise<ControlReply> => {
    socket.write(`${line}\n`);
    return JSON.parse((await replies.next()).value as string) as ControlReply;
  };
  assert.equal((await send(JSON.stringify(snapshot()))).type, 'ack');
  const lines = fc.sample(fc.oneof(mutated.map((m) => JSON.stringify(m)), fc.string({ unit: fc.constantFrom('{', '}', '"', ':', ',', 'a', '1', '\ud800', '[', ']') })), 150)
    .filter((l) => l.trim() !== '' && !l.includes('\n'));
  for (const line of lines) assert.ok(['ack', 'nack'].includes((await send(line)).type));
  const again = snapshot();
  again.version = 99;
  assert.deepEqual(await send(JSON.stringify(again)), { type: 'ack', version: 99 });
});

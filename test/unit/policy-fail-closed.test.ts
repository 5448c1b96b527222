// A security policy meshlet rejects never widens access: a rejected ALLOW
// denies everything it selects (even what another ALLOW allows), a rejected
// DENY everything it would have covered, a rejected PeerAuthentication is
// STRICT; with no readable selector, its namespace; in the root namespace,
// the mesh. Each says so in status, in the verdict of the flows it denies,
// and in the kernel's inbound mode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../../lib/cluster/cluster-state.ts';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { authorize, effectiveMtlsMode, PolicyStore, type AuthzDecision } from '../../lib/policy/index.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import { inboundEnforcement, portLevelPorts } from '../../agent/inbound-mode.ts';
import { workload } from '../ztunnel/fixtures.ts';

const ROOT = 'meshlet-system';

const ap = (name: string, namespace: string, spec: unknown): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec });
const pa = (name: string, namespace: string, spec: unknown): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace }, spec });

const web = { app: 'web' };
const allowSleep = { selector: { matchLabels: web }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/sleep'] } }] }] };

function converge(objects: KubeObject[]): { state: MeshState; store: PolicyStore; rejected: ReturnType<ClusterState['update']>['rejected'] } {
  const { state, rejected } = new ClusterState({ rootNamespace: ROOT }).update(objects);
  return { state, rejected, store: new PolicyStore(state.authorizationPolicies, state.peerAuthentications) };
}

const ask = (store: PolicyStore, namespace: string, labels: Record<string, string>, from = 'demo/sleep', port = 8080): AuthzDecision => authorize(store, {
  source: { ip: '10.244.1.5', principal: `spiffe://cluster.local/ns/${from.split('/')[0]}/sa/${from.split('/')[1]}` },
  destination: { ip: '10.244.2.7', port, workload: { namespace, labels } },
});

test('a rejected ALLOW denies everything for the workloads it selects, even what a valid ALLOW allows, and says why', () => {
  const { store, rejected } = converge([
    ap('allow-sleep', 'demo', allowSleep),
    // A port name where a number belongs.
    ap('typo', 'demo', { selector: { matchLabels: web }, rules: [{ to: [{ operation: { ports: ['http'] } }] }] }),
  ]);
  const d = ask(store, 'demo', web);
  assert.equal(d.allowed, false);
  assert.equal(d.policy, 'demo/typo');
  assert.match(d.reason, /^denied by AuthorizationPolicy demo\/typo, which fails closed: it was rejected: spec\.rules\[0\]\.to\[0\]\.operation\.ports has "http", which is not a port/);
  // Only what it selects.
  assert.equal(ask(store, 'demo', { app: 'db' }).allowed, true);
  const r = rejected.find((x) => x.object === 'AuthorizationPolicy demo/typo');
  assert.equal(r?.failClosed, 'fails closed: denies every connection to workloads labelled app=web in namespace demo');
});

test('a rejected DENY denies everything it would have covered', () => {
  const { store, rejected } = converge([ap('deny-bad', 'demo', { action: 'DENY', selector: { matchLabels: web }, rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }] }] })]);
  assert.equal(ask(store, 'demo', web).allowed, false);
  assert.equal(ask(store, 'demo', { app: 'db' }).allowed, true);
  assert.match(rejected[0]!.failClosed ?? '', /denies every connection to workloads labelled app=web in namespace demo/);
});

test('with no readable selector a rejected policy covers its namespace; in the root namespace, the mesh', () => {
  const ns = converge([ap('bad-selector', 'demo', { selector: { matchLabels: { app: '*' } }, rules: [{}] })]);
  assert.equal(ask(ns.store, 'demo', { app: 'anything' }).allowed, false);
  assert.equal(ask(ns.store, 'other', web).allowed, true);
  assert.match(ns.rejected[0]!.failClosed ?? '', /every workload in namespace demo/);
  const mesh = converge([ap('bad', ROOT, { action: 'SOMETIMES' })]);
  assert.equal(ask(mesh.store, 'other', web).allowed, false);
  assert.match(mesh.rejected[0]!.failClosed ?? '', /every workload in every namespace/);
});

test('a rejected policy\'s last good form does not stay: the stand-in takes its place', () => {
  const cluster = new ClusterState({ rootNamespace: ROOT });
  cluster.update([ap('allow-sleep', 'demo', allowSleep)]);
  const { state } = cluster.update([ap('allow-sleep', 'demo', { ...allowSleep, rules: [{ from: [{ source: { principal: ['x'] } }] }] })]);
  const store = new PolicyStore(state.authorizationPolicies, []);
  assert.equal(ask(store, 'demo', web).allowed, false, 'sleep was allowed by the last good form');
});

test('an AUDIT policy only marks requests: rejected, it denies nothing', () => {
  const { store, rejected } = converge([ap('audit', 'demo', { action: 'AUDIT', rules: [{}] })]);
  assert.equal(ask(store, 'demo', web).allowed, true);
  assert.equal(rejected[0]!.failClosed, undefined);
});

test('a rejected PeerAuthentication counts as STRICT for what it selects, in Istio\'s order among the valid ones', () => {
  const { store, state, rejected } = converge([
    pa('default', 'demo', { mtls: { mode: 'PERMISSIVE' } }),
    pa('off', 'demo', { selector: { matchLabels: web }, mtls: { mode: 'DISABLE' } }),
  ]);
  assert.equal(effectiveMtlsMode(store, { namespace: 'demo', labels: web }, 8080), 'STRICT');
  assert.equal(effectiveMtlsMode(store, { namespace: 'demo', labels: { app: 'db' } }, 8080), 'PERMISSIVE');
  assert.match(rejected[0]!.failClosed ?? '', /counts as STRICT for workloads labelled app=web in namespace demo/);
  // The kernel's mode: STRICT, and why.
  const w = workload({ name: 'web', ips: ['10.244.1.2'], node: 'n1', namespace: 'demo', labels: web });
  const inbound = inboundEnforcement(w, store, portLevelPorts(state.peerAuthentications));
  assert.equal(inbound.mode, 'STRICT');
  assert.deepEqual(inbound.failClosed, ['PeerAuthentication demo/off']);
});

test('the kernel treats a rejected AuthorizationPolicy as a policy present: no plaintext, and the reason named', () => {
  const { store, state } = converge([pa('default', 'demo', { mtls: { mode: 'PERMISSIVE' } }), ap('typo', 'demo', { selector: { matchLabels: web }, rules: [{ to: [{ operation: { ports: ['http'] } }] }] })]);
  const w = workload({ name: 'web', ips: ['10.244.1.2'], node: 'n1', namespace: 'demo', labels: web });
  const inbound = inboundEnforcement(w, store, portLevelPorts(state.peerAuthentications));
  assert.equal(inbound.mode, 'STRICT');
  assert.deepEqual(inbound.failClosed, ['AuthorizationPolicy demo/typo']);
  const db = inboundEnforcement({ ...w, labels: { app: 'db' } }, store, []);
  assert.deepEqual([db.mode, db.failClosed], ['PERMISSIVE', undefined]);
});

test('valid policies keep Istio\'s order: DENY first, then ALLOW, else allowed', () => {
  const { store } = converge([ap('allow-sleep', 'demo', allowSleep), ap('deny-9000', 'demo', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9000'] } }] }] })]);
  assert.equal(ask(store, 'demo', web, 'demo/sleep', 9000).reason, 'denied by DENY policy demo/deny-9000');
  assert.equal(ask(store, 'demo', web).reason, 'allowed by ALLOW policy demo/allow-sleep');
  assert.equal(ask(store, 'demo', web, 'demo/curl').reason, 'no ALLOW policy for this workload matched');
  assert.equal(ask(store, 'demo', { app: 'db' }).reason, 'no ALLOW policy applies to this workload');
});

// A source address that does not check out, over real sockets at both ends:
// outbound, the kernel's mark (port 0 with the connecting pod's own address)
// is refused as source_mismatch; inbound, a Forwarded claim the peer ztunnel
// may not make is ignored, so an ipBlocks policy judges the peer instead.
// Each shows in the flow, the counter and one warning.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { awaitTunnel } from '../../lib/hbone/client.ts';
import { spiffeId, formatSpiffeId } from '../../lib/identity/spiffe.ts';
import { hboneClientTlsOptions } from '../../lib/identity/tls.ts';
import type { Logger } from '../../lib/core/log.ts';
import { convertAuthorizationPolicy } from '../../lib/policy/index.ts';
import { CLIENT_IP, LOCAL_IP, SERVER_IP, twoNodes, twoNodeState, upstream, workload } from '../ztunnel/fixtures.ts';
import { meshCa } from '../ztunnel/mesh-ca.ts';
import { eventually } from '../support/eventually.ts';

const DEFAULT_SA = spiffeId('default', 'default');
/** A pod on n1 with its own service account: n1's ztunnel holds no certificate for it. */
const VAULT_CLIENT_IP = '127.0.0.13';

function recordingLog(): { log: Logger; warnings: { event: string; fields: Record<string, unknown> }[] } {
  const warnings: { event: string; fields: Record<string, unknown> }[] = [];
  return { warnings, log: { info() {}, error() {}, warn: (event, fields = {}) => void warnings.push({ event, fields: fields as Record<string, unknown> }) } };
}

test('outbound: the kernel\'s source-mismatch mark is refused, under the pod that connected, and shows', async (t) => {
  const { log, warnings } = recordingLog();
  const { n1, dial } = await twoNodes(t, 1, {}, { log });
  // What getsockname answers when the local pod's socket was bound to the client pod's address.
  const client = dial({ ip: LOCAL_IP, port: 0 });
  let port: number | undefined;
  client.once('connect', () => (port = client.localPort));
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  await eventually('flow closed', () => n1.flows.list()[0]?.state === 'closed');
  const [f] = n1.flows.list();
  assert.equal(f.closeReason, 'source_mismatch');
  assert.deepEqual(f.source, { ip: LOCAL_IP, port, workload: { namespace: 'default', name: 'local' } });
  assert.deepEqual(f.claimedSource, { ip: CLIENT_IP, port });
  assert.equal(f.source.identity, undefined, 'carried under no identity');
  assert.match(await n1.metrics.text(), /meshlet_source_mismatches_total\{direction="outbound"\} 1/);
  assert.deepEqual(warnings.filter((w) => w.event === 'source_mismatch').map((w) => [w.fields.pod, w.fields.claimed]), [['default/local', `${CLIENT_IP}:${port}`]]);
});

test('inbound: a Forwarded claim of another identity\'s pod is ignored, so ipBlocks do not admit it', async (t) => {
  const ids = await meshCa(t);
  await ids.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  let reached = 0;
  up.server.on('connection', () => reached++);
  const { log, warnings } = recordingLog();
  const { n1, n2 } = await twoNodes(t, up.port, ids, { log });
  const base = twoNodeState(up.port);
  const state = {
    ...base,
    workloads: [...base.workloads, workload({ name: 'vault-client', serviceAccount: 'vault-client', ips: [VAULT_CLIENT_IP], node: 'n1' })],
    authorizationPolicies: [convertAuthorizationPolicy({
      apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'server-from-vault-client', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ source: { ipBlocks: [`${VAULT_CLIENT_IP}/32`] } }] }] },
    })],
  };
  for (const store of [n1.store, n2.store]) store.apply({ type: 'snapshot', version: 2, state });

  // n1's ztunnel, with the default identity's certificate, names the vault client's address as the source.
  const held = await ids.n1.certs.ensure(DEFAULT_SA);
  const key = { node: { name: 'n2', address: '127.0.0.2' }, source: formatSpiffeId(DEFAULT_SA), destination: formatSpiffeId(DEFAULT_SA), tls: hboneClientTlsOptions(held, DEFAULT_SA) };
  const stream = n1.pool.open(key, { ip: SERVER_IP, port: up.port }, { forwarded: `for="${VAULT_CLIENT_IP}:40000"` });
  await assert.rejects(awaitTunnel(stream, 'n2').ready, { reason: 'denied' });
  assert.equal(reached, 0, 'the pod was never dialled');

  await eventually('inbound flow closed', () => n2.flows.list()[0]?.state === 'closed');
  const [f] = n2.flows.list();
  assert.deepEqual(f.claimedSource, { ip: VAULT_CLIENT_IP, port: 40000 });
  assert.equal(f.source.ip, '127.0.0.1', 'policy judged the peer ztunnel\'s own address');
  assert.equal(f.source.identity, formatSpiffeId(DEFAULT_SA));
  assert.equal(f.verdict, 'deny');
  assert.match(await n2.metrics.text(), /meshlet_source_mismatches_total\{direction="inbound"\} 1/);
  const [warning] = warnings.filter((w) => w.event === 'source_mismatch');
  assert.equal(warning?.fields.claimed, `${VAULT_CLIENT_IP}:40000`);
  assert.equal(warning?.fields.identity, formatSpiffeId(DEFAULT_SA));
  assert.match(String(warning?.fields.reason), /default\/vault-client, whose identity is spiffe:\/\/cluster\.local\/ns\/default\/sa\/vault-client/);
});

test('inbound: the honest claim of a pod on the peer\'s node holds, and its flow has no claimedSource', async (t) => {
  const ids = await meshCa(t);
  await ids.n2.certs.ensure(DEFAULT_SA);
  const up = await upstream(t, (s) => s.pipe(s));
  const { n2, dial } = await twoNodes(t, up.port, ids);
  const client = dial({ ip: SERVER_IP, port: up.port });
  client.end('honest');
  for await (const _ of client) break;
  await eventually('inbound flow', () => n2.flows.list().length === 1);
  const [f] = n2.flows.list();
  assert.equal(f.source.ip, CLIENT_IP);
  assert.deepEqual(f.source.workload, { namespace: 'default', name: 'client' });
  assert.equal(f.claimedSource, undefined);
  assert.doesNotMatch(await n2.metrics.text(), /meshlet_source_mismatches_total\{/);
});

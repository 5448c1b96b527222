// The ztunnel's decisions without sockets: each row runs the outbound or
// inbound planner over one small mesh and compares the whole plan.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spiffeId } from '../../lib/identity/spiffe.ts';
import type { MeshState } from '../../lib/mesh/kinds.ts';
import type { Workload } from '../../lib/mesh/model.ts';
import { StateStore, type StateView } from '../../lib/mesh/state.ts';
import { convertAuthorizationPolicy, type AuthzDecision } from '../../lib/policy/index.ts';
import type { Endpoint } from '../../lib/telemetry/flow.ts';
import { planInbound, type InboundInput, type InboundPlan, type SessionTls } from '../../ztunnel/inbound-plan.ts';
import { planOutbound, type OutboundPlan } from '../../ztunnel/outbound-plan.ts';
import { Resolver } from '../../ztunnel/resolve.ts';
import { service, workload } from '../ztunnel/fixtures.ts';

const N1 = { name: 'n1', address: '192.168.0.1' };
const N2 = { name: 'n2', address: '192.168.0.2' };
const client = workload({ name: 'client', serviceAccount: 'client', ips: ['10.0.1.1'], node: 'n1', labels: { app: 'client' } });
const local = workload({ name: 'local', serviceAccount: 'local', ips: ['10.0.1.2'], node: 'n1', labels: { app: 'local' } });
/** No policy selects it. */
const cache = workload({ name: 'cache', ips: ['10.0.1.3'], node: 'n1', labels: { app: 'cache' } });
const server = workload({ name: 'server', serviceAccount: 'server', ips: ['10.0.2.1'], node: 'n2', labels: { app: 'server' } });
/** No policy selects it. */
const db = workload({ name: 'db', ips: ['10.0.2.2'], node: 'n2', labels: { app: 'db' } });
const legacy = workload({ name: 'legacy', ips: ['10.0.2.9'], node: 'n2', enrolled: false, labels: { app: 'legacy' } });
/** Enrolled, on a node the state has no address for. */
const orphan = workload({ name: 'orphan', ips: ['10.0.3.1'], node: 'n3' });
/** Admits the client's address only (ipBlocks). */
const vault = workload({ name: 'vault', serviceAccount: 'vault', ips: ['10.0.2.5'], node: 'n2', labels: { app: 'vault' } });
/** A node with no workloads. */
const N4 = { name: 'n4', address: '192.168.0.4' };

/** ALLOW only the client's identity into `app`. */
const fromClientOnly = (app: string) => convertAuthorizationPolicy({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `${app}-from-client`, namespace: 'default' },
  spec: { selector: { matchLabels: { app } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/client'] } }] }] },
});

/** ALLOW only from the client's address into `app`. */
const fromClientAddressOnly = (app: string) => convertAuthorizationPolicy({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `${app}-from-client-ip`, namespace: 'default' },
  spec: { selector: { matchLabels: { app } }, rules: [{ from: [{ source: { ipBlocks: ['10.0.1.1/32'] } }] }] },
});

const state: MeshState = {
  nodes: [N1, N2, N4],
  workloads: [client, local, cache, server, db, legacy, orphan, vault],
  services: [
    service({ name: 'server', vips: ['10.96.0.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], endpoints: [{ ip: '10.0.2.1', ports: { http: 8080 } }] }),
    service({ name: 'nobody', vips: ['10.96.0.11'], ports: [{ port: 80, protocol: 'TCP' }] }),
    service({ name: 'legacy', vips: ['10.96.0.12'], ports: [{ port: 80, protocol: 'TCP' }], endpoints: [{ ip: '10.0.2.9', ports: { '': 80 } }] }),
  ],
  authorizationPolicies: [fromClientOnly('local'), fromClientOnly('server'), fromClientAddressOnly('vault')],
  peerAuthentications: [],
  waypoints: [],
  waypointPolicies: [],
};

function viewOf(s: MeshState): StateView {
  const store = new StateStore();
  return store.apply({ type: 'snapshot', version: 1, state: s });
}
const view = viewOf(state);

const TD = 'cluster.local';
const CAPTURE = '192.168.0.1:15001';
const ref = (w: Workload) => ({ namespace: w.namespace, name: w.name });
const uri = (w: Workload) => `spiffe://${TD}/ns/${w.namespace}/sa/${w.serviceAccount}`;
const idOf = (w: Workload) => spiffeId(w.namespace, w.serviceAccount, TD);
const at = (ip: string, port: number): Endpoint => ({ ip, port });
const FROM_CLIENT = at('10.0.1.1', 40000);
/** The client's address, known to the view, with its identity when tunnels are mutual TLS. */
const clientSource = (mtls: boolean) => ({ ...FROM_CLIENT, workload: ref(client), ...(mtls ? { identity: uri(client) } : {}) });
const CLIENT_BAGGAGE = 'k8s.namespace.name=default,k8s.pod.name=client,k8s.node.name=n1,k8s.serviceaccount.name=client';

const allowedBy = (app: string): AuthzDecision => ({ allowed: true, verdict: 'allow', policy: `default/${app}-from-client`, reason: `allowed by ALLOW policy default/${app}-from-client` });
const NOT_MATCHED: AuthzDecision = { allowed: false, verdict: 'deny', reason: 'no ALLOW policy for this workload matched' };
const NO_POLICY: AuthzDecision = { allowed: true, verdict: 'allow', reason: 'no ALLOW policy applies to this workload' };
const verdictFields = (d: AuthzDecision) => ({ verdict: d.verdict, verdictReason: d.reason, ...(d.policy ? { policy: d.policy } : {}) });

interface OutboundRow {
  name: string;
  /** false: no state from the agent yet. */
  ready?: false;
  source?: Endpoint;
  destination: Endpoint;
  mtls: boolean;
  plan: OutboundPlan;
}

const outboundRows: OutboundRow[] = [
  {
    name: 'the kernel marked the source (the local pod bound the client\'s address): refused, recorded under the local pod',
    destination: at('10.0.1.2', 0),
    mtls: true,
    plan: {
      kind: 'refuse', reason: 'source_mismatch',
      flow: { direction: 'outbound', source: { ...at('10.0.1.2', 40000), workload: ref(local) }, claimedSource: FROM_CLIENT, originalDestination: at('0.0.0.0', 0) },
    },
  },
  {
    name: 'the kernel marked the source and had no address of the pod: refused, the pod unknown',
    source: at('fd00::11', 40000),
    destination: at('::', 0),
    mtls: true,
    plan: {
      kind: 'refuse', reason: 'source_mismatch',
      flow: { direction: 'outbound', source: { ...at('::', 40000), workload: undefined }, claimedSource: at('fd00::11', 40000), originalDestination: at('::', 0) },
    },
  },
  {
    name: 'a marked source is refused before anything else, even without state',
    ready: false,
    destination: at('10.0.1.2', 0),
    mtls: false,
    plan: {
      kind: 'refuse', reason: 'source_mismatch',
      flow: { direction: 'outbound', source: { ...at('10.0.1.2', 40000), workload: undefined }, claimedSource: FROM_CLIENT, originalDestination: at('0.0.0.0', 0) },
    },
  },
  {
    name: 'not ready: no state yet',
    ready: false,
    destination: at('10.0.2.1', 8080),
    mtls: true,
    plan: { kind: 'refuse', reason: 'not_ready', flow: { direction: 'outbound', source: { ...FROM_CLIENT, workload: undefined }, originalDestination: at('10.0.2.1', 8080) } },
  },
  {
    name: 'addressed to the capture listener itself: a loop',
    destination: at('192.168.0.1', 15001),
    mtls: true,
    plan: { kind: 'refuse', reason: 'loop', flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('192.168.0.1', 15001) } },
  },
  {
    name: 'outside the mesh: passthrough as addressed',
    destination: at('1.1.1.1', 443),
    mtls: true,
    plan: {
      kind: 'direct', path: 'passthrough', target: at('1.1.1.1', 443),
      flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('1.1.1.1', 443), service: undefined, destination: { ...at('1.1.1.1', 443), workload: undefined, node: undefined }, path: 'passthrough' },
    },
  },
  {
    name: 'a pod that is not enrolled: passthrough, named',
    destination: at('10.0.2.9', 80),
    mtls: true,
    plan: {
      kind: 'direct', path: 'passthrough', target: at('10.0.2.9', 80),
      flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('10.0.2.9', 80), service: undefined, destination: { ...at('10.0.2.9', 80), workload: ref(legacy), node: 'n2' }, path: 'passthrough' },
    },
  },
  {
    name: 'a Service whose pod is not enrolled: passthrough to the pod',
    destination: at('10.96.0.12', 80),
    mtls: true,
    plan: {
      kind: 'direct', path: 'passthrough', target: at('10.0.2.9', 80),
      flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('10.96.0.12', 80), service: { namespace: 'default', name: 'legacy' }, destination: { ...at('10.0.2.9', 80), workload: ref(legacy), node: 'n2' }, path: 'passthrough' },
    },
  },
  {
    name: 'a pod on this node, allowed by its policy: local, decided here',
    destination: at('10.0.1.2', 9000),
    mtls: true,
    plan: {
      kind: 'direct', path: 'local', target: at('10.0.1.2', 9000),
      flow: {
        direction: 'outbound', source: clientSource(true), originalDestination: at('10.0.1.2', 9000), service: undefined,
        destination: { ...at('10.0.1.2', 9000), workload: ref(local), node: 'n1', identity: uri(local) }, path: 'local', security: 'mutual_tls', ...verdictFields(allowedBy('local')),
      },
      authz: { request: { source: { ip: '10.0.1.1', principal: uri(client) }, destination: { ip: '10.0.1.2', port: 9000, workload: local } }, decision: allowedBy('local') },
    },
  },
  {
    name: 'a pod on this node, from an address that is no workload: refused, neither judged nor carried',
    source: at('10.0.1.99', 40000),
    destination: at('10.0.1.2', 9000),
    mtls: true,
    plan: { kind: 'refuse', reason: 'unknown_source', flow: { direction: 'outbound', source: { ...at('10.0.1.99', 40000), workload: undefined }, originalDestination: at('10.0.1.2', 9000) } },
  },
  {
    name: 'a pod on this node, cleartext: no principal, so its policy denies',
    destination: at('10.0.1.2', 9000),
    mtls: false,
    plan: {
      kind: 'deny', status: 401,
      flow: {
        direction: 'outbound', source: clientSource(false), originalDestination: at('10.0.1.2', 9000), service: undefined,
        destination: { ...at('10.0.1.2', 9000), workload: ref(local), node: 'n1' }, path: 'local', security: 'plaintext', ...verdictFields(NOT_MATCHED),
      },
      authz: { request: { source: { ip: '10.0.1.1' }, destination: { ip: '10.0.1.2', port: 9000, workload: local } }, decision: NOT_MATCHED },
    },
  },
  {
    name: 'a pod on this node that no policy selects: allowed',
    destination: at('10.0.1.3', 6379),
    mtls: false,
    plan: {
      kind: 'direct', path: 'local', target: at('10.0.1.3', 6379),
      flow: {
        direction: 'outbound', source: clientSource(false), originalDestination: at('10.0.1.3', 6379), service: undefined,
        destination: { ...at('10.0.1.3', 6379), workload: ref(cache), node: 'n1' }, path: 'local', security: 'plaintext', ...verdictFields(NO_POLICY),
      },
      authz: { request: { source: { ip: '10.0.1.1' }, destination: { ip: '10.0.1.3', port: 6379, workload: cache } }, decision: NO_POLICY },
    },
  },
  {
    name: 'a pod on another node: tunnel via its node, mutual TLS as the client',
    destination: at('10.0.2.1', 8080),
    mtls: true,
    plan: {
      kind: 'tunnel', target: at('10.0.2.1', 8080), via: N2, headers: { forwarded: 'for="10.0.1.1:40000"', baggage: CLIENT_BAGGAGE },
      flow: {
        direction: 'outbound', source: clientSource(true), originalDestination: at('10.0.2.1', 8080), service: undefined,
        destination: { ...at('10.0.2.1', 8080), workload: ref(server), node: 'n2', identity: uri(server) }, path: 'tunnel', security: 'mutual_tls',
      },
      mtls: { source: idOf(client), destination: idOf(server) },
    },
  },
  {
    name: 'a pod on another node, cleartext tunnels',
    destination: at('10.0.2.1', 8080),
    mtls: false,
    plan: {
      kind: 'tunnel', target: at('10.0.2.1', 8080), via: N2, headers: { forwarded: 'for="10.0.1.1:40000"', baggage: CLIENT_BAGGAGE },
      flow: {
        direction: 'outbound', source: clientSource(false), originalDestination: at('10.0.2.1', 8080), service: undefined,
        destination: { ...at('10.0.2.1', 8080), workload: ref(server), node: 'n2' }, path: 'tunnel', security: 'plaintext',
      },
    },
  },
  {
    name: 'a pod on another node from an address that is no workload: refused, no tunnel without an identity',
    source: at('10.0.1.99', 40000),
    destination: at('10.0.2.1', 8080),
    mtls: true,
    plan: { kind: 'refuse', reason: 'unknown_source', flow: { direction: 'outbound', source: { ...at('10.0.1.99', 40000), workload: undefined }, originalDestination: at('10.0.2.1', 8080) } },
  },
  {
    name: 'a Service VIP with an endpoint: tunnel to the pod on its named port',
    destination: at('10.96.0.10', 80),
    mtls: true,
    plan: {
      kind: 'tunnel', target: at('10.0.2.1', 8080), via: N2, headers: { forwarded: 'for="10.0.1.1:40000"', baggage: CLIENT_BAGGAGE },
      flow: {
        direction: 'outbound', source: clientSource(true), originalDestination: at('10.96.0.10', 80), service: { namespace: 'default', name: 'server' },
        destination: { ...at('10.0.2.1', 8080), workload: ref(server), node: 'n2', identity: uri(server) }, path: 'tunnel', security: 'mutual_tls',
      },
      mtls: { source: idOf(client), destination: idOf(server) },
    },
  },
  {
    name: 'a Service VIP without endpoints: no_endpoint',
    destination: at('10.96.0.11', 80),
    mtls: true,
    plan: { kind: 'refuse', reason: 'no_endpoint', flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('10.96.0.11', 80), service: { namespace: 'default', name: 'nobody' } } },
  },
  {
    name: 'an enrolled pod whose node is unknown: no_route (fail closed)',
    destination: at('10.0.3.1', 80),
    mtls: true,
    plan: { kind: 'refuse', reason: 'no_route', flow: { direction: 'outbound', source: clientSource(true), originalDestination: at('10.0.3.1', 80), service: undefined } },
  },
];

for (const row of outboundRows) {
  test(`outbound: ${row.name}`, () => {
    const plan = planOutbound(row.ready === false ? undefined : view, {
      source: row.source ?? FROM_CLIENT,
      destination: row.destination,
      ownAddresses: new Set([CAPTURE]),
      resolver: new Resolver('n1'),
      ...(row.mtls ? { trustDomain: TD } : {}),
    });
    assert.deepEqual(plan, row.plan);
  });
}

test('outbound: a Service VIP balances round robin through the resolver passed in', () => {
  const [serverService, ...otherServices] = state.services;
  const twoEndpoints = viewOf({
    ...state,
    workloads: [...state.workloads, workload({ name: 'server-b', ips: ['10.0.1.5'], node: 'n1', labels: { app: 'server' } })],
    services: [{ ...serverService!, endpoints: [...serverService!.endpoints, { ip: '10.0.1.5', ports: { http: 8081 } }] }, ...otherServices],
  });
  const resolver = new Resolver('n1');
  const plans = [1, 2, 3].map(() => planOutbound(twoEndpoints, { source: FROM_CLIENT, destination: at('10.96.0.10', 80), ownAddresses: new Set(), resolver, trustDomain: TD }));
  assert.deepEqual(plans.map((p) => (p.kind === 'tunnel' || p.kind === 'direct' ? `${p.kind} ${p.target.ip}:${p.target.port}` : p.kind)), ['tunnel 10.0.2.1:8080', 'direct 10.0.1.5:8081', 'tunnel 10.0.2.1:8080']);
});

interface InboundRow {
  name: string;
  request?: Partial<InboundInput['request']>;
  /** The session's remote address; absent: node n1's ztunnel (the client's node); null: none. */
  peer?: Endpoint | null;
  /** Mutual TLS with these session facts (undefined: the socket is gone); absent: cleartext. */
  session?: SessionTls | undefined;
  cleartext?: true;
  plan: InboundPlan;
}

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
const CONNECT_SERVER = { method: 'CONNECT', authority: '10.0.2.1:8080', forwarded: 'for="10.0.1.1:40000"', traceparent: TRACEPARENT };
const asClient: SessionTls = { sni: idOf(server), client: { identity: idOf(client) } };
const unverified = new Error('the client certificate did not verify: CERT_HAS_EXPIRED');

/** Node n1's ztunnel, where the client and local pods are. */
const FROM_N1 = at('192.168.0.1', 51000);
const TO_VAULT = { method: 'CONNECT', authority: '10.0.2.5:8080', forwarded: 'for="10.0.1.1:40000"', traceparent: TRACEPARENT };
const ALLOWED_BY_CLIENT_IP: AuthzDecision = { allowed: true, verdict: 'allow', policy: 'default/vault-from-client-ip', reason: 'allowed by ALLOW policy default/vault-from-client-ip' };
/** A stream to vault whose Forwarded claim (the client's address) is ignored: policy judges the peer, so vault's ipBlocks do not match. */
const claimIgnored = (peer: Endpoint, identity: Workload | undefined, sourceMismatch: string, claimed = FROM_CLIENT): InboundPlan => {
  const principal = identity ? { principal: uri(identity) } : {};
  return {
    kind: 'deny', status: 401,
    flow: {
      direction: 'inbound', source: { ...peer, workload: undefined, ...(identity ? { identity: uri(identity) } : {}) }, claimedSource: claimed,
      originalDestination: at('10.0.2.5', 8080), destination: { ...at('10.0.2.5', 8080), workload: ref(vault), node: 'n2', ...(identity ? { identity: uri(vault) } : {}) },
      path: 'tunnel', traceId: '0af7651916cd43dd8448eb211c80319c', security: identity ? 'mutual_tls' : 'plaintext', ...verdictFields(NOT_MATCHED),
    },
    authz: { request: { source: { ip: peer.ip, ...principal }, destination: { ip: '10.0.2.5', port: 8080, workload: vault } }, decision: NOT_MATCHED },
    sourceMismatch,
  };
};
const toVaultAs = (w: Workload): SessionTls => ({ sni: idOf(vault), client: { identity: idOf(w) } });

const inboundRows: InboundRow[] = [
  {
    name: 'not a CONNECT: 400',
    request: { method: 'GET' },
    session: asClient,
    plan: { kind: 'refuse', status: 400, log: { method: 'GET', authority: '10.0.2.1:8080' } },
  },
  {
    name: 'an authority that is no host:port: 400',
    request: { authority: 'server.default' },
    session: asClient,
    plan: { kind: 'refuse', status: 400, log: { method: 'CONNECT', authority: 'server.default' } },
  },
  {
    name: 'not a known pod: 503',
    request: { authority: '10.0.9.9:80' },
    session: asClient,
    plan: { kind: 'refuse', status: 503, log: { authority: '10.0.9.9:80', reason: 'not a known pod' } },
  },
  {
    name: 'a pod on another node: 503, not an open relay',
    request: { authority: '10.0.1.2:9000' },
    session: asClient,
    plan: { kind: 'refuse', status: 503, log: { authority: '10.0.1.2:9000', reason: 'pod is on node n1' } },
  },
  {
    name: 'no Forwarded header and no peer address: 400',
    request: { forwarded: undefined },
    peer: null,
    session: asClient,
    plan: { kind: 'refuse', status: 400 },
  },
  {
    name: 'the session\'s TLS socket is gone: 400',
    session: undefined,
    plan: { kind: 'refuse', status: 400 },
  },
  {
    name: 'SNI named another workload\'s identity: 400',
    session: { ...asClient, sni: idOf(db) },
    plan: { kind: 'refuse', status: 400, log: { authority: '10.0.2.1:8080', reason: `the session is for ${uri(db)}, the target is ${uri(server)}` } },
  },
  {
    name: 'SNI named no local identity: 400',
    session: { ...asClient, sni: undefined },
    plan: { kind: 'refuse', status: 400, log: { authority: '10.0.2.1:8080', reason: `the session is for no local identity, the target is ${uri(server)}` } },
  },
  {
    name: 'a client whose certificate did not verify: 401',
    session: { ...asClient, client: { error: unverified } },
    plan: { kind: 'refuse', status: 401, log: { authority: '10.0.2.1:8080', error: unverified } },
  },
  {
    name: 'an identity the target\'s policy does not allow: denied, 401, with a flow',
    request: { forwarded: 'for="10.0.1.2:40000"' },
    session: { ...asClient, client: { identity: idOf(local) } },
    plan: {
      kind: 'deny', status: 401,
      flow: {
        direction: 'inbound', source: { ...at('10.0.1.2', 40000), workload: ref(local), identity: uri(local) }, originalDestination: at('10.0.2.1', 8080),
        destination: { ...at('10.0.2.1', 8080), workload: ref(server), node: 'n2', identity: uri(server) }, path: 'tunnel',
        traceId: '0af7651916cd43dd8448eb211c80319c', security: 'mutual_tls', ...verdictFields(NOT_MATCHED),
      },
      authz: { request: { source: { ip: '10.0.1.2', principal: uri(local) }, destination: { ip: '10.0.2.1', port: 8080, workload: server } }, decision: NOT_MATCHED },
    },
  },
  {
    name: 'the allowed client: accept, both identities and the trace in the flow',
    session: asClient,
    plan: {
      kind: 'accept', target: at('10.0.2.1', 8080),
      flow: {
        direction: 'inbound', source: { ...FROM_CLIENT, workload: ref(client), identity: uri(client) }, originalDestination: at('10.0.2.1', 8080),
        destination: { ...at('10.0.2.1', 8080), workload: ref(server), node: 'n2', identity: uri(server) }, path: 'tunnel',
        traceId: '0af7651916cd43dd8448eb211c80319c', security: 'mutual_tls', ...verdictFields(allowedBy('server')),
      },
      authz: { request: { source: { ip: '10.0.1.1', principal: uri(client) }, destination: { ip: '10.0.2.1', port: 8080, workload: server } }, decision: allowedBy('server') },
    },
  },
  {
    name: 'cleartext, no Forwarded header: the peer is the source; a pod no policy selects accepts',
    request: { authority: '10.0.2.2:5432', forwarded: undefined, traceparent: undefined },
    peer: at('192.168.0.1', 51000),
    cleartext: true,
    plan: {
      kind: 'accept', target: at('10.0.2.2', 5432),
      flow: {
        direction: 'inbound', source: { ...at('192.168.0.1', 51000), workload: undefined }, originalDestination: at('10.0.2.2', 5432),
        destination: { ...at('10.0.2.2', 5432), workload: ref(db), node: 'n2' }, path: 'tunnel', traceId: undefined, security: 'plaintext', ...verdictFields(NO_POLICY),
      },
      authz: { request: { source: { ip: '192.168.0.1' }, destination: { ip: '10.0.2.2', port: 5432, workload: db } }, decision: NO_POLICY },
    },
  },
  {
    name: 'the client claiming its own address from its node: the claim holds, and ipBlocks match it',
    request: TO_VAULT,
    session: toVaultAs(client),
    plan: {
      kind: 'accept', target: at('10.0.2.5', 8080),
      flow: {
        direction: 'inbound', source: { ...FROM_CLIENT, workload: ref(client), identity: uri(client) }, originalDestination: at('10.0.2.5', 8080),
        destination: { ...at('10.0.2.5', 8080), workload: ref(vault), node: 'n2', identity: uri(vault) }, path: 'tunnel',
        traceId: '0af7651916cd43dd8448eb211c80319c', security: 'mutual_tls', ...verdictFields(ALLOWED_BY_CLIENT_IP),
      },
      authz: { request: { source: { ip: '10.0.1.1', principal: uri(client) }, destination: { ip: '10.0.2.5', port: 8080, workload: vault } }, decision: ALLOWED_BY_CLIENT_IP },
    },
  },
  {
    name: 'another identity claiming the client\'s address: the claim is ignored, policy judges the peer',
    request: TO_VAULT,
    session: toVaultAs(local),
    plan: claimIgnored(FROM_N1, local, `10.0.1.1 is default/client, whose identity is ${uri(client)}; the peer's certificate is ${uri(local)}`),
  },
  {
    name: 'the client\'s identity, but from another node than the client\'s: the claim is ignored',
    request: TO_VAULT,
    peer: at('192.168.0.4', 51000),
    session: toVaultAs(client),
    plan: claimIgnored(at('192.168.0.4', 51000), client, '10.0.1.1 is default/client on node n1, the peer is node n4'),
  },
  {
    name: 'a claim from a peer that is no node: ignored',
    request: TO_VAULT,
    peer: at('192.168.9.9', 51000),
    session: toVaultAs(client),
    plan: claimIgnored(at('192.168.9.9', 51000), client, 'the peer 192.168.9.9 is no node\'s address'),
  },
  {
    name: 'a claim of an address that is no workload: ignored',
    request: { ...TO_VAULT, forwarded: 'for="10.0.1.99:40000"' },
    session: toVaultAs(client),
    plan: claimIgnored(FROM_N1, client, '10.0.1.99 is no workload', at('10.0.1.99', 40000)),
  },
  {
    name: 'cleartext: a claim of a workload on the peer\'s node holds (no identity to check)',
    request: TO_VAULT,
    cleartext: true,
    plan: {
      kind: 'accept', target: at('10.0.2.5', 8080),
      flow: {
        direction: 'inbound', source: { ...FROM_CLIENT, workload: ref(client) }, originalDestination: at('10.0.2.5', 8080),
        destination: { ...at('10.0.2.5', 8080), workload: ref(vault), node: 'n2' }, path: 'tunnel',
        traceId: '0af7651916cd43dd8448eb211c80319c', security: 'plaintext', ...verdictFields(ALLOWED_BY_CLIENT_IP),
      },
      authz: { request: { source: { ip: '10.0.1.1' }, destination: { ip: '10.0.2.5', port: 8080, workload: vault } }, decision: ALLOWED_BY_CLIENT_IP },
    },
  },
  {
    name: 'cleartext: a claim from another node than the workload\'s is ignored',
    request: TO_VAULT,
    peer: at('192.168.0.4', 51000),
    cleartext: true,
    plan: claimIgnored(at('192.168.0.4', 51000), undefined, '10.0.1.1 is default/client on node n1, the peer is node n4'),
  },
];

for (const row of inboundRows) {
  test(`inbound: ${row.name}`, () => {
    const plan = planInbound(view, {
      node: 'n2',
      request: { ...CONNECT_SERVER, ...row.request },
      peer: row.peer === null ? undefined : (row.peer ?? FROM_N1),
      ...(row.cleartext ? {} : { mtls: { trustDomain: TD, session: row.session } }),
    });
    assert.deepEqual(plan, row.plan);
  });
}

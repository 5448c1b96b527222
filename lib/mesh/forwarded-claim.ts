// Whether the source a tunnel's Forwarded header claims may be believed: the
// claim is the peer ztunnel's word, taken only if it names a workload on the
// peer's own node (the node whose address the session comes from) with the
// identity the peer's certificate proved. Every end of HBONE that reads a
// claim (the ztunnel's inbound side, the waypoint's listener) checks it this
// one way; any other claim is ignored, so the peer itself is the source.
import { canonicalIp } from '../core/ip.ts';
import { identityOf } from '../identity/mesh-identity.ts';
import { formatSpiffeId, sameIdentity, type SpiffeId } from '../identity/spiffe.ts';
import type { Endpoint } from '../telemetry/flow.ts';
import type { MeshNode } from './model.ts';
import type { StateView } from './state.ts';

/** Nodes by the canonical spelling of their address, built once per view. */
const nodesByAddress = new WeakMap<StateView, ReadonlyMap<string, MeshNode>>();

/** The node whose address `ip` is, in `view`. */
export function nodeAt(view: StateView, ip: string): MeshNode | undefined {
  let byAddress = nodesByAddress.get(view);
  if (!byAddress) {
    const index = new Map<string, MeshNode>();
    for (const n of view.nodes.values()) {
      const address = canonicalIp(n.address);
      if (address !== undefined) index.set(address, n);
    }
    nodesByAddress.set(view, (byAddress = index));
  }
  return byAddress.get(ip);
}

/**
 * Why the peer may not claim `claimed` as the source, or undefined when it
 * may: a workload on the peer's node, with the peer certificate's identity
 * when the session has one (cleartext tunnels prove no identity, so only the
 * node is checked).
 */
export function claimRefusal(view: StateView, claimed: Endpoint, peer: Endpoint | undefined, mtls: { trustDomain: string; identity: SpiffeId } | undefined): string | undefined {
  const node = peer && nodeAt(view, peer.ip);
  if (!node) return peer ? `the peer ${peer.ip} is no node's address` : 'the session has no peer address';
  const w = view.workloadByIp(claimed.ip);
  if (!w) return `${claimed.ip} is no workload`;
  const name = `${w.namespace}/${w.name}`;
  if (w.node !== node.name) return `${claimed.ip} is ${name} on node ${w.node}, the peer is node ${node.name}`;
  if (!mtls) return undefined;
  const expected = identityOf(w, mtls.trustDomain);
  if (sameIdentity(expected, mtls.identity)) return undefined;
  return `${claimed.ip} is ${name}, whose identity is ${formatSpiffeId(expected)}; the peer's certificate is ${formatSpiffeId(mtls.identity)}`;
}

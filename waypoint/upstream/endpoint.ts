// What the upstream side knows of one endpoint of a service, and of the
// request being balanced. The route side resolves a Service port to these
// (pod address, targetPort, the pod's node and identity, its labels for
// subsets); nothing here reads raw cluster objects.
import { hostPort } from '../../lib/core/ip.ts';
import type { SpiffeId } from '../../lib/identity/spiffe.ts';
import type { MeshNode } from '../../lib/mesh/model.ts';

export interface UpstreamEndpoint {
  /** The pod's address. */
  readonly ip: string;
  /** The pod's port (the Service port's targetPort, resolved). */
  readonly port: number;
  /** The node whose ztunnel fronts the pod: hop 2's HBONE goes to its address. */
  readonly node: MeshNode;
  /** The pod's workload identity: named in SNI, and the only certificate its ztunnel may present. */
  readonly identity: SpiffeId;
  /** The pod's labels, which DestinationRule subsets select on. */
  readonly labels: Readonly<Record<string, string>>;
}

/** `podIP:port`: an endpoint's key in every per-endpoint table, and hop 2's `:authority`. */
export const endpointKey = (e: Pick<UpstreamEndpoint, 'ip' | 'port'>): string => hostPort(e.ip, e.port);

/** Whether `e` carries every label of a subset's selector. */
export const matchesLabels = (e: UpstreamEndpoint, selector: Readonly<Record<string, string>>): boolean =>
  Object.entries(selector).every(([k, v]) => e.labels[k] === v);

/** The parts of a request that balancing reads (consistent hashing); a view, never a copy. */
export interface RequestView {
  /** Headers by lower-case name, as Node's http and http2 modules hand them over. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The request target: path and query. */
  readonly path: string;
  /** The client's address, as hop 1's Forwarded header named it. */
  readonly sourceIp: string;
  /** The client's port; with the address, the seed of a generated hash cookie (as Envoy's). */
  readonly sourcePort?: number;
}

// What a tunnel's `:authority` named, as the waypoint serves it: a Service
// port (VIP traffic) or a pod's own port (pod-IP traffic), with the mesh
// objects behind it. The downstream side reads only TunnelDestination's
// fields (kind, names, the port's declaration); the router reads the rest.
import type { Service, ServicePort, Workload } from '../lib/mesh/model.ts';
import type { PortDeclaration } from './downstream/protocol.ts';

export interface ServiceDestination {
  readonly kind: 'service';
  readonly namespace: string;
  readonly name: string;
  readonly port: ServicePort;
  readonly service: Service;
  /** Its FQDN: what routes, DestinationRules and policies name it by. */
  readonly host: string;
  /** The VIP the client dialled. */
  readonly vip: string;
}

export interface WorkloadDestination {
  readonly kind: 'workload';
  readonly namespace: string;
  readonly name: string;
  /** The pod's port, declared as the Services that send to it declare it (none: detected). */
  readonly port: PortDeclaration & { readonly port: number };
  readonly workload: Workload;
  /** The pod address the client dialled. */
  readonly ip: string;
}

export type WaypointDestination = ServiceDestination | WorkloadDestination;

/** The host a request to `d` is routed and authorized by: the Service's FQDN, or (naming no Service) the pod's address. */
export const hostOf = (d: WaypointDestination): string => (d.kind === 'service' ? d.host : d.ip);

/** The address the client dialled: `destination.ip` for authorization. */
export const addressOf = (d: WaypointDestination): string => (d.kind === 'service' ? d.vip : d.ip);

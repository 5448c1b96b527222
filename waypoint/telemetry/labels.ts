// Istio's standard metric labels for one request, with reporter="waypoint".
// Every value comes from mesh state or a bounded set (status codes, flags,
// protocols), never from the request's path, query or free-form headers, so
// the series a waypoint exports stay bounded by the cluster's topology.
import { formatResponseFlags } from './response-flags.ts';
import type { PeerWorkload, RequestRecord } from './request-record.ts';

export const REQUEST_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type RequestLabels = Record<(typeof REQUEST_LABELS)[number], string>;

const UNKNOWN = 'unknown';

/** gRPC's status codes run 0 (OK) to 16 (UNAUTHENTICATED); anything else a server sends is one label value, not one each. */
function grpcStatusLabel(r: RequestRecord): string {
  if (!r.grpc) return '';
  const s = r.grpcStatus;
  if (s === undefined) return '';
  return /^\d{1,2}$/.test(s) && Number(s) <= 16 ? String(Number(s)) : UNKNOWN;
}

/** HTTP status codes are three digits; 0 means no response was sent. */
const responseCodeLabel = (code: number): string => (Number.isInteger(code) && code >= 0 && code <= 999 ? String(code) : UNKNOWN);

const value = (v: string | undefined): string => v ?? UNKNOWN;

const securityLabel = (r: RequestRecord): string => (r.connectionSecurity === 'mutual_tls' ? 'mutual_tls' : 'none');

const sourceLabels = (p: PeerWorkload) => ({
  source_workload: value(p.workload),
  source_workload_namespace: value(p.namespace),
  source_principal: value(p.principal),
  source_app: value(p.app),
  source_version: value(p.version),
  source_canonical_service: value(p.canonicalService),
  source_canonical_revision: value(p.canonicalRevision),
  source_cluster: value(p.cluster),
});

const destinationLabels = (p: PeerWorkload) => ({
  destination_workload: value(p.workload),
  destination_workload_namespace: value(p.namespace),
  destination_principal: value(p.principal),
  destination_app: value(p.app),
  destination_version: value(p.version),
  destination_canonical_service: value(p.canonicalService),
  destination_canonical_revision: value(p.canonicalRevision),
  destination_cluster: value(p.cluster),
});

/** `clusterDomain`: the DNS suffix of Service names (destination_service is `<name>.<namespace>.svc.<domain>`). */
export function requestLabels(r: RequestRecord, clusterDomain = 'cluster.local'): RequestLabels {
  const { service } = r;
  return {
    reporter: 'waypoint',
    ...sourceLabels(r.source),
    ...destinationLabels(r.destination),
    destination_service: service ? `${service.name}.${service.namespace}.svc.${clusterDomain}` : UNKNOWN,
    destination_service_name: service?.name ?? UNKNOWN,
    destination_service_namespace: service?.namespace ?? UNKNOWN,
    request_protocol: r.grpc ? 'grpc' : 'http',
    response_code: responseCodeLabel(r.responseCode),
    grpc_response_status: grpcStatusLabel(r),
    response_flags: formatResponseFlags(r.responseFlags),
    connection_security_policy: securityLabel(r),
  };
}

/** A peer's label values, joined: made once per PeerWorkload object (they are shared, read-only, per workload), from the same function as its labels. */
const peerKeys = new WeakMap<PeerWorkload, string>();

function peerKey(p: PeerWorkload): string {
  let key = peerKeys.get(p);
  if (key === undefined) {
    key = Object.values(sourceLabels(p)).join('\u0000');
    peerKeys.set(p, key);
  }
  return key;
}

/**
 * What requestLabels' values are, as one string: equal keys, equal labels.
 * Made per request instead of the 25 labels, which are built only for a
 * series not seen before.
 */
export function requestSeriesKey(r: RequestRecord): string {
  const service = r.service ? `${r.service.namespace}/${r.service.name}` : '';
  return `${peerKey(r.source)}\u0001${peerKey(r.destination)}\u0001${service}\u0001${r.grpc ? 'g' : 'h'}${responseCodeLabel(r.responseCode)}\u0001${grpcStatusLabel(r)}\u0001${formatResponseFlags(r.responseFlags)}\u0001${securityLabel(r)}`;
}

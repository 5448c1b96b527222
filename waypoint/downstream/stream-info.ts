// What the handler learns while it serves a request and the telemetry needs
// afterwards (Envoy's StreamInfo): the route, the upstream, the response
// flags and the details of how the response came about. The handler sets
// these; the exchange adds the downstream facts (status, bytes, timing).
import type { PeerWorkload } from '../telemetry/request-record.ts';
import type { ResponseFlag } from '../telemetry/response-flags.ts';

export class StreamInfo {
  routeName: string | undefined;
  /** Envoy's cluster name for the chosen destination (subset included). */
  upstreamCluster: string | undefined;
  /** `ip:port` of the endpoint the request went to. */
  upstreamHost: string | undefined;
  upstreamTransportFailureReason: string | undefined;
  /** The endpoint's workload (the destination_* labels). */
  destination: PeerWorkload | undefined;
  /** Envoy's response code details; via_upstream unless a local reply or the handler says otherwise. */
  responseCodeDetails: string | undefined;
  /** From the request's end to the upstream's response head, ms (also sent as x-envoy-upstream-service-time). */
  upstreamServiceTimeMs: number | undefined;
  readonly #flags: ResponseFlag[] = [];

  get responseFlags(): readonly ResponseFlag[] {
    return this.#flags;
  }

  /** Sets a flag once; flags print in the order they were set. */
  flag(flag: ResponseFlag): void {
    if (!this.#flags.includes(flag)) this.#flags.push(flag);
  }
}

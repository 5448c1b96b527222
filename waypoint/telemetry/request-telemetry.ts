// Where a finished request goes: the metrics, one access-log line, the
// recent-requests ring. The downstream side calls record() once per request.
import type { AccessLog } from './access-log.ts';
import type { WaypointMetrics } from './metrics.ts';
import type { RecentRequests } from './recent-requests.ts';
import type { RequestRecord } from './request-record.ts';

export class RequestTelemetry {
  readonly #metrics: WaypointMetrics;
  readonly #log: AccessLog | undefined;
  readonly #recent: RecentRequests;

  /** Without `log`, no access log is written (meshConfig.accessLogFile unset, in Istio's terms). */
  constructor(parts: { metrics: WaypointMetrics; recent: RecentRequests; log?: AccessLog }) {
    this.#metrics = parts.metrics;
    this.#recent = parts.recent;
    this.#log = parts.log;
  }

  /** Writes the access-log lines still waiting for their batch. */
  flush(): void {
    this.#log?.flush();
  }

  readonly record = (r: RequestRecord): void => {
    this.#metrics.request(r);
    this.#recent.add(r);
    this.#log?.write(r);
  };
}

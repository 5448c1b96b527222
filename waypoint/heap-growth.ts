// After each full collection V8 lets the old generation grow to a multiple of
// what survived before collecting it again, up to 4x when collections are
// fast. A busy waypoint promotes the requests in flight at every scavenge, so
// under the bench's load its old generation swung between ~23 MiB live and
// ~90 MiB: most of its resident memory. Growth of 1.5x collects more often:
// RssAnon at 1,000 req/s went from 119 MiB to 66 MiB in the bench, for a few
// percent more CPU a request (1.2x took more CPU and saved nothing more). It
// costs tail latency: a full collection about every 0.7 s under load, each
// holding the event loop 5-30 ms, doubled the bench's p99 at 1,000 req/s
// (about 15 to 28 ms).
// NODE_OPTIONS does not allow the flag; V8 reads it at each collection, so the
// waypoint sets it as it starts.
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWTH_FLAG = '--heap-growing-percent=50';

export function limitHeapGrowth(): void {
  setFlagsFromString(HEAP_GROWTH_FLAG);
}

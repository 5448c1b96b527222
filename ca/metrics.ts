// The CA's Prometheus metrics, on its own registry (served at GET /metrics).
import { Counter, Gauge, Registry } from 'prom-client';

export class CaMetrics {
  readonly registry = new Registry();
  readonly issued = new Counter({
    name: 'meshlet_ca_certificates_issued_total',
    help: 'Workload certificates signed.',
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'meshlet_ca_refusals_total',
    help: 'Requests the CA refused, by reason (unauthenticated, not-hosted, bad-san, bad-signature, ...).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  /** The Kubernetes authenticator's calls to the API server (ca/token-review.ts). */
  readonly tokenReviews = new Counter({
    name: 'meshlet_ca_token_reviews_total',
    help: 'TokenReviews of callers\' tokens the CA asked the API server for, by result (authenticated, rejected, failed: the API server could not be asked).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reviewCache = new Counter({
    name: 'meshlet_ca_token_review_cache_total',
    help: 'Lookups of a caller\'s token in the cache of successful TokenReviews, by result (hit, miss); a miss costs a TokenReview.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly rejectedCache = new Counter({
    name: 'meshlet_ca_token_rejection_cache_total',
    help: 'Lookups of a caller\'s token, after a miss among successful reviews, among tokens the API server rejected lately, by result (hit: refused again without a TokenReview, miss).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly rejectedCacheEntries = new Gauge({
    name: 'meshlet_ca_token_rejection_cache_entries',
    help: 'Tokens (by hash) the CA holds as rejected by the API server lately; bounded.',
    registers: [this.registry],
  });
  readonly reviewsInFlight = new Gauge({
    name: 'meshlet_ca_token_reviews_in_flight',
    help: 'TokenReviews the CA is waiting on the API server for; bounded.',
    registers: [this.registry],
  });
  /** The waypoint controller (ca/waypoint-controller.ts), when it runs. */
  readonly waypointReconciles = new Counter({
    name: 'meshlet_ca_waypoint_reconciles_total',
    help: 'Waypoint Gateways reconciled, by outcome (ready, deployed: waiting for an available replica, rejected: not deployable as written, failed: the API server refused an object or a name is taken).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly reviewsBusy = new Counter({
    name: 'meshlet_ca_token_reviews_busy_total',
    help: 'Callers refused at once (503 reviews-busy) because as many TokenReviews as the CA runs at once were in flight.',
    registers: [this.registry],
  });
}

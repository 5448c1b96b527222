// The CA's Prometheus metrics, on its own registry (served at GET /metrics).
import { Counter, Registry } from 'prom-client';

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
}

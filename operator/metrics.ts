// The operator's Prometheus metrics, in one registry served on /metrics.
import { Counter, Gauge, Histogram, Registry } from '../metrics/registry.ts';

export function createMetrics(registry = new Registry()) {
  return {
    registry,
    reconciles: new Counter({
      name: 'airlock_reconciles_total',
      help: 'Reconciles by kind and result (updated, unchanged, error).',
      labelNames: ['kind', 'result'],
      registry,
    }),
    leader: new Gauge({
      name: 'airlock_leader',
      help: '1 while this replica holds the leader lease.',
      registry,
    }),
    connectedSidecars: new Gauge({
      name: 'airlock_connected_sidecars',
      help: 'Sidecars following their bundle on this replica.',
      registry,
    }),
    bundlePushes: new Counter({
      name: 'airlock_bundle_pushes_total',
      help: 'Bundles sent to sidecars, by reason (initial, change).',
      labelNames: ['reason'],
      registry,
    }),
    bundleRefusals: new Counter({
      name: 'airlock_bundle_refusals_total',
      help: 'Bundle requests refused, by reason.',
      labelNames: ['reason'],
      registry,
    }),
    controlApiLatency: new Histogram({
      name: 'airlock_control_api_authentication_seconds',
      help: 'Time to authenticate a sidecar (TokenReview and pod lookup).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registry,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

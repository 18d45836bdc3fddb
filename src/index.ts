export * from './map/index.ts';
export { InProcessStore } from './stores/index.ts';
export type { MapStore } from './stores/index.ts';
export { MapMetrics, MetricAlreadyRegisteredError, NotAMeasuredMapError } from './metrics/index.ts';
export type { MapMetricsOptions } from './metrics/index.ts';

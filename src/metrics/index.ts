export { MapMetrics, MAP_METRIC_NAMES } from './map-metrics.ts';
export type { MapMetricsOptions, MeasuredMap } from './map-metrics.ts';
export { MetricAlreadyRegisteredError, NotAMeasuredMapError } from './errors.ts';
export { MAX_REASON_SERIES, OTHER_REASONS, boundedReasons } from './reason-labels.ts';
export { SnapshotHistogram } from './snapshot-histogram.ts';
export { scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';
export type { SeriesSetter } from './scrape-time.ts';
export type { BucketSeries } from './snapshot-histogram.ts';

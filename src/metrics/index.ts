export { MapMetrics } from './map-metrics.ts';
export type { MapMetricsOptions, MeasuredMap } from './map-metrics.ts';
export { SnapshotHistogram } from './snapshot-histogram.ts';
export { scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';
export type { SeriesSetter } from './scrape-time.ts';
export type { BucketSeries } from './snapshot-histogram.ts';

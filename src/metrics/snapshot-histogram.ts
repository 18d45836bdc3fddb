import { Histogram } from 'prom-client';
import type { MetricObjectWithValues, MetricValueWithName } from 'prom-client';

/** One labelled series of bucket counts kept outside prom-client (non-cumulative, last = +Inf). */
export interface BucketSeries {
  readonly labels: Record<string, string>;
  readonly buckets: ArrayLike<number>;
  readonly sum: number;
}

/**
 * A prom-client Histogram whose series are read at scrape time from counts the code under
 * measurement keeps itself, so that observing costs that code no prom-client call. Renders
 * exactly what prom-client's own Histogram renders (`_bucket{le}` cumulative, `_sum`, `_count`).
 */
export class SnapshotHistogram<T extends string> extends Histogram<T> {
  readonly #bounds: readonly number[];
  readonly #read: () => Iterable<BucketSeries>;
  readonly #name: string;
  readonly #help: string;

  constructor(config: { name: string; help: string; labelNames: readonly T[]; buckets: readonly number[]; registers: NonNullable<ConstructorParameters<typeof Histogram<T>>[0]['registers']> }, read: () => Iterable<BucketSeries>) {
    super({ name: config.name, help: config.help, labelNames: config.labelNames, buckets: [...config.buckets], registers: config.registers });
    this.#bounds = config.buckets;
    this.#name = config.name;
    this.#help = config.help;
    this.#read = read;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- prom-client awaits this
  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const values: MetricValueWithName<T>[] = [];
    for (const series of this.#read()) {
      let cumulative = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        cumulative += series.buckets[i] ?? 0;
        const le = i < this.#bounds.length ? this.#bounds[i]! : '+Inf';
        values.push({ labels: { ...series.labels, le } as MetricValueWithName<T>['labels'], value: cumulative, metricName: `${this.#name}_bucket` });
      }
      values.push({ labels: series.labels as MetricValueWithName<T>['labels'], value: series.sum, metricName: `${this.#name}_sum` });
      values.push({ labels: series.labels as MetricValueWithName<T>['labels'], value: cumulative, metricName: `${this.#name}_count` });
    }
    // The shape prom-client's registry renders; its typings also demand fields it does not read.
    return { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' } as unknown as MetricObjectWithValues<MetricValueWithName<T>>;
  }

  /** prom-client's text renderer prefers this over get() for histograms; render the same series. */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    return this.get();
  }
}

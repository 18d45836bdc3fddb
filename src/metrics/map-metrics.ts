import { Registry } from 'prom-client';
import type { GovernedMap } from '../map/governed-map.ts';
import { RANGE_BUCKETS_SECONDS } from '../map/stats.ts';
import type { MapCounters } from '../map/stats.ts';
import { scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';
import type { SeriesSetter } from './scrape-time.ts';
import { SnapshotHistogram } from './snapshot-histogram.ts';
import type { BucketSeries } from './snapshot-histogram.ts';

export interface MapMetricsOptions {
  /** Registry to register into. Default: a new Registry (not prom-client's global one). */
  readonly registry?: Registry;
  /** Metric name prefix. Default `syncmap_`, the specification's names. */
  readonly prefix?: string;
}

/** What metrics read of a map: its name, counters and size. Any GovernedMap<K, V> fits. */
export type MeasuredMap = Pick<GovernedMap<unknown, unknown>, 'name' | 'counters' | 'size' | 'disposed' | 'stats'>;
type AnyMap = MeasuredMap;

/**
 * Prometheus metrics for GovernedMaps. The maps count on plain numbers; nothing here runs on
 * their hot path: every value is read in prom-client's `collect()` at scrape time.
 * (Measured on this class of machine: a labelled prom-client `inc()` costs more than the map
 * operation itself, +88 ns on a 36 ns op.)
 *
 * Maps are held by WeakRef: tracking a map for metrics never keeps it alive (the sandbox's
 * leak detection depends on maps being collectable). Disposed or collected maps drop out.
 */
export class MapMetrics {
  readonly registry: Registry;
  readonly prefix: string;
  readonly #maps = new Map<string, WeakRef<AnyMap>>();

  constructor(options: MapMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.prefix = options.prefix ?? 'syncmap_';
    const registers = [this.registry];
    const p = this.prefix;
    const each = (fn: (name: string, c: Readonly<MapCounters>, map: AnyMap) => void): void => {
      for (const map of this.#live()) fn(map.name, map.counters, map);
    };
    const counter = <L extends string>(name: string, help: string, labelNames: L[], fill: (set: SeriesSetter<L>) => void): void => {
      scrapeTimeCounter(registers, p + name, help, labelNames, fill);
    };
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (set: SeriesSetter<L>) => void): void => {
      scrapeTimeGauge(registers, p + name, help, labelNames, fill);
    };

    counter('load_total', 'Loads (reads by key) per map.', ['map'], (set) => each((map, c) => set({ map }, c.loads)));
    counter('miss_total', 'Loads that found no entry.', ['map'], (set) => each((map, c) => set({ map }, c.misses)));
    gauge('miss_ratio', 'Misses / loads over the sliding window (default 5 minutes). Alert above 0.35.', ['map'], (set) =>
      each((name, _c, map) => {
        const ratio = map.stats().missRatio;
        if (ratio !== null) set({ map: name }, ratio);
      }),
    );
    counter('store_total', 'Writes by outcome (ok, rejected by the validator or capacity, error in the validator).', ['map', 'outcome'], (set) =>
      each((map, c) => {
        set({ map, outcome: 'ok' }, c.storesOk);
        set({ map, outcome: 'rejected' }, c.storesRejected);
        set({ map, outcome: 'error' }, c.storesError);
      }),
    );
    counter('delete_total', 'Deletes by outcome.', ['map', 'outcome'], (set) =>
      each((map, c) => {
        set({ map, outcome: 'ok' }, c.deletesOk);
        set({ map, outcome: 'miss' }, c.deletesMiss);
        set({ map, outcome: 'rejected' }, c.deletesRejected);
      }),
    );
    counter('validation_rejections_total', 'Writes refused, by the validator\'s reason code.', ['map', 'reason'], (set) =>
      each((map, c) => {
        for (const [reason, count] of c.rejectionsByReason) set({ map, reason }, count);
      }),
    );
    counter('evictions_total', 'Entries evicted by the maxKeys policy.', ['map'], (set) => each((map, c) => set({ map }, c.evictions)));
    counter('expirations_total', 'Entries removed by TTL.', ['map'], (set) => each((map, c) => set({ map }, c.expirations)));
    counter('range_total', 'Range walks.', ['map'], (set) => each((map, c) => set({ map }, c.ranges)));
    gauge('keys', 'Entries held now. The specification advises migration above 50,000 in one instance.', ['map'], (set) =>
      each((name, _c, map) => set({ map: name }, map.size)),
    );
    gauge('read_write_ratio', 'Reads per write over the sliding window. The specification allows these maps only at >= 20.', ['map'], (set) =>
      each((name, _c, map) => {
        const ratio = map.stats().readWriteRatio;
        if (ratio !== null && Number.isFinite(ratio)) set({ map: name }, ratio);
      }),
    );
    new SnapshotHistogram<'map'>(
      { name: p + 'range_duration_seconds', help: 'Duration of range walks (p99 is watched).', labelNames: ['map'], buckets: RANGE_BUCKETS_SECONDS, registers },
      () => this.#rangeSeries(),
    );
  }

  /** Starts exporting `map`'s metrics. A second map with the same name replaces the first. */
  track(map: MeasuredMap): this {
    this.#maps.set(map.name, new WeakRef(map));
    return this;
  }

  untrack(map: { readonly name: string }): void {
    this.#maps.delete(map.name);
  }

  /** Prometheus text exposition, for a `/metrics` endpoint. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  *#live(): Generator<AnyMap> {
    for (const [name, ref] of this.#maps) {
      const map = ref.deref();
      if (map === undefined || map.disposed) this.#maps.delete(name);
      else yield map;
    }
  }

  *#rangeSeries(): Generator<BucketSeries> {
    for (const map of this.#live()) {
      const c = map.counters;
      yield { labels: { map: map.name }, buckets: c.rangeBuckets, sum: c.rangeSecondsSum };
    }
  }
}

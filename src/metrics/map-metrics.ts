import { Registry } from 'prom-client';
import type { GovernedMap } from '../map/governed-map.ts';
import { RANGE_BUCKETS_SECONDS } from '../map/stats.ts';
import type { MapCounters } from '../map/stats.ts';
import { REGISTRY_RULE, isRegistry, scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';
import type { SeriesSetter } from './scrape-time.ts';
import { SnapshotHistogram } from './snapshot-histogram.ts';
import type { BucketSeries } from './snapshot-histogram.ts';
import { ConfigurationError } from '../map/errors.ts';
import { MetricAlreadyRegisteredError, NotAMeasuredMapError } from './errors.ts';
import { MAX_REASON_SERIES, boundedReasons } from './reason-labels.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface MapMetricsOptions {
  /** Registry to register into. Default: a new Registry (not prom-client's global one). */
  readonly registry?: Registry;
  /** Metric name prefix. Default `syncmap_`, the specification's names. */
  readonly prefix?: string;
  /**
   * Validator reason codes exported with a `reason` series of their own, per map; refusals with
   * any further reason (or a reason that is not a code) are summed under `reason="_other"`.
   * Default 20. Bounds the label's cardinality when a validator puts a key or a message in it.
   */
  readonly maxReasonSeries?: number;
}

/** Every key of MapMetricsOptions (the compiler checks the two stay the same): any other is refused. */
const MAP_METRICS_OPTIONS = optionKeys<MapMetricsOptions>({
  registry: true, prefix: true, maxReasonSeries: true,
});

/** The names MapMetrics registers, after its prefix: checked free before any is registered. */
export const MAP_METRIC_NAMES: readonly string[] = Object.freeze([
  'load_total', 'miss_total', 'miss_ratio', 'store_total', 'delete_total', 'validation_rejections_total',
  'store_unavailable_total', 'cas_conflicts_total', 'remote_loads_total',
  'evictions_total', 'expirations_total', 'range_total', 'keys', 'read_write_ratio', 'range_duration_seconds',
]);

/** Checked on track(), not at scrape time: one bad entry would fail every scrape of the registry. */
function isMeasuredMap(value: unknown): value is MeasuredMap {
  if (typeof value !== 'object' || value === null) return false;
  const map = value as Partial<Record<keyof MeasuredMap, unknown>>;
  return typeof map.name === 'string' && typeof map.counters === 'object' && map.counters !== null && typeof map.stats === 'function' && typeof map.size === 'number';
}

/**
 * A map's reading that asks its store (size, stats()), or undefined when it throws: a custom
 * store whose backend is down would otherwise fail the whole scrape, every other part's metrics
 * on the registry included, just when they are needed. Its gauges have no sample (unknown, not 0).
 */
function readable<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** The start of a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), or nothing. */
const PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** What metrics read of a map: its name, counters and size. Any GovernedMap<K, V> fits. */
export type MeasuredMap = Pick<GovernedMap<unknown, unknown>, 'name' | 'counters' | 'size' | 'disposed' | 'stats'>;
type AnyMap = MeasuredMap;

/** What the counters and the histogram export of a map: its counters, or those plus the counts carried over from maps it replaced. */
type Counted = Pick<MapCounters, 'loads' | 'misses' | 'storesOk' | 'storesRejected' | 'storesError' | 'deletesOk' | 'deletesMiss' | 'deletesRejected' | 'evictions' | 'expirations' | 'ranges' | 'rangeSecondsSum' | 'rangeBuckets' | 'rejectionsByReason'> & RemoteCounted;
const SUMMED = ['loads', 'misses', 'storesOk', 'storesRejected', 'storesError', 'deletesOk', 'deletesMiss', 'deletesRejected', 'evictions', 'expirations', 'ranges', 'rangeSecondsSum'] as const;
/** What a map over a remote store (Redis: RemoteMapCounters) counts besides; absent on the others. */
const REMOTE = ['remoteLoads', 'casConflicts', 'unavailable'] as const;
type RemoteCounted = Partial<Record<(typeof REMOTE)[number], number>>;

/**
 * One tracked name. The counters are held strongly (they hold no reference to their map), so
 * that a map replaced under its name can hand its counts on even when it has been collected.
 */
interface Tracked {
  readonly ref: WeakRef<AnyMap>;
  readonly counters: Readonly<MapCounters>;
  /** The final counts of the maps this one replaced under the name; null when it replaced none. */
  readonly carried: Counted | null;
}

/** `c` added to `into` (a new total; neither is changed). Reasons keep their first-seen order, old ones first. */
function plus(into: Counted | null, c: Counted): Counted {
  if (into === null) return c;
  const sum = {} as Record<(typeof SUMMED)[number], number>;
  for (const field of SUMMED) sum[field] = into[field] + c[field];
  const remote: RemoteCounted = {};
  for (const field of REMOTE) if (into[field] !== undefined || c[field] !== undefined) remote[field] = (into[field] ?? 0) + (c[field] ?? 0);
  const reasons = new Map(into.rejectionsByReason);
  for (const [reason, count] of c.rejectionsByReason) reasons.set(reason, (reasons.get(reason) ?? 0) + count);
  return { ...sum, ...remote, rangeBuckets: into.rangeBuckets.map((n, i) => n + c.rangeBuckets[i]!), rejectionsByReason: reasons };
}

/** A copy of counts that keep changing (the replaced map may still be written to). */
function snapshot(c: Counted): Counted {
  const zero = Object.fromEntries(SUMMED.map((field) => [field, 0])) as Record<(typeof SUMMED)[number], number>;
  return plus({ ...zero, rangeBuckets: new Float64Array(c.rangeBuckets.length), rejectionsByReason: new Map() }, c);
}

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
  readonly #maps = new Map<string, Tracked>();

  constructor(options: MapMetricsOptions = {}) {
    refuseUnknownOptions(options, MAP_METRICS_OPTIONS, 'MapMetrics');
    if (options.registry !== undefined && !isRegistry(options.registry)) throw new ConfigurationError('registry', REGISTRY_RULE, options.registry);
    this.registry = options.registry ?? new Registry();
    this.prefix = options.prefix ?? 'syncmap_';
    const maxReasons = options.maxReasonSeries ?? MAX_REASON_SERIES;
    if (typeof this.prefix !== 'string' || !PREFIX.test(this.prefix)) {
      throw new ConfigurationError('prefix', 'must be empty or match [a-zA-Z_:][a-zA-Z0-9_:]* (the start of a Prometheus metric name)', this.prefix);
    }
    if (!Number.isSafeInteger(maxReasons) || maxReasons < 0) throw new ConfigurationError('maxReasonSeries', 'must be an integer >= 0', maxReasons);
    // prom-client would refuse the first taken name half-way, leaving the metrics before it
    // registered: check them all first, so a refused MapMetrics leaves the registry untouched.
    for (const name of MAP_METRIC_NAMES) {
      if (this.registry.getSingleMetric(this.prefix + name) !== undefined) throw new MetricAlreadyRegisteredError(this.prefix + name, this.prefix);
    }
    const registers = [this.registry];
    const p = this.prefix;
    const each = (fn: (name: string, c: Counted, map: AnyMap) => void): void => {
      for (const [map, carried, counters] of this.#live()) fn(map.name, plus(carried, counters), map);
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
        const ratio = readable(() => map.stats().missRatio);
        if (ratio !== null && ratio !== undefined) set({ map: name }, ratio);
      }),
    );
    counter('store_total', 'Writes by outcome: ok; rejected (by the validator, or capacity); error (the validator threw, the store refused the write or could not be reached, or the write gave up on a conflict: UpdateConflictError).', ['map', 'outcome'], (set) =>
      each((map, c) => {
        set({ map, outcome: 'ok' }, c.storesOk);
        set({ map, outcome: 'rejected' }, c.storesRejected);
        set({ map, outcome: 'error' }, c.storesError);
      }),
    );
    counter('delete_total', 'Deletes by outcome: ok; miss; rejected (not made: the delete validator refused or threw, the store refused it or could not be reached, or it gave up on a conflict or re-entrant write).', ['map', 'outcome'], (set) =>
      each((map, c) => {
        set({ map, outcome: 'ok' }, c.deletesOk);
        set({ map, outcome: 'miss' }, c.deletesMiss);
        set({ map, outcome: 'rejected' }, c.deletesRejected);
      }),
    );
    counter('validation_rejections_total', `Writes refused or failed, by reason: the validator's code, CAPACITY_EXCEEDED, or the store's (the first ${maxReasons} codes per map; others summed as _other).`, ['map', 'reason'], (set) =>
      each((map, c) => boundedReasons(c.rejectionsByReason, (reason, count) => set({ map, reason }, count), maxReasons)),
    );
    // Maps over a remote store only (Redis): an outage shows up per map, as the service sees it.
    const remoteCounter = (name: string, help: string, field: (typeof REMOTE)[number]): void =>
      counter(name, help, ['map'], (set) =>
        each((map, c) => {
          const value = c[field];
          if (value !== undefined) set({ map }, value);
        }),
      );
    remoteCounter('store_unavailable_total', 'Operations of a map over a remote store (Redis) that failed because the store could not be reached (RedisUnavailableError).', 'unavailable');
    remoteCounter('cas_conflicts_total', 'Compare-and-set attempts of a map over a remote store lost to another writer (each one retried or given up).', 'casConflicts');
    remoteCounter('remote_loads_total', 'Loads of a map over a remote store that went to the store (not answered by its near cache).', 'remoteLoads');
    counter('evictions_total', 'Entries evicted by the maxKeys policy.', ['map'], (set) => each((map, c) => set({ map }, c.evictions)));
    counter('expirations_total', 'Entries removed by TTL.', ['map'], (set) => each((map, c) => set({ map }, c.expirations)));
    counter('range_total', 'Range walks.', ['map'], (set) => each((map, c) => set({ map }, c.ranges)));
    gauge('keys', 'Entries held now. The specification advises migration above 50,000 in one instance.', ['map'], (set) =>
      each((name, _c, map) => {
        const size = readable(() => map.size);
        if (size !== undefined) set({ map: name }, size);
      }),
    );
    gauge('read_write_ratio', 'Reads per write over the sliding window. The specification allows these maps only at >= 20.', ['map'], (set) =>
      each((name, _c, map) => {
        const ratio = readable(() => map.stats().readWriteRatio);
        if (ratio !== null && ratio !== undefined && Number.isFinite(ratio)) set({ map: name }, ratio);
      }),
    );
    new SnapshotHistogram<'map'>(
      { name: p + 'range_duration_seconds', help: 'Duration of range walks (p99 is watched).', labelNames: ['map'], buckets: RANGE_BUCKETS_SECONDS, registers },
      () => this.#rangeSeries(),
    );
  }

  /**
   * Starts exporting `map`'s metrics. A second map with the same name replaces the first. When
   * the first is disposed (or collected), the second continues its counters and histogram from
   * the first's counts (a cache rebuilt on a reload): a counter that went down would read to
   * Prometheus as a reset, and lose what was counted since the last scrape. A live map replaced
   * hands nothing on: it could be tracked again, and would then be counted twice.
   */
  track(map: MeasuredMap): this {
    if (!isMeasuredMap(map)) throw new NotAMeasuredMapError(map);
    const existing = this.#maps.get(map.name);
    const counters = map.counters;
    let carried = existing?.carried ?? null;
    if (existing !== undefined && existing.counters !== counters) {
      const replaced = existing.ref.deref();
      carried = replaced === undefined || replaced.disposed ? plus(carried, snapshot(existing.counters)) : null;
    }
    this.#maps.set(map.name, { ref: new WeakRef(map), counters, carried });
    return this;
  }

  /**
   * Stops exporting `map`. When another map has replaced it under its name since, that one stays
   * tracked; a bare `{ name }` stops exporting whichever map is tracked under that name.
   */
  untrack(map: MeasuredMap | { readonly name: string }): void {
    const tracked = this.#maps.get(map.name)?.ref.deref();
    if (tracked === undefined || tracked === map || !('counters' in map)) this.#maps.delete(map.name);
  }

  /** Prometheus text exposition, for a `/metrics` endpoint. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The counters are those held since track(): plain numbers, read without asking the map. */
  *#live(): Generator<[AnyMap, Counted | null, Counted]> {
    for (const [name, tracked] of this.#maps) {
      const map = tracked.ref.deref();
      if (map === undefined || map.disposed) this.#maps.delete(name);
      else yield [map, tracked.carried, tracked.counters];
    }
  }

  *#rangeSeries(): Generator<BucketSeries> {
    for (const [map, carried, counters] of this.#live()) {
      const c = plus(carried, counters);
      yield { labels: { map: map.name }, buckets: c.rangeBuckets, sum: c.rangeSecondsSum };
    }
  }
}

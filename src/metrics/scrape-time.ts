import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { MetricAlreadyRegisteredError } from './errors.ts';

/** Sets one labelled series to a value read at scrape time. */
export type SeriesSetter<L extends string> = (labels: Record<L, string>, value: number) => void;

/**
 * A prom-client Counter whose values are read from counts kept elsewhere, when scraped: the code
 * being measured increments plain numbers and never calls prom-client on its hot path.
 * `fill` is called on every scrape and sets each series to its cumulative total.
 */
export function scrapeTimeCounter<L extends string>(registers: Registry[], name: string, help: string, labelNames: L[], fill: (set: SeriesSetter<L>) => void): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      fill((labels, value) => this.inc(labels as never, value));
    },
  });
}

/** A prom-client Gauge set at scrape time; series `fill` does not set are absent from the scrape. */
export function scrapeTimeGauge<L extends string>(registers: Registry[], name: string, help: string, labelNames: L[], fill: (set: SeriesSetter<L>) => void): Gauge<L> {
  let sampled = false;
  const gauge = new Gauge<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      sampled = false;
      fill((labels, value) => {
        sampled = true;
        this.set(labels as never, value);
      });
    },
  });
  // prom-client renders an unlabelled gauge nothing set as `name 0`: a value unknown right now
  // (Kafka health without Kafka) would read as a real 0 and fire `== 0` alerts. No sample instead.
  const get = gauge.get.bind(gauge);
  gauge.get = async () => {
    const metric = await get();
    return sampled ? metric : { ...metric, values: [] };
  };
  return gauge;
}

/**
 * Moves every metric of `staging` (a part's metrics, created there) into `registry`, or none:
 * created in `registry` directly, prom-client refuses a taken name only when it reaches it, with
 * a bare Error, leaving the metrics created before it registered (and a retry refused on those).
 */
export function registerStaged(staging: Registry, registry: Registry, owner: string, prefix: string): void {
  const names = staging.getMetricsAsArray().map((metric) => metric.name);
  for (const name of names) {
    if (registry.getSingleMetric(name) !== undefined) throw new MetricAlreadyRegisteredError(name, prefix, owner);
  }
  for (const name of names) registry.registerMetric(staging.getSingleMetric(name)!);
}

/**
 * Whether `value` can be the registry a part registers into. By shape, not `instanceof`: a
 * service with a second copy of prom-client in node_modules passes a Registry of the other copy.
 * A plain object or the prom-client module itself (`import * as client`) otherwise failed with a
 * bare TypeError from deep inside the part, naming no option.
 */
export function isRegistry(value: unknown): value is Registry {
  if (value === null || typeof value !== 'object') return false;
  const r = value as Record<string, unknown>;
  return typeof r.getSingleMetric === 'function' && typeof r.registerMetric === 'function' && typeof r.getMetricsAsArray === 'function' && typeof r.metrics === 'function';
}

/** The rule a registry that is not one broke, worded for a part's configuration error. */
export const REGISTRY_RULE = 'must be a prom-client Registry (new Registry(), or prom-client\'s default `register`), not the prom-client module or a plain object';

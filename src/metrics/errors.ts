import { GovMapError, describeKey } from '../map/errors.ts';

/**
 * A metric's name is taken in the registry already: most often a second MapMetrics (or any other
 * part's metrics) on the same registry with the same prefix. Nothing of the new one was registered.
 */
export class MetricAlreadyRegisteredError extends GovMapError {
  readonly metric: string;

  constructor(metric: string, prefix: string, owner = 'MapMetrics') {
    const hint = owner === 'MapMetrics' ? 'track every map on the one you have' : 'track everything on the one you have';
    super(
      'GOVMAP_METRIC_ALREADY_REGISTERED',
      `metric "${metric}" is already registered in this registry: one ${owner} per registry and prefix (${hint}, or give this one another prefix than "${prefix}")`,
      { metric, prefix, owner },
    );
    this.metric = metric;
  }
}

/**
 * `track()` was given something that is not a map (a wrapper that holds one, nothing at all).
 * Refused at once: accepted, it would fail every later scrape of the registry, every other
 * part's metrics on it included.
 */
export class NotAMeasuredMapError extends GovMapError {
  constructor(received: unknown) {
    const shown = typeof received === 'object' && received !== null ? `an object with keys ${JSON.stringify(Object.keys(received).slice(0, 8))}` : describeKey(received);
    super(
      'GOVMAP_METRICS_NOT_A_MAP',
      `MapMetrics.track(): the argument must be a GovernedMap (or RemoteGovernedMap): a string name, counters, size and stats(); received ${shown} (pass the map itself, e.g. cache.map, not what holds it)`,
      { received: shown },
    );
  }
}

import { GovMapError } from '../map/errors.ts';

/**
 * A metric's name is taken in the registry already: most often a second MapMetrics on the same
 * registry with the same prefix. Nothing of the new MapMetrics was registered.
 */
export class MetricAlreadyRegisteredError extends GovMapError {
  readonly metric: string;

  constructor(metric: string, prefix: string) {
    super(
      'GOVMAP_METRIC_ALREADY_REGISTERED',
      `metric "${metric}" is already registered in this registry: one MapMetrics per registry and prefix (track every map on the one you have, or give this one another prefix than "${prefix}")`,
      { metric, prefix },
    );
    this.metric = metric;
  }
}

import { GovMapError } from '../map/errors.ts';

/** Text that is not valid Prometheus exposition format; names the line and the rule it broke. */
export class MetricsParseError extends GovMapError {
  constructor(source: string, line: number, rule: string, text: string) {
    const shown = text.length > 120 ? `${text.slice(0, 117)}...` : text;
    super('GOVMAP_METRICS_PARSE', `${source}: line ${line} is not Prometheus text format: ${rule} (line: ${JSON.stringify(shown)})`, { source, line, rule });
  }
}

/** A metrics endpoint or a Prometheus server could not be read, or answered with an error. */
export class AdvisorSourceError extends GovMapError {
  constructor(url: string, what: string, cause?: unknown) {
    super('GOVMAP_ADVISOR_SOURCE', `${url}: ${what}`, { url }, cause === undefined ? undefined : { cause });
  }
}

/**
 * The persisted weekly range counts of a map are not what the advisor writes. The value is left
 * exactly as found (never overwritten) and counting continues in memory until it is repaired.
 */
export class AdvisorStateError extends GovMapError {
  constructor(key: string, rule: string) {
    super('GOVMAP_ADVISOR_STATE_INVALID', `advisor state at "${key}" is unreadable: ${rule}; it is left untouched, and this process keeps its counts in memory until it is repaired or deleted`, { key, rule });
  }
}

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
  constructor(url: string, what: string, cause?: unknown, code = 'GOVMAP_ADVISOR_SOURCE', details: Record<string, unknown> = {}) {
    super(code, `${url}: ${what}`, { url, ...details }, cause === undefined ? undefined : { cause });
  }
}

/**
 * The source answered 401 or 403: it is up, and refuses these credentials (or their absence).
 * An AdvisorSourceError, so a handler written for those still catches it; its own code because
 * the fix is a credential, not a retry. `details.status` is the HTTP status, `details.sent`
 * whether an Authorization header was sent; the credentials themselves are never carried.
 */
export class AdvisorAuthError extends AdvisorSourceError {
  constructor(url: string, what: string, status: number, sent: boolean) {
    const why = !sent ? 'it requires credentials and none were sent' : status === 403 ? 'the credentials sent do not allow this request' : 'the credentials sent were not accepted';
    super(url, `the ${what} refused authentication (HTTP ${status}): ${why}`, undefined, 'GOVMAP_ADVISOR_AUTH_REFUSED', { status, sent });
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

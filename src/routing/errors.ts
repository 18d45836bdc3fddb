import { GovMapError } from '../map/errors.ts';

/** The stable names of the X-Biz-Tag rules a header can break (metric label `rule`). */
export type BizTagRule =
  | 'NOT_A_STRING'
  /** formatBizTag / BizTag.of given something that is neither pairs nor an object. */
  | 'NOT_PAIRS'
  | 'MULTIPLE_HEADERS'
  | 'EMPTY'
  | 'TOO_LONG'
  | 'TOO_MANY_PAIRS'
  | 'EMPTY_PAIR'
  | 'MISSING_SEPARATOR'
  | 'KEY_INVALID'
  | 'VALUE_INVALID'
  | 'DUPLICATE_KEY';

/** Renders untrusted header text for a message: bounded, with control and non-ASCII bytes escaped. */
export function showHeader(text: string, max = 60): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
   
  return JSON.stringify(cut).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * An X-Biz-Tag header (or a tag being formatted) broke the grammar of DESIGN.md. The request
 * is refused (HTTP 400), never routed on a guess. `rule` names the broken rule; `position` the
 * offending character's offset when there is one.
 */
export class BizTagError extends GovMapError {
  readonly rule: BizTagRule;

  constructor(rule: BizTagRule, message: string, details: Record<string, unknown> = {}) {
    super('GOVMAP_BIZTAG_INVALID', `X-Biz-Tag rejected (${rule}): ${message}`, { rule, ...details });
    this.rule = rule;
  }
}

/** A route table broke its schema; the router keeps the table it had. */
export class RouteTableError extends GovMapError {
  readonly issues: readonly { readonly path: string; readonly rule: string }[];

  constructor(origin: string, issues: readonly { readonly path: string; readonly rule: string }[]) {
    const shown = issues.slice(0, 5).map((i) => `${i.path}: ${i.rule}`).join('; ');
    const more = issues.length > 5 ? `; and ${issues.length - 5} more` : '';
    super('GOVMAP_ROUTE_TABLE_INVALID', `route table from ${origin} is invalid and was not applied: ${shown}${more}`, { origin, issues: [...issues] });
    this.issues = Object.freeze([...issues]);
  }
}

/**
 * A route table source could not give the router a table: its file is missing, unreadable, too
 * large, empty or not JSON/YAML, or its state-store key is malformed or unanswered. The router
 * keeps the table it had. (A table that parses but breaks the schema is a RouteTableError.)
 */
export class RouteTableSourceError extends GovMapError {
  /** @param source what failed, starting with "route table": `route table file /etc/routes.yaml` */
  constructor(source: string, rule: string, cause?: unknown) {
    super('GOVMAP_ROUTE_TABLE_SOURCE_FAILED', `${source}: ${rule}`, { source, rule }, cause === undefined ? undefined : { cause });
  }
}

/**
 * A conditional route-table write named a version the key is no longer at, or other writers kept
 * winning the compare-and-set. Nothing was written: re-read the table and retry.
 */
export class RouteTableVersionConflictError extends GovMapError {
  constructor(key: string, expected: number | null, actual: number | null) {
    const shown = (v: number | null): string => (v === null ? '(absent)' : String(v));
    super('GOVMAP_ROUTE_TABLE_VERSION_CONFLICT', `route table ${key}: expected version ${shown(expected)} but found ${shown(actual)}; nothing was written, re-read and retry`, {
      key,
      expected,
      actual,
    });
  }
}

/** A bulkhead is at its concurrency limit and its queue is full: the call was not started. */
export class BulkheadFullError extends GovMapError {
  constructor(name: string, maxConcurrent: number, maxQueued: number) {
    super('GOVMAP_BULKHEAD_FULL', `bulkhead "${name}" is full: ${maxConcurrent} call(s) running and ${maxQueued} queued; the call was not started`, {
      bulkhead: name,
      maxConcurrent,
      maxQueued,
    });
  }
}

/** A call waiting in a bulkhead's queue was aborted (or timed out) before it started. */
export class BulkheadAbortedError extends GovMapError {
  constructor(name: string, cause: unknown) {
    super('GOVMAP_BULKHEAD_ABORTED', `bulkhead "${name}": the call was aborted while queued; it never started`, { bulkhead: name }, { cause });
  }
}

/** An async lane refused a job: it is closing (graceful shutdown) or its queue is full. */
export class AsyncLaneRefusedError extends GovMapError {
  constructor(lane: string, why: 'closing' | 'full', capacity: number) {
    super(
      'GOVMAP_ASYNC_LANE_REFUSED',
      why === 'closing' ? `async lane "${lane}" is shutting down and accepts no new job` : `async lane "${lane}" holds its maximum of ${capacity} queued job(s)`,
      { lane, why, capacity },
    );
  }
}

import { SlidingWindowRatio } from './sliding-window.ts';

/**
 * Upper bounds (seconds) of the range-duration histogram. From 10 µs (a range over a handful
 * of keys) to 5 s (a full walk of a map far past the specification's 50,000-key limit).
 */
export const RANGE_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
]);

/**
 * Distinct rejection reasons counted per map, for reasons shaped like codes and, apart, for the
 * others (free text, often with a key in it); refusals with any further reason of the same kind
 * are summed under OTHER_REJECTION_REASONS. Apart, so that free text seen first cannot use up
 * the room of the codes that metrics export (metrics/reason-labels.ts).
 */
export const MAX_REJECTION_REASONS = 100;

/** What a reason code looks like (a metric's `reason` label). It starts with a letter, so it is never OTHER_REJECTION_REASONS. */
export const REASON_CODE = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** The entry refusals past MAX_REJECTION_REASONS distinct reasons are counted under (not a code: it starts with `_`). */
export const OTHER_REJECTION_REASONS = '_other';

/**
 * The counters a map keeps on its hot path. Plain numbers: incrementing one is a single add,
 * with no allocation and no label lookup. prom-client reads them at scrape time (metrics/).
 */
export class MapCounters {
  loads = 0;
  misses = 0;
  hasCalls = 0;
  storesOk = 0;
  storesRejected = 0;
  storesError = 0;
  deletesOk = 0;
  deletesMiss = 0;
  deletesRejected = 0;
  updatesNoop = 0;
  evictions = 0;
  expirations = 0;
  ranges = 0;
  rangeEntriesVisited = 0;
  rangeSecondsSum = 0;
  /**
   * Per-bucket (non-cumulative) counts; the last slot is +Inf. Typed plain `Float64Array`: the
   * inferred `Float64Array<ArrayBuffer>` in the shipped .d.ts is an error for TypeScript < 5.7.
   */
  readonly rangeBuckets: Float64Array = new Float64Array(RANGE_BUCKETS_SECONDS.length + 1);
  /** Rejections by validator reason code; touched only on the (cold) rejection path. */
  readonly rejectionsByReason = new Map<string, number>();
  /** Reasons in rejectionsByReason that are codes (REASON_CODE), and that are not. */
  #codeReasons = 0;
  #textReasons = 0;

  recordRange(seconds: number, visited: number): void {
    this.ranges++;
    this.rangeEntriesVisited += visited;
    this.rangeSecondsSum += seconds;
    let i = 0;
    while (i < RANGE_BUCKETS_SECONDS.length && seconds > RANGE_BUCKETS_SECONDS[i]!) i++;
    this.rangeBuckets[i]!++;
  }

  recordRejection(reason: string): void {
    const byReason = this.rejectionsByReason;
    const held = byReason.get(reason);
    if (held !== undefined) {
      byReason.set(reason, held + 1);
      return;
    }
    // A validator that puts the key in its reason would otherwise grow this map by one entry per
    // key, forever. Codes and free text are bounded apart: a hundred "no account <id>" seen first
    // must not send every later BALANCE_UNDERFLOW to OTHER, out of its metric series.
    const code = REASON_CODE.test(reason);
    if ((code ? this.#codeReasons : this.#textReasons) < MAX_REJECTION_REASONS) {
      byReason.set(reason, 1);
      if (code) this.#codeReasons++;
      else this.#textReasons++;
    } else {
      byReason.set(OTHER_REJECTION_REASONS, (byReason.get(OTHER_REJECTION_REASONS) ?? 0) + 1);
    }
  }

  /** Reads as the specification counts them: lookups that do not change the map. */
  get reads(): number {
    return this.loads + this.hasCalls;
  }

  /** Writes that reached the store or were refused by the validator. */
  get writes(): number {
    return this.storesOk + this.storesRejected + this.storesError + this.deletesOk + this.deletesRejected;
  }
}

/** A point-in-time view of one map, for the dashboard, reports and the advisor. */
export interface MapStatsSnapshot {
  readonly name: string;
  readonly keys: number;
  readonly loads: number;
  readonly hits: number;
  readonly misses: number;
  readonly stores: { readonly ok: number; readonly rejected: number; readonly error: number };
  readonly deletes: { readonly ok: number; readonly miss: number; readonly rejected: number };
  readonly rejectionsByReason: Readonly<Record<string, number>>;
  readonly evictions: number;
  readonly expirations: number;
  readonly ranges: number;
  readonly rangeP99Seconds: number | null;
  /** Misses / loads over the sliding window (default 5 min); null before the first load. */
  readonly missRatio: number | null;
  /** Reads per write over the sliding window; Infinity when there were reads but no writes. */
  readonly readWriteRatio: number | null;
  readonly windowMs: number;
}

/** Windows over the counters; sampled only when asked, never on the hot path. */
export class MapWindows {
  readonly missRatio: SlidingWindowRatio;
  readonly readWrite: SlidingWindowRatio;

  constructor(windowMs: number, nowMs: number) {
    this.missRatio = new SlidingWindowRatio(windowMs, nowMs);
    this.readWrite = new SlidingWindowRatio(windowMs, nowMs);
  }
}

/** Estimates a quantile from bucket counts: the upper bound of the bucket holding it. */
export function bucketQuantile(buckets: Float64Array, bounds: readonly number[], q: number): number | null {
  let total = 0;
  for (const count of buckets) total += count;
  if (total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i]!;
    if (seen >= rank) return i < bounds.length ? bounds[i]! : Number.POSITIVE_INFINITY;
  }
  return Number.POSITIVE_INFINITY;
}

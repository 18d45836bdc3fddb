import { REASON_CODE } from '../map/stats.ts';

/**
 * The `reason` label of refused writes, kept bounded. A reason is whatever the validator returned,
 * and a validator that puts the key or a message in it (`no account ${id}`) would otherwise mint
 * one series per account: unbounded cardinality in Prometheus, and in every dashboard sample.
 *
 * Invariant: per map, the first `max` reasons that look like codes (in the order the map first
 * saw them, which never changes) keep a series each; every other refusal is summed under
 * OTHER_REASONS. The kept set is stable, so each series, `_other` included, only ever grows:
 * they stay valid counters.
 */

/** Reason series per map by default: a validator has a handful of codes, not dozens. */
export const MAX_REASON_SERIES = 20;

/** The label value refusals beyond the limit, or with a reason that is not a code, are summed under. */
export const OTHER_REASONS = '_other';


/** Calls `emit` once per kept reason, then once for OTHER_REASONS when anything was folded. */
export function boundedReasons(byReason: ReadonlyMap<string, number>, emit: (reason: string, count: number) => void, max: number = MAX_REASON_SERIES): void {
  let kept = 0;
  let other = 0;
  let folded = false;
  for (const [reason, count] of byReason) {
    if (kept < max && REASON_CODE.test(reason)) {
      kept++;
      emit(reason, count);
    } else {
      other += count;
      folded = true;
    }
  }
  if (folded) emit(OTHER_REASONS, other);
}

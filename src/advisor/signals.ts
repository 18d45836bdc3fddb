import { ConfigurationError } from '../map/errors.ts';
import { assertOptionsObject, findUnknownOption } from '../map/known-options.ts';

/**
 * The migration signals of the specification and the recommendation they lead to, as one pure
 * function of the evidence. Every source (the in-process advisor, one scrape of a metrics
 * endpoint, a Prometheus server) fills the same `MapEvidence` as far as it can; what it cannot
 * know is null, and a signal that lacks what it needs says `insufficient-data` instead of
 * guessing "clear".
 */

export interface AdvisorThresholds {
  /** Miss ratio above which a window is breached. Default 0.35 (the specification's alert). */
  readonly missRatio: number;
  /** Consecutive breached windows that make a breach "held". Default 3 (15 min of 5-min windows). */
  readonly missRatioWindows: number;
  /** Week-over-week growth of range calls above which the signal fires. Default 0.5 (+50%). */
  readonly rangeGrowth: number;
  /** Range calls the baseline week must hold for a growth ratio to mean anything. Default 100. */
  readonly minBaselineRanges: number;
  /** Keys in one instance above which the map should move. Default 50,000. */
  readonly maxKeys: number;
  /** Reads per write below which the map is not read-mostly. Default 20 (20:1). */
  readonly minReadWriteRatio: number;
}

export const DEFAULT_THRESHOLDS: AdvisorThresholds = Object.freeze({
  missRatio: 0.35,
  missRatioWindows: 3,
  rangeGrowth: 0.5,
  minBaselineRanges: 100,
  maxKeys: 50_000,
  minReadWriteRatio: 20,
});

/** The `threshold` label of `govmap_advisor_threshold` for each threshold (Prometheus's snake case). */
export const THRESHOLD_LABELS: Readonly<Record<keyof AdvisorThresholds, string>> = Object.freeze({
  missRatio: 'miss_ratio',
  missRatioWindows: 'miss_ratio_windows',
  rangeGrowth: 'range_growth',
  minBaselineRanges: 'min_baseline_ranges',
  maxKeys: 'max_keys',
  minReadWriteRatio: 'min_read_write_ratio',
});

const THRESHOLD_NAMES: ReadonlySet<string> = new Set(Object.keys(DEFAULT_THRESHOLDS));

/** Merges and checks thresholds; a bad one, or one that is not a threshold, is refused with its name. */
export function resolveThresholds(partial: Partial<AdvisorThresholds> = {}): AdvisorThresholds {
  // A misspelt threshold (`maxkeys`) would otherwise leave the default in force without a word.
  assertOptionsObject(partial, 'Advisor thresholds', '{ missRatio, maxKeys, ... }');
  const unknown = findUnknownOption(partial, THRESHOLD_NAMES, 'Advisor thresholds');
  if (unknown !== undefined) throw new ConfigurationError(`thresholds.${unknown.option}`, unknown.rule);
  // A threshold given as undefined means its default, as any other option does.
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const t = { ...DEFAULT_THRESHOLDS, ...given };
  const check = (name: keyof AdvisorThresholds, ok: boolean, rule: string): void => {
    if (!ok) throw new ConfigurationError(`thresholds.${name}`, rule, t[name]);
  };
  check('missRatio', Number.isFinite(t.missRatio) && t.missRatio > 0 && t.missRatio < 1, 'must be a ratio between 0 and 1');
  check('missRatioWindows', Number.isSafeInteger(t.missRatioWindows) && t.missRatioWindows >= 1, 'must be a whole number of windows, at least 1');
  check('rangeGrowth', Number.isFinite(t.rangeGrowth) && t.rangeGrowth > 0, 'must be a growth fraction above 0 (0.5 = +50%)');
  check('minBaselineRanges', Number.isSafeInteger(t.minBaselineRanges) && t.minBaselineRanges >= 1, 'must be a whole number, at least 1');
  check('maxKeys', Number.isSafeInteger(t.maxKeys) && t.maxKeys >= 1, 'must be a whole number of keys, at least 1');
  check('minReadWriteRatio', Number.isFinite(t.minReadWriteRatio) && t.minReadWriteRatio > 0, 'must be a positive number of reads per write');
  return Object.freeze(t);
}

export type EvidenceSource = 'in-process' | 'metrics-endpoint' | 'prometheus';

export interface WeekCount {
  /** `2025-W03` for ISO weeks; `last 7d` / `7d before` for rolling windows. */
  readonly week: string;
  readonly count: number;
}

export interface MapEvidence {
  readonly map: string;
  /** The instance the figures come from (Prometheus `instance` label), null when there is one. */
  readonly instance: string | null;
  readonly source: EvidenceSource;
  /** Entries held now. */
  readonly keys: number | null;
  readonly missRatio: {
    /** Misses / loads in the latest judged window. */
    readonly latest: number | null;
    /** Consecutive windows, ending now, above the threshold. */
    readonly breachedWindows: number | null;
    /** Consecutive windows, ending now, with enough loads to be judged (coverage). */
    readonly observedWindows: number | null;
    readonly windowMs: number;
  };
  readonly gc: {
    /** null when the pause trend is unknown (no GC observation, or under two windows of it). */
    readonly rising: boolean | null;
    readonly ratio: number | null;
    readonly recentPauseFraction: number | null;
  };
  readonly readWrite: {
    /** Reads per write; null when unknown or when there were no writes (see `writes`). */
    readonly ratio: number | null;
    readonly reads: number | null;
    readonly writes: number | null;
  };
  readonly ranges: {
    /** The ISO week in progress (null for rolling sources). */
    readonly current: WeekCount | null;
    /** The last complete week, and the one before it. */
    readonly previous: WeekCount | null;
    readonly beforePrevious: WeekCount | null;
    readonly calendar: 'iso-week' | 'rolling-7d';
  };
  /** What the source could not see, or failed to persist, in words. */
  readonly notes: readonly string[];
  /**
   * The thresholds the service's own advisor judges with, when the source exports them
   * (`govmap_advisor_threshold`): its held breaches were counted against them, so its advice is
   * judged with them too. Absent: the caller's (the defaults).
   */
  readonly thresholds?: AdvisorThresholds;
}

export type SignalId = 'MISS_RATIO_WITH_GC_PRESSURE' | 'RANGE_GROWTH_WEEK_OVER_WEEK' | 'KEY_COUNT' | 'READ_WRITE_RATIO';
export const SIGNAL_IDS: readonly SignalId[] = Object.freeze(['MISS_RATIO_WITH_GC_PRESSURE', 'RANGE_GROWTH_WEEK_OVER_WEEK', 'KEY_COUNT', 'READ_WRITE_RATIO']);
export type SignalStatus = 'firing' | 'clear' | 'insufficient-data';

export interface Signal {
  readonly id: SignalId;
  readonly status: SignalStatus;
  /** One sentence with the figures behind the status. */
  readonly summary: string;
}

export type Recommendation = 'stay' | 'shared-memory-store' | 'redis-store' | 'not-a-map-workload';
export const RECOMMENDATIONS: readonly Recommendation[] = Object.freeze(['stay', 'shared-memory-store', 'redis-store', 'not-a-map-workload']);

export interface Advice {
  readonly map: string;
  readonly instance: string | null;
  readonly source: EvidenceSource;
  readonly recommendation: Recommendation;
  readonly reason: string;
  readonly signals: readonly Signal[];
  readonly evidence: MapEvidence;
}

const pct = (ratio: number, digits = 1): string => `${(ratio * 100).toFixed(digits)}%`;
const num = (n: number, digits = 1): string => n.toLocaleString('en-US', { maximumFractionDigits: digits });

/**
 * `value` and `threshold` formatted with as many decimals (1 to 6) as it takes to tell them
 * apart: a ratio of 19.96 against 20 must not read "20:1 < 20:1".
 */
function apart(format: (n: number, digits: number) => string, value: number, threshold: number): [string, string] {
  let digits = 1;
  while (digits < 6 && value !== threshold && format(value, digits) === format(threshold, digits)) digits++;
  return [format(value, digits), format(threshold, digits)];
}
const minutes = (ms: number): string => `${num(ms / 60_000)}-minute`;

/** Miss ratio above the threshold, held for N windows, while GC pause time rises. */
export function missRatioSignal(e: MapEvidence, t: AdvisorThresholds): Signal {
  const id = 'MISS_RATIO_WITH_GC_PRESSURE';
  const { latest, breachedWindows, observedWindows, windowMs } = e.missRatio;
  if (latest === null || breachedWindows === null) {
    return { id, status: 'insufficient-data', summary: 'no judged miss-ratio window yet (too few loads, or the source has no miss-ratio history)' };
  }
  const need = t.missRatioWindows;
  const windows = `${minutes(windowMs)} window`;
  if (breachedWindows < need) {
    if (breachedWindows > 0 && observedWindows !== null && breachedWindows === observedWindows) {
      const [shown, limit] = apart(pct, latest, t.missRatio);
      return { id, status: 'insufficient-data', summary: `miss ratio ${shown} > ${limit} in all ${breachedWindows} ${windows}(s) observed so far; ${need} are needed to call it held` };
    }
    if (breachedWindows > 0 && observedWindows === null) {
      // The source does not say how many windows it has seen (a service exporting no
      // govmap_advisor_miss_ratio_observed_windows): the breach may be all it has seen so far.
      const [shown, limit] = apart(pct, latest, t.missRatio);
      return { id, status: 'insufficient-data', summary: `miss ratio ${shown} > ${limit} for ${breachedWindows} consecutive ${windows}(s), the windows observed before them unknown; ${need} are needed to call it held` };
    }
    return { id, status: 'clear', summary: `miss ratio ${pct(latest)} in the latest ${windows}; above ${pct(t.missRatio)} for ${breachedWindows} consecutive window(s) (needs ${need})` };
  }
  const [shownLatest, shownLimit] = apart(pct, latest, t.missRatio);
  const held = `miss ratio ${shownLatest} > ${shownLimit} for ${breachedWindows} consecutive ${windows}s`;
  if (e.gc.rising === null) return { id, status: 'insufficient-data', summary: `${held}, but the GC pause trend is unknown (no GC observation, or under two windows of it)` };
  const gc = e.gc.ratio === null ? 'GC pause time appeared where there was none' : `GC pause time ${num(e.gc.ratio, 2)}x the window before`;
  if (!e.gc.rising) return { id, status: 'clear', summary: `${held}, but GC pauses are not rising (${gc})` };
  return { id, status: 'firing', summary: `${held} while ${gc}${e.gc.recentPauseFraction === null ? '' : `, ${pct(e.gc.recentPauseFraction)} of the time in GC`}` };
}

/** Range calls growing more than the threshold week over week. */
export function rangeGrowthSignal(e: MapEvidence, t: AdvisorThresholds): Signal {
  const id = 'RANGE_GROWTH_WEEK_OVER_WEEK';
  const { current, previous, beforePrevious } = e.ranges;
  // (later - earlier) / earlier: the difference of two counts is exact and the one division rounds
  // to the threshold itself when the growth is exactly it; `later > (1 + growth) * earlier` made
  // 115 calls after 100 "more than +15%" (1.15 * 100 = 114.99999999999999).
  const grew = (later: number, earlier: number): number => (later - earlier) / earlier;
  const judged: string[] = [];
  // Completed weeks: previous grew more than the threshold over beforePrevious.
  if (previous !== null && beforePrevious !== null && beforePrevious.count >= t.minBaselineRanges) {
    const growth = grew(previous.count, beforePrevious.count);
    const [shown, limit] = apart(pct, growth, t.rangeGrowth);
    const text = `${previous.week}: ${num(previous.count)} range calls vs ${num(beforePrevious.count)} in ${beforePrevious.week} (${growth >= 0 ? '+' : ''}${shown})`;
    if (growth > t.rangeGrowth) return { id, status: 'firing', summary: `${text} > +${limit}` };
    judged.push(text);
  }
  // The week in progress already past the whole previous week: growth is certain, no projection needed.
  if (current !== null && previous !== null && previous.count >= t.minBaselineRanges) {
    const text = `${current.week} so far: ${num(current.count)} range calls vs ${num(previous.count)} in all of ${previous.week}`;
    if (grew(current.count, previous.count) > t.rangeGrowth) return { id, status: 'firing', summary: `${text}, already more than +${pct(t.rangeGrowth)}` };
    judged.push(text);
  }
  if (judged.length === 0) {
    return { id, status: 'insufficient-data', summary: `no baseline week with at least ${num(t.minBaselineRanges)} range calls${e.ranges.calendar === 'rolling-7d' ? ' (Prometheus needs two weeks of syncmap_range_total)' : ''}` };
  }
  return { id, status: 'clear', summary: judged.join('; ') };
}

export function keyCountSignal(e: MapEvidence, t: AdvisorThresholds): Signal {
  const id = 'KEY_COUNT';
  if (e.keys === null) return { id, status: 'insufficient-data', summary: 'key count unknown' };
  if (e.keys > t.maxKeys) return { id, status: 'firing', summary: `${num(e.keys)} keys in one instance > ${num(t.maxKeys)}` };
  return { id, status: 'clear', summary: `${num(e.keys)} keys <= ${num(t.maxKeys)}` };
}

export function readWriteSignal(e: MapEvidence, t: AdvisorThresholds): Signal {
  const id = 'READ_WRITE_RATIO';
  const { ratio, reads, writes } = e.readWrite;
  const counts = reads !== null && writes !== null ? ` (${num(reads)} reads, ${num(writes)} writes)` : '';
  if (ratio === null) {
    if (writes === 0 && reads !== null && reads > 0) return { id, status: 'clear', summary: `read-only: no writes${counts}` };
    return { id, status: 'insufficient-data', summary: 'read:write ratio unknown (too few operations, or not exported)' };
  }
  const [shown, limit] = apart(num, ratio, t.minReadWriteRatio);
  if (ratio < t.minReadWriteRatio) return { id, status: 'firing', summary: `${shown}:1 reads per write < ${limit}:1${counts}: not read-mostly` };
  return { id, status: 'clear', summary: `${shown}:1 reads per write >= ${limit}:1${counts}` };
}

/**
 * The recommendation, first matching row wins:
 *
 * | firing signal                                  | recommendation        | why                                                                                   |
 * |------------------------------------------------|-----------------------|---------------------------------------------------------------------------------------|
 * | READ_WRITE_RATIO                               | not-a-map-workload    | write-heavy state needs a store with transactions (a database); no map store fixes it |
 * | KEY_COUNT                                      | redis-store           | more than one instance should hold; Redis (Cluster) shards it across machines        |
 * | MISS_RATIO_WITH_GC_PRESSURE, RANGE_GROWTH_...  | shared-memory-store   | entries leave the JS heap (GC stops tracing them) and ranges can run on worker threads |
 * | none                                           | stay                  |                                                                                       |
 */
export function advise(evidence: MapEvidence, thresholds: AdvisorThresholds = DEFAULT_THRESHOLDS): Advice {
  const signals = [missRatioSignal(evidence, thresholds), rangeGrowthSignal(evidence, thresholds), keyCountSignal(evidence, thresholds), readWriteSignal(evidence, thresholds)];
  const firing = (id: SignalId): Signal | undefined => signals.find((s) => s.id === id && s.status === 'firing');
  let recommendation: Recommendation = 'stay';
  let reason: string;
  const rw = firing('READ_WRITE_RATIO');
  const keys = firing('KEY_COUNT');
  const heap = [firing('MISS_RATIO_WITH_GC_PRESSURE'), firing('RANGE_GROWTH_WEEK_OVER_WEEK')].filter((s) => s !== undefined);
  if (rw !== undefined) {
    recommendation = 'not-a-map-workload';
    reason = `${rw.summary}; a concurrent map is only for read-mostly data: keep this state in a transactional store (a database) instead`;
  } else if (keys !== undefined) {
    recommendation = 'redis-store';
    reason = `${keys.summary}: move the entries to the Redis store (Redis Cluster shards them across machines)`;
  } else if (heap.length > 0) {
    recommendation = 'shared-memory-store';
    reason = `${heap.map((s) => s.summary).join('; ')}: move to the shared-memory store (entries off the GC-traced heap, ranges on worker threads)`;
  } else {
    const unknown = signals.filter((s) => s.status === 'insufficient-data').map((s) => s.id);
    reason = unknown.length === 0 ? 'no migration signal fires' : `no migration signal fires; not enough data yet for ${unknown.join(', ')}`;
  }
  return { map: evidence.map, instance: evidence.instance, source: evidence.source, recommendation, reason, signals, evidence };
}

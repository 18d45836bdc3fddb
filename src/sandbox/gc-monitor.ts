import { PerformanceObserver, constants } from 'node:perf_hooks';
import { ConfigurationError } from '../map/errors.ts';
import { bucketQuantile } from '../map/stats.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { monotonicNow } from './monotonic-clock.ts';

/**
 * Upper bounds (seconds) of the GC pause histogram: from 100 µs (a scavenge of a small young
 * generation) to 1 s (a full mark-compact of a heap of several GB, the pause a payment service
 * must never see).
 */
export const GC_PAUSE_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
]);

export type GcKind = 'minor' | 'major' | 'incremental' | 'weakcb';
export const GC_KINDS: readonly GcKind[] = Object.freeze(['minor', 'major', 'incremental', 'weakcb']);

/** A trend compares two whole windows; each window is this many slots of the ring. */
const SLOTS_PER_WINDOW = 5;
/** Two complete windows plus the slot being filled. */
const RING_SLOTS = 2 * SLOTS_PER_WINDOW + 1;

export interface GcMonitorOptions {
  /** Length of each of the two windows the trend compares, ms. Default 300,000 (5 minutes). */
  readonly windowMs?: number;
  /** Pause time in the latest window over the one before at or above which GC is "rising". Default 1.2. */
  readonly risingRatio?: number;
  /**
   * Share of wall time spent paused in the latest window below which GC is never "rising",
   * whatever the ratio: 0.1% → 0.2% doubles, but costs nothing. Default 0.001 (0.1%).
   */
  readonly minPauseFraction?: number;
  /** Milliseconds clock; tests pass a controllable one. Default: the monotonic clock (monotonic-clock.ts), so that a step of the host's clock is not taken for elapsed time. */
  readonly clock?: () => number;
}

/** Every key of GcMonitorOptions (the compiler checks the two stay the same): any other is refused. */
const GC_MONITOR_OPTIONS = optionKeys<GcMonitorOptions>({
  windowMs: true, risingRatio: true, minPauseFraction: true, clock: true,
});

/** The GC pause trend: the latest whole window against the one before it. */
export interface GcTrend {
  readonly windowMs: number;
  /** Seconds paused in the latest whole window, and in the window before it. */
  readonly recentPauseSeconds: number;
  readonly previousPauseSeconds: number;
  /** recentPauseSeconds / window length. */
  readonly recentPauseFraction: number;
  /** recent / previous; null when the previous window saw no pause or is not covered yet. */
  readonly ratio: number | null;
  /** null while the monitor has not observed two whole windows since it started, or once it is stopped. */
  readonly rising: boolean | null;
}

export interface GcKindStats {
  readonly count: number;
  readonly totalSeconds: number;
  readonly maxSeconds: number;
  readonly p50Seconds: number | null;
  readonly p99Seconds: number | null;
}

/** Pause statistics of one kind of collection; plain numbers read at scrape time. */
export class GcKindCounters {
  count = 0;
  totalSeconds = 0;
  maxSeconds = 0;
  /**
   * Per-bucket (non-cumulative) counts; the last slot is +Inf. Typed plain `Float64Array`: the
   * inferred `Float64Array<ArrayBuffer>` in the shipped .d.ts is an error for TypeScript < 5.7.
   */
  readonly buckets: Float64Array = new Float64Array(GC_PAUSE_BUCKETS_SECONDS.length + 1);
}

/**
 * Observes garbage-collection pauses through `perf_hooks` `gc` entries (not buffered: only
 * collections after `start()`), keeps a pause histogram per kind and a trend of pause time.
 *
 * The trend ring: slot `i` holds the pause seconds of wall-clock interval
 * `[i·slotMs, (i+1)·slotMs)` with `slotMs = windowMs / 5`; position `i mod 11` holds slot `i`
 * while `slotIds[i mod 11] === i` (a stale position reads as 0). The latest whole window is
 * the 5 slots before the current one, the previous window the 5 before those; the slot being
 * filled is left out, so a trend never compares a partial window with a whole one.
 */
export class GcMonitor {
  readonly windowMs: number;
  readonly risingRatio: number;
  readonly minPauseFraction: number;
  readonly #clock: () => number;
  readonly #slotMs: number;
  readonly #slots = new Float64Array(RING_SLOTS);
  readonly #slotIds = new Float64Array(RING_SLOTS).fill(-1);
  /**
   * First slot whose pauses are all known: the one after `start()` (a slot begun before it was
   * partly unobserved), or, for a monitor fed through `record()` alone, its construction's.
   */
  #firstSlot: number;
  /** Started and since stopped: the windows from the stop on are not observed. */
  #stopped = false;
  #latestSlot = -Infinity;
  readonly #kinds = new Map<GcKind, GcKindCounters>(GC_KINDS.map((kind) => [kind, new GcKindCounters()]));
  #observer: PerformanceObserver | null = null;

  constructor(options: GcMonitorOptions = {}) {
    refuseUnknownOptions(options, GC_MONITOR_OPTIONS, 'GcMonitor');
    const windowMs = options.windowMs ?? 300_000;
    if (!(Number.isFinite(windowMs) && windowMs >= 1000)) throw new ConfigurationError('windowMs', 'the GC trend window must be at least 1000 ms', windowMs);
    const risingRatio = options.risingRatio ?? 1.2;
    if (!(Number.isFinite(risingRatio) && risingRatio > 1)) throw new ConfigurationError('risingRatio', 'must be a number above 1 (1.2 = 20% more pause time)', risingRatio);
    const minPauseFraction = options.minPauseFraction ?? 0.001;
    if (!(Number.isFinite(minPauseFraction) && minPauseFraction >= 0 && minPauseFraction < 1)) {
      throw new ConfigurationError('minPauseFraction', 'must be a fraction from 0 to below 1', minPauseFraction);
    }
    this.windowMs = windowMs;
    this.risingRatio = risingRatio;
    this.minPauseFraction = minPauseFraction;
    this.#clock = options.clock ?? monotonicNow;
    this.#slotMs = windowMs / SLOTS_PER_WINDOW;
    this.#firstSlot = Math.floor(this.#clock() / this.#slotMs);
  }

  /** Starts observing this process's collections. Idempotent. */
  start(): this {
    if (this.#observer !== null) return this;
    // Pauses before now went unseen (the monitor was built earlier, or stopped in between): a
    // trend over them would compare a real window with an empty one and call GC rising.
    this.#firstSlot = Math.max(this.#firstSlot, Math.ceil(this.#clock() / this.#slotMs));
    this.#stopped = false;
    this.#observer = new PerformanceObserver((list) => {
      const at = this.#clock();
      for (const entry of list.getEntries()) {
        const kind = kindOf((entry as { detail?: { kind?: number } }).detail?.kind);
        if (kind !== null) this.record(kind, entry.duration, at);
      }
    });
    this.#observer.observe({ entryTypes: ['gc'] });
    return this;
  }

  /** Stops observing; the trend is unknown from then on (nothing seen is not "not rising"). */
  stop(): void {
    if (this.#observer === null) return;
    this.#observer.disconnect();
    this.#observer = null;
    this.#stopped = true;
  }

  get observing(): boolean {
    return this.#observer !== null;
  }

  /** Records one pause. Called by the observer; public so that tests and replays can feed it. */
  record(kind: GcKind, durationMs: number, atMs: number = this.#clock()): void {
    if (!(durationMs >= 0)) return;
    const seconds = durationMs / 1000;
    const counters = this.#kinds.get(kind)!;
    counters.count++;
    counters.totalSeconds += seconds;
    if (seconds > counters.maxSeconds) counters.maxSeconds = seconds;
    let i = 0;
    while (i < GC_PAUSE_BUCKETS_SECONDS.length && seconds > GC_PAUSE_BUCKETS_SECONDS[i]!) i++;
    counters.buckets[i]!++;

    const slot = Math.floor(atMs / this.#slotMs);
    if (slot <= this.#latestSlot - RING_SLOTS) {
      // Older than the ring holds: the clock stepped back (an NTP correction), as an observer's
      // entries are never that late. Dropping the pause would hide every collection until the
      // clock caught up (the trend "not rising" meanwhile); the ring starts over from here and
      // the trend is unknown until two whole windows are observed again.
      this.#slotIds.fill(-1);
      this.#latestSlot = -Infinity;
      this.#firstSlot = slot + 1;
    }
    if (slot > this.#latestSlot) this.#latestSlot = slot;
    const position = slot % RING_SLOTS;
    if (this.#slotIds[position] !== slot) {
      this.#slotIds[position] = slot;
      this.#slots[position] = 0;
    }
    this.#slots[position]! += seconds;
  }

  /** Major (mark-compact) collections seen: after one, every unreachable map is gone. */
  get majorCollections(): number {
    return this.#kinds.get('major')!.count;
  }

  kind(kind: GcKind): Readonly<GcKindCounters> {
    return this.#kinds.get(kind)!;
  }

  stats(): Record<GcKind, GcKindStats> {
    const out = {} as Record<GcKind, GcKindStats>;
    for (const [kind, c] of this.#kinds) {
      out[kind] = {
        count: c.count,
        totalSeconds: c.totalSeconds,
        maxSeconds: c.maxSeconds,
        // A bucket's upper bound can exceed the longest pause seen; the max is exact.
        p50Seconds: capped(bucketQuantile(c.buckets, GC_PAUSE_BUCKETS_SECONDS, 0.5), c.maxSeconds),
        p99Seconds: capped(bucketQuantile(c.buckets, GC_PAUSE_BUCKETS_SECONDS, 0.99), c.maxSeconds),
      };
    }
    return out;
  }

  trend(nowMs: number = this.#clock()): GcTrend {
    const current = Math.floor(nowMs / this.#slotMs);
    const recent = this.#sum(current - SLOTS_PER_WINDOW, current - 1);
    const previous = this.#sum(current - 2 * SLOTS_PER_WINDOW, current - SLOTS_PER_WINDOW - 1);
    const recentPauseFraction = recent / (this.windowMs / 1000);
    // Both windows must lie wholly after the monitor began observing, or "previous"
    // undercounts; and a stopped monitor sees no window at all.
    const covered = !this.#stopped && this.#firstSlot <= current - 2 * SLOTS_PER_WINDOW;
    if (!covered) {
      return { windowMs: this.windowMs, recentPauseSeconds: recent, previousPauseSeconds: previous, recentPauseFraction, ratio: null, rising: null };
    }
    const ratio = previous > 0 ? recent / previous : null;
    // recent / previous >= risingRatio  <=>  recent >= risingRatio * previous (also when previous = 0).
    const rising = recentPauseFraction >= this.minPauseFraction && recent > 0 && recent >= this.risingRatio * previous;
    return { windowMs: this.windowMs, recentPauseSeconds: recent, previousPauseSeconds: previous, recentPauseFraction, ratio, rising };
  }

  #sum(fromSlot: number, toSlot: number): number {
    let total = 0;
    for (let slot = fromSlot; slot <= toSlot; slot++) {
      const position = ((slot % RING_SLOTS) + RING_SLOTS) % RING_SLOTS;
      if (this.#slotIds[position] === slot) total += this.#slots[position]!;
    }
    return total;
  }
}

function capped(quantile: number | null, max: number): number | null {
  return quantile === null ? null : Math.min(quantile, max);
}

function kindOf(code: number | undefined): GcKind | null {
  switch (code) {
    case constants.NODE_PERFORMANCE_GC_MINOR:
      return 'minor';
    case constants.NODE_PERFORMANCE_GC_MAJOR:
      return 'major';
    case constants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 'incremental';
    case constants.NODE_PERFORMANCE_GC_WEAKCB:
      return 'weakcb';
    default:
      return null;
  }
}

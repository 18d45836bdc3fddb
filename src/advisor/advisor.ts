import { hostname } from 'node:os';
import { ConfigurationError } from '../map/errors.ts';
import type { GovernedMap } from '../map/governed-map.ts';
import type { GcMonitor } from '../sandbox/gc-monitor.ts';
import { WEEK_MS, isoWeek, isoWeekBefore, isoWeekStart } from './iso-week.ts';
import { RangeWeekCounts } from './range-weeks.ts';
import type { AdvisorStateStore } from './range-weeks.ts';
import { advise, resolveThresholds } from './signals.ts';
import type { Advice, AdvisorThresholds, MapEvidence } from './signals.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/** What the advisor reads of a map. Any GovernedMap<K, V> fits. */
export type AdvisedMap = Pick<GovernedMap<unknown, unknown>, 'name' | 'counters' | 'size' | 'disposed'>;

export interface AdvisorOptions {
  /** Length of one judged window, ms, 1,000 to 2,147,483,647 (a Node.js timer's limit). Default 300,000 (5 minutes, the specification's miss-ratio window). */
  readonly windowMs?: number;
  readonly thresholds?: Partial<AdvisorThresholds>;
  /** Loads a window needs for its miss ratio to be judged (1 miss in 2 loads is not a 50% miss ratio). Default 100. */
  readonly minLoadsPerWindow?: number;
  /** Windows the read:write ratio is taken over. Default 3. */
  readonly readWriteWindows?: number;
  /** Reads plus writes those windows need for the ratio to be judged. Default 100. */
  readonly minOpsForReadWrite?: number;
  /** The GC pause trend (e.g. the sandbox's monitor); null/absent: the miss-ratio signal cannot fire. */
  readonly gc?: GcMonitor | null;
  /**
   * Where weekly range counts persist across restarts (a memory, file or etcd state store).
   * Absent: counts live in this process only, and a restart forgets the weeks.
   */
  readonly stateStore?: AdvisorStateStore | null;
  /** State key prefix. Default `/govmap`. Keys: `<prefix>/advisor/<service>/<instance>/range-weeks/<map>`. */
  readonly keyPrefix?: string;
  /** Service name in state keys. Default `govmap`. `[A-Za-z0-9_.:-]{1,64}` */
  readonly service?: string;
  /** Instance id in state keys: must survive restarts (not a pid). Default: the host name. */
  readonly instance?: string;
  /** Milliseconds clock; tests pass a controllable one. Default `Date.now`. */
  readonly clock?: () => number;
}

/** Every key of AdvisorOptions (the compiler checks the two stay the same): any other is refused. */
const ADVISOR_OPTIONS = optionKeys<AdvisorOptions>({
  windowMs: true, thresholds: true, minLoadsPerWindow: true, readWriteWindows: true, minOpsForReadWrite: true,
  gc: true, stateStore: true, keyPrefix: true, service: true, instance: true, clock: true,
});
/** `gc: sandbox.gc` (a GcMonitor or null) and `stateStore: null` mean "none", as their types say; any other null is refused. */
const NULLABLE_OPTIONS: ReadonlySet<string> = new Set(['gc', 'stateStore']);

const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** One closed window's deltas. */
interface WindowSample {
  readonly loads: number;
  readonly misses: number;
  readonly reads: number;
  readonly writes: number;
}

/** Cumulative counters at the previous sample, for deltas. */
interface Baseline {
  readonly loads: number;
  readonly misses: number;
  readonly reads: number;
  readonly writes: number;
  readonly ranges: number;
}

interface Followed {
  ref: WeakRef<AdvisedMap>;
  readonly name: string;
  /** Counters at the last sample; null until the first. Holds the map weakly through `ref` only. */
  baseline: Baseline | null;
  baselineOf: WeakRef<AdvisedMap> | null;
  /** Newest last; at most max(missRatioWindows, readWriteWindows). */
  readonly windows: WindowSample[];
  breached: number;
  observed: number;
  latestMissRatio: number | null;
  keys: number | null;
  /** Why the map's counters or size could not be read at the last attempt, or null. */
  readError: string | null;
  readonly weeks: RangeWeekCounts;
}

/**
 * The in-process migration advisor: every `windowMs` it closes a window over each tracked map's
 * counters (plain numbers the map keeps anyway: nothing is added to its hot path) and keeps
 * what the signals need: consecutive miss-ratio breaches, reads and writes of the last windows,
 * and range calls per ISO week, persisted through a state store so a restart does not reset the
 * week. `advise()` turns that into one recommendation per map (see signals.ts).
 *
 * Windows are disjoint and judged whole: a miss ratio is misses / loads within one window, not a
 * sliding figure, so "held for 3 windows" means three separate 5-minute periods.
 */
export class Advisor {
  readonly windowMs: number;
  readonly thresholds: AdvisorThresholds;
  readonly minLoadsPerWindow: number;
  readonly readWriteWindows: number;
  readonly minOpsForReadWrite: number;
  readonly service: string;
  readonly instance: string;
  readonly keyPrefix: string;
  readonly gc: GcMonitor | null;
  readonly stateStore: AdvisorStateStore | null;
  readonly #clock: () => number;
  readonly #followed = new Map<string, Followed>();
  /**
   * Weekly counts of maps no longer followed that the state store does not hold (there is none,
   * or the last sync failed), by name: a map tracked again under the name goes on from them.
   */
  readonly #leftWeeks = new Map<string, RangeWeekCounts>();
  #timer: NodeJS.Timeout | null = null;
  #weekTimer: NodeJS.Timeout | null = null;
  #chain: Promise<void> = Promise.resolve();
  #samples = 0;

  constructor(options: AdvisorOptions = {}) {
    refuseUnknownOptions(options, ADVISOR_OPTIONS, 'Advisor', NULLABLE_OPTIONS);
    const windowMs = options.windowMs ?? 300_000;
    if (!(Number.isFinite(windowMs) && windowMs >= 1000)) throw new ConfigurationError('windowMs', 'must be at least 1000 ms', windowMs);
    if (windowMs > MAX_TIMER_MS) throw new ConfigurationError('windowMs', `must be at most ${MAX_TIMER_MS} ms (about 24.8 days), the longest delay a Node.js timer holds; a longer one would fire after 1 ms`, windowMs);
    this.windowMs = windowMs;
    this.thresholds = resolveThresholds(options.thresholds);
    this.minLoadsPerWindow = whole('minLoadsPerWindow', options.minLoadsPerWindow ?? 100, 1);
    this.readWriteWindows = whole('readWriteWindows', options.readWriteWindows ?? 3, 1);
    this.minOpsForReadWrite = whole('minOpsForReadWrite', options.minOpsForReadWrite ?? 100, 1);
    this.service = id('service', options.service ?? 'govmap');
    this.instance = id('instance', options.instance ?? hostname().replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 64));
    const prefix = options.keyPrefix ?? '/govmap';
    if (!/^\/[A-Za-z0-9_./-]{0,100}$/.test(prefix) || prefix.endsWith('/')) {
      throw new ConfigurationError('keyPrefix', 'must be a /-rooted path without a trailing slash, e.g. /govmap', prefix);
    }
    this.keyPrefix = prefix;
    this.gc = options.gc ?? null;
    this.stateStore = options.stateStore ?? null;
    this.#clock = options.clock ?? Date.now;
  }

  /** Follows `map` from now on (a map with the same name replaces the one followed before). */
  track(map: AdvisedMap): this {
    const existing = this.#followed.get(map.name);
    if (existing !== undefined) {
      // The map it replaces (disposed, rebuilt) may have taken range calls since the last
      // window: counted now, or the next window would start from the new map's and drop them.
      if (existing.ref.deref() !== map) this.#countRanges(this.#clock(), existing);
      existing.ref = new WeakRef(map);
      return this;
    }
    const weeks = this.#leftWeeks.get(map.name);
    this.#leftWeeks.delete(map.name);
    this.#followed.set(map.name, {
      ref: new WeakRef(map),
      name: map.name,
      baseline: snapshot(map),
      baselineOf: new WeakRef(map),
      windows: [],
      breached: 0,
      observed: 0,
      latestMissRatio: null,
      keys: readSize(map),
      readError: null,
      weeks: weeks ?? new RangeWeekCounts(`${this.keyPrefix}/advisor/${this.service}/${this.instance}/range-weeks/${map.name}`, map.name),
    });
    return this;
  }

  /**
   * Stops following the map of this name: its range calls since the last window are counted and
   * its weeks persisted first. Resolves false if no map of that name was followed. A disposed or
   * collected map needs no call: the next window retires it the same way.
   */
  untrack(name: string): Promise<boolean> {
    // The map followed at the call: the task runs later (after a sample in flight, or at least a
    // microtask on), and a map tracked under the name meanwhile (a rebuilt one) stays followed.
    const f = this.#followed.get(name);
    if (f === undefined) return Promise.resolve(false);
    const ref = f.ref;
    return this.#serial(async () => {
      // Retired meanwhile, or replaced by track() (which counted the old map's last calls).
      if (this.#followed.get(name) !== f || f.ref !== ref) return true;
      this.#countRanges(this.#clock(), f);
      if (this.stateStore !== null) await f.weeks.sync(this.stateStore, this.#clock());
      // Removed even if the sync failed: the caller asked; #forget keeps what the store lacks.
      if (this.#followed.get(name) === f && f.ref === ref) this.#forget(f);
      return true;
    });
  }

  /** Closes a window every `windowMs` (unref'd timer). Reads the persisted weeks at once. */
  async start(): Promise<this> {
    if (this.#timer === null) {
      this.#timer = setInterval(() => void this.sample(), this.windowMs).unref();
      this.#scheduleWeekEnd();
    }
    await this.#serial(() => this.#syncAll());
    return this;
  }

  /** Stops the timer and persists the range calls counted since the last window. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#weekTimer !== null) clearTimeout(this.#weekTimer);
    this.#weekTimer = null;
    await this.#serial(async () => {
      this.#countRanges(this.#clock());
      await this.#syncAll();
    });
  }

  /** Closes the current window now (the timer does this every `windowMs`). */
  sample(): Promise<void> {
    return this.#serial(async () => {
      const now = this.#clock();
      // #close never throws: one map whose getters throw (a custom store whose backend is
      // down) must not stop the windows of the others, nor the sync of their weeks.
      for (const f of this.#followed.values()) this.#close(f, now);
      this.#samples++;
      await this.#syncAll();
      this.#retireGone();
    });
  }

  get samples(): number {
    return this.#samples;
  }

  /** The evidence for each followed map, as of the last window. */
  evidence(): MapEvidence[] {
    const now = this.#clock();
    const trend = this.gc?.trend(now) ?? null;
    const out: MapEvidence[] = [];
    for (const f of this.#followed.values()) {
      const map = f.ref.deref();
      // Disposed or collected: not advised on from now (its last windows would be advice about a
      // map that no longer exists); it stays followed only until its weekly counts are persisted.
      if (map === undefined || map.disposed) continue;
      const rw = f.windows.slice(-this.readWriteWindows);
      const reads = rw.reduce((n, w) => n + w.reads, 0);
      const writes = rw.reduce((n, w) => n + w.writes, 0);
      const judged = rw.length > 0 && reads + writes >= this.minOpsForReadWrite;
      const notes: string[] = [];
      if (this.gc === null) notes.push('no GC monitor: the miss-ratio signal cannot fire (start a sandbox and pass its gc)');
      if (this.stateStore === null) notes.push('no state store: weekly range counts are this process\'s only');
      const problem = f.weeks.problem;
      if (problem !== null) notes.push(problem);
      if (f.readError !== null) notes.push(f.readError);
      let keys = f.keys;
      try {
        keys = map.size;
      } catch (error) {
        notes.push(`cannot read the key count of map "${f.name}" now: ${describe(error)}; the last one read is used`);
      }
      out.push({
        map: f.name,
        instance: null,
        source: 'in-process',
        keys,
        missRatio: { latest: f.latestMissRatio, breachedWindows: f.latestMissRatio === null ? null : f.breached, observedWindows: f.observed, windowMs: this.windowMs },
        gc: { rising: trend?.rising ?? null, ratio: trend?.ratio ?? null, recentPauseFraction: trend?.recentPauseFraction ?? null },
        readWrite: {
          ratio: judged && writes > 0 ? reads / writes : null,
          reads: judged ? reads : null,
          writes: judged ? writes : null,
        },
        ranges: {
          current: { week: isoWeek(now), count: f.weeks.count(isoWeek(now)) },
          previous: { week: isoWeekBefore(now, 1), count: f.weeks.count(isoWeekBefore(now, 1)) },
          beforePrevious: { week: isoWeekBefore(now, 2), count: f.weeks.count(isoWeekBefore(now, 2)) },
          calendar: 'iso-week',
        },
        notes,
      });
    }
    return out;
  }

  /** Per followed map: why its weekly counts are not persisted right now, or null. */
  persistenceProblems(): Array<{ map: string; problem: string | null }> {
    return [...this.#followed.values()].map((f) => ({ map: f.name, problem: f.weeks.problem }));
  }

  /** One recommendation per followed map, with the signals and figures behind it. */
  advise(): Advice[] {
    return this.evidence().map((e) => advise(e, this.thresholds));
  }

  // ---------------------------------------------------------------- internals

  #close(f: Followed, now: number): void {
    const map = f.ref.deref();
    let current: Baseline;
    try {
      if (map === undefined) return;
      if (map.disposed) {
        // Not judged any more (see #retireGone); the range calls it took before count.
        this.#countRanges(now, f);
        return;
      }
      current = snapshot(map);
    } catch (error) {
      // The window cannot be judged: it breaks both runs, as a quiet window does. The baseline
      // stays, so the range calls of this window are counted at the next one that reads.
      f.readError = `cannot read map "${f.name}" at the window closing ${new Date(now).toISOString()}: ${describe(error)}`;
      f.latestMissRatio = null;
      f.observed = 0;
      f.breached = 0;
      return;
    }
    f.readError = null;
    // The key count alone unreadable: the window is still judged, with the last count read.
    try {
      f.keys = map.size;
    } catch (error) {
      f.readError = `cannot read the key count of map "${f.name}" at the window closing ${new Date(now).toISOString()}: ${describe(error)}; the last one read is used`;
    }
    // A different instance under the same name, or counters that went down: start from zero,
    // as Prometheus treats a counter reset.
    const sameInstance = f.baselineOf?.deref() === map;
    const base = sameInstance && f.baseline !== null && current.loads >= f.baseline.loads && current.ranges >= f.baseline.ranges ? f.baseline : ZERO;
    const window: WindowSample = {
      loads: current.loads - base.loads,
      misses: current.misses - base.misses,
      reads: current.reads - base.reads,
      writes: current.writes - base.writes,
    };
    f.weeks.add(isoWeek(now), current.ranges - base.ranges);
    f.baseline = current;
    f.baselineOf = new WeakRef(map);
    f.windows.push(window);
    const keep = Math.max(this.thresholds.missRatioWindows, this.readWriteWindows);
    if (f.windows.length > keep) f.windows.splice(0, f.windows.length - keep);
    if (window.loads >= this.minLoadsPerWindow) {
      const ratio = window.misses / window.loads;
      f.latestMissRatio = ratio;
      f.observed++;
      f.breached = ratio > this.thresholds.missRatio ? f.breached + 1 : 0;
    } else {
      // A quiet window breaks both runs: "held" means consecutive windows with traffic.
      f.latestMissRatio = null;
      f.observed = 0;
      f.breached = 0;
    }
  }

  /**
   * Counts the range calls at the end of each ISO week (Monday 00:00 UTC). A window closes into
   * the week of its closing time, so without this the calls of a window straddling midnight
   * (Sunday's last minutes, or a whole day with daily windows) went to the next week, and the
   * week-over-week signal compared the wrong calls.
   */
  #scheduleWeekEnd(): void {
    const end = isoWeekStart(this.#clock()) + WEEK_MS;
    // At most a week, within a timer's limit; unref'd like the window timer.
    this.#weekTimer = setTimeout(() => {
      // A timer can fire a little early by the clock: then the week has not ended, try again.
      // Late, the calls since the boundary (the timer's lag) go to the week that ended.
      if (this.#clock() >= end) {
        // Counted now, not queued behind a sample waiting on a slow state store: calls made
        // meanwhile would count in the week that ended. Safe outside #serial: counting is
        // synchronous, and a sync in flight keeps increments added while it writes.
        this.#countRanges(end - 1);
        void this.#serial(() => this.#syncAll()).catch(() => undefined);
      }
      this.#scheduleWeekEnd();
    }, Math.max(1, end - this.#clock())).unref();
  }

  /**
   * A disposed map (or one collected without dispose) is no longer advised on: its advice would
   * stay frozen at its last windows for ever. It leaves once its weekly counts are persisted (at
   * once without a state store), so a map created again under its name goes on from them.
   */
  #retireGone(): void {
    for (const f of this.#followed.values()) {
      const map = f.ref.deref();
      // Without a state store nothing is ever persisted (pending for ever): the counts are kept
      // in memory instead (#forget), or the map would never leave.
      if ((map === undefined || map.disposed) && (this.stateStore === null || !f.weeks.hasPending)) this.#forget(f);
    }
  }

  /** Stops following `f`; weeks the state store does not hold are kept for a map tracked again under its name. */
  #forget(f: Followed): void {
    this.#followed.delete(f.name);
    if (this.stateStore !== null && !f.weeks.hasPending) return; // tracked again: read back from the store
    // Bounded: names past the cap (maps created and disposed under ever new names) lose theirs, oldest first.
    this.#leftWeeks.set(f.name, f.weeks);
    if (this.#leftWeeks.size > MAX_LEFT_WEEKS) this.#leftWeeks.delete(this.#leftWeeks.keys().next().value!);
  }

  /** Range calls since the last window, into the current week (on stop: nothing is lost at exit). */
  #countRanges(now: number, only?: Followed): void {
    for (const f of only === undefined ? this.#followed.values() : [only]) {
      const map = f.ref.deref();
      if (map === undefined || f.baseline === null || f.baselineOf?.deref() !== map) continue;
      let ranges: number;
      try {
        // A disposed map's counters still read: its last range calls count too.
        ranges = map.counters.ranges;
      } catch {
        continue; // unreadable now: the next window that reads the map counts them
      }
      if (ranges < f.baseline.ranges) continue;
      f.weeks.add(isoWeek(now), ranges - f.baseline.ranges);
      f.baseline = { ...f.baseline, ranges };
    }
  }

  async #syncAll(): Promise<void> {
    if (this.stateStore === null) return; // counts live in memory only: nothing to read or write
    const now = this.#clock();
    for (const f of this.#followed.values()) await f.weeks.sync(this.stateStore, now);
  }

  /** One sample or sync at a time: a slow state store must not interleave two. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(task);
    this.#chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

/** Names whose weekly counts are kept after their map left (see Advisor.#leftWeeks). */
const MAX_LEFT_WEEKS = 1_000;

const ZERO = Object.freeze({ loads: 0, misses: 0, reads: 0, writes: 0, ranges: 0 });

function snapshot(map: AdvisedMap): Baseline {
  const c = map.counters;
  return { loads: c.loads, misses: c.misses, reads: c.reads, writes: c.writes, ranges: c.ranges };
}

/**
 * The longest delay a Node.js timer holds (a signed 32-bit count of ms, about 24.8 days). Node
 * turns a longer one into 1 ms with a TimeoutOverflowWarning: a window meant to last days would
 * close a thousand times a second.
 */
const MAX_TIMER_MS = 2_147_483_647;

/** The key count, or null when the map cannot say (its store's getter threw). */
function readSize(map: AdvisedMap): number | null {
  try {
    return map.size;
  } catch {
    return null;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function whole(option: string, value: number, min: number): number {
  if (!(Number.isSafeInteger(value) && value >= min)) throw new ConfigurationError(option, `must be a whole number of at least ${min}`, value);
  return value;
}

function id(option: string, value: string): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) throw new ConfigurationError(option, 'must match [A-Za-z0-9_.:-]{1,64} (it becomes part of a state key)', value);
  return value;
}

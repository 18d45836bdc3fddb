import { onMapCreated } from '../map/creation-hooks.ts';
import { ConfigurationError } from '../map/errors.ts';
import type { GovernedMap } from '../map/governed-map.ts';
import type { MapCounters } from '../map/stats.ts';
import { SITE_NOT_CAPTURED, SiteCapture, formatSite } from './creation-site.ts';
import type { ConstructorLike, CreationSite, PendingSite } from './creation-site.ts';
import { GcMonitor } from './gc-monitor.ts';
import type { GcMonitorOptions } from './gc-monitor.ts';
import type { IdleSuspect, KeyGrowthSuspect, LeakSuspect, SandboxReport, SiteGrowthSuspect, SiteSummary } from './report.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { monotonicNow } from './monotonic-clock.ts';

/** What the sandbox reads of a map. Any GovernedMap<K, V> fits. */
export type SandboxedMap = Pick<GovernedMap<unknown, unknown>, 'name' | 'counters' | 'size' | 'disposed'>;

export interface SandboxOptions {
  /** A live map with no operation for this long is an IDLE suspect, ms. Default 300,000 (5 minutes, the specification's). */
  readonly idleThresholdMs?: number;
  /** How often the sweep runs, ms, 10 to 2,147,483,647 (a Node.js timer's limit); also the resolution of "last access". Default 30,000. */
  readonly sweepIntervalMs?: number;
  /** Creation stacks captured per second at most (each costs 3–5 µs); 0 = none. Default 100. */
  readonly siteCapturesPerSecond?: number;
  /** Frames kept per creation site. Default 6. */
  readonly siteFrames?: number;
  /** Post-GC samples at which a site's live count must have risen (never falling) to be a SITE_GROWTH suspect. Default 3. */
  readonly siteGrowthSamples?: number;
  /** ...and by at least this many instances since the rise began. Default 50. */
  readonly minSiteGrowth?: number;
  /** Sweeps at which a map's key count must have risen (never falling) to be a KEY_GROWTH suspect. Default 5. */
  readonly keyGrowthSweeps?: number;
  /** ...and by at least this many keys since the rise began. Default 1,000. */
  readonly minKeyGrowth?: number;
  /**
   * GC observation: true (default) builds a GcMonitor and starts it with the sandbox, as do
   * GcMonitor options (e.g. `{ windowMs }` to match the advisor's window); false turns it off
   * (site growth is then sampled at every sweep, which can count maps that are unreachable but
   * not yet collected); or pass your own monitor (started and stopped by you).
   */
  readonly gc?: boolean | GcMonitor | GcMonitorOptions;
  /** Suspects listed in a report at most (the rest are counted). Default 50. */
  readonly maxSuspectsListed?: number;
  /** Called once when a suspect appears (again after it has cleared): hook audit or logs here. */
  readonly onSuspect?: (suspect: LeakSuspect) => void;
  /** Milliseconds clock; tests pass a controllable one. Default: the monotonic clock (monotonic-clock.ts), so that a step of the host's clock is not taken for elapsed time. */
  readonly clock?: () => number;
  /** Directory creation-site paths are shown relative to. Default `process.cwd()`. */
  readonly cwd?: string;
}

/** Every key of SandboxOptions (the compiler checks the two stay the same): any other is refused. */
const SANDBOX_OPTIONS = optionKeys<SandboxOptions>({
  idleThresholdMs: true, sweepIntervalMs: true, siteCapturesPerSecond: true, siteFrames: true, siteGrowthSamples: true,
  minSiteGrowth: true, keyGrowthSweeps: true, minKeyGrowth: true, gc: true, maxSuspectsListed: true, onSuspect: true,
  clock: true, cwd: true,
});

/**
 * One tracked map. Holds the map only through `ref`; everything else is a copy taken at
 * registration or at a sweep.
 */
interface TrackedInstance {
  readonly id: number;
  readonly ref: WeakRef<SandboxedMap>;
  readonly name: string;
  readonly createdAtMs: number;
  pending: PendingSite | null;
  site: SiteRecord | null;
  /** Total operation count seen at the last sweep, and the sweep time it last changed at. */
  lastOps: number;
  lastActiveAtMs: number;
  lastKeys: number;
  /** When lastKeys was sampled: a rise counts only between samples half a sweep interval apart. */
  lastKeySampleMs: number;
  keyStreakFromKeys: number;
  keyStreakSinceMs: number;
  keyRises: number;
  /** Sample times of the streak's first and latest rise (see stillGrowing). */
  keyFirstRiseMs: number;
  keyLastRiseMs: number;
}

/** Per creation site: live count in the current sweep and its rise since the last fall. */
interface SiteRecord {
  readonly site: CreationSite;
  /** Names of the site's live maps at the current sweep. */
  readonly maps: Set<string>;
  live: number;
  lastSampleLive: number;
  streakFromLive: number;
  streakSinceMs: number;
  rises: number;
  firstRiseMs: number;
  lastRiseMs: number;
}

/**
 * The runtime audit sandbox: a registry of every live GovernedMap of this thread (creation
 * hooks are per thread: a worker's maps need a sandbox there), and a
 * periodic sweep that names the maps that look leaked.
 *
 * How it stays off the hot path: it never watches operations. A map already counts its
 * operations in plain numbers (`map.counters`); the sweep sums them and, when the sum changed
 * since the previous sweep, stamps the map "active at this sweep". Last access is therefore
 * known to within one sweep interval, at zero cost per operation, and an IDLE verdict is
 * conservative: a map reported idle for N ms has had no operation for at least N ms.
 *
 * Why WeakRef and not finalizers alone: a FinalizationRegistry callback may never run (in a
 * probe one of 900 collectable objects never got its callback), so the sweep treats an empty
 * WeakRef as the truth and the finalizer only as an early notice. Each instance leaves the
 * registry exactly once, counted as collected or disposed by whichever notices first.
 *
 * Invariants:
 * - the registry never keeps a map alive (WeakRef only; a sweep's `deref` holds maps until the
 *   end of the current job, as the language requires, and no longer);
 * - site growth is sampled only after a major GC has run since the previous sample (when GC is
 *   observed): a live count taken then counts reachable maps, not garbage awaiting collection.
 *
 * Off by default: until `start()` no hook is registered and nothing runs; GovernedMap's own
 * cost is unchanged either way.
 */
export class Sandbox {
  readonly idleThresholdMs: number;
  readonly sweepIntervalMs: number;
  readonly siteGrowthSamples: number;
  readonly minSiteGrowth: number;
  readonly keyGrowthSweeps: number;
  readonly minKeyGrowth: number;
  readonly maxSuspectsListed: number;
  /** The GC monitor, or null when GC observation is off. */
  readonly gc: GcMonitor | null;
  readonly #ownsGc: boolean;
  readonly #capture: SiteCapture;
  readonly #clock: () => number;
  readonly #cwd: string;
  readonly #onSuspect: ((suspect: LeakSuspect) => void) | undefined;
  readonly #instances = new Map<number, TrackedInstance>();
  readonly #sites = new Map<string, SiteRecord>();
  readonly #finalization = new FinalizationRegistry<number>((id) => this.#forget(id, 'collected'));
  readonly #activeSuspects = new Set<string>();
  #nextId = 1;
  #unhook: (() => void) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #created = 0;
  #collected = 0;
  #disposed = 0;
  #live = 0;
  #sweeps = 0;
  #sweepErrors = 0;
  #unreadableMaps = 0;
  #lastSweepAtMs: number | null = null;
  #lastSweepMs: number | null = null;
  #lastSampledMajors = -1;
  #suspects: LeakSuspect[] = [];

  constructor(options: SandboxOptions = {}) {
    refuseUnknownOptions(options, SANDBOX_OPTIONS, 'Sandbox');
    this.idleThresholdMs = positive('idleThresholdMs', options.idleThresholdMs ?? 300_000, 1);
    this.sweepIntervalMs = timerDelay('sweepIntervalMs', positive('sweepIntervalMs', options.sweepIntervalMs ?? 30_000, 10));
    this.siteGrowthSamples = wholeNumber('siteGrowthSamples', options.siteGrowthSamples ?? 3, 1);
    this.minSiteGrowth = wholeNumber('minSiteGrowth', options.minSiteGrowth ?? 50, 1);
    this.keyGrowthSweeps = wholeNumber('keyGrowthSweeps', options.keyGrowthSweeps ?? 5, 1);
    this.minKeyGrowth = wholeNumber('minKeyGrowth', options.minKeyGrowth ?? 1000, 1);
    this.maxSuspectsListed = wholeNumber('maxSuspectsListed', options.maxSuspectsListed ?? 50, 1);
    const captures = wholeNumber('siteCapturesPerSecond', options.siteCapturesPerSecond ?? 100, 0);
    const frames = wholeNumber('siteFrames', options.siteFrames ?? 6, 1);
    if (options.onSuspect !== undefined && typeof options.onSuspect !== 'function') throw new ConfigurationError('onSuspect', 'must be a function when given');
    this.#clock = options.clock ?? monotonicNow;
    this.#cwd = options.cwd ?? process.cwd();
    this.#onSuspect = options.onSuspect;
    this.#capture = new SiteCapture({ capturesPerSecond: captures, frames, clock: this.#clock });
    const gc = options.gc ?? true;
    if (gc instanceof GcMonitor) {
      this.gc = gc;
      this.#ownsGc = false;
    } else if (gc === true || (gc !== null && typeof gc === 'object')) {
      this.gc = new GcMonitor({ clock: this.#clock, ...(gc === true ? {} : gc) });
      this.#ownsGc = true;
    } else if (gc === false) {
      this.gc = null;
      this.#ownsGc = false;
    } else {
      throw new ConfigurationError('gc', 'must be true, false, GcMonitor options or a GcMonitor', gc);
    }
  }

  /** Tracks every GovernedMap created from now on and starts the periodic sweep. Idempotent. */
  start(): this {
    if (this.#unhook !== null) return this;
    this.#unhook = onMapCreated((map) => this.#register(map as SandboxedMap, true));
    this.#timer = setInterval(() => this.#sweepFromTimer(), this.sweepIntervalMs).unref();
    if (this.#ownsGc) this.gc?.start();
    return this;
  }

  /** Stops tracking new maps, the sweep timer and (if it owns it) the GC monitor. Tracked maps stay tracked. */
  stop(): void {
    this.#unhook?.();
    this.#unhook = null;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#ownsGc) this.gc?.stop();
  }

  get running(): boolean {
    return this.#unhook !== null;
  }

  /**
   * Tracks a map created before `start()` (its creation site is unknown). Its last access
   * starts now. A map already tracked is left as it is. O(tracked maps): meant for the few
   * maps a service builds before it starts the sandbox, not for a hot path (a WeakSet of known
   * maps would make this O(1) but add ~0.5–1 µs to every map creation).
   */
  track(map: SandboxedMap): void {
    for (const instance of this.#instances.values()) if (instance.ref.deref() === map) return;
    this.#register(map, false);
  }

  /** Maps tracked and not yet known to be collected or disposed (some may await collection). */
  get tracked(): number {
    return this.#instances.size;
  }

  /**
   * `sweepErrors`: sweeps that could not read every map (or failed whole); `unreadableMaps`:
   * live maps whose getters threw at the last sweep (left out of IDLE and KEY_GROWTH).
   */
  get counts(): { created: number; collected: number; disposed: number; live: number; unreadableMaps: number; sweeps: number; sweepErrors: number; sitesSkipped: number; sitesCaptured: number } {
    return {
      created: this.#created,
      collected: this.#collected,
      disposed: this.#disposed,
      live: this.#live,
      unreadableMaps: this.#unreadableMaps,
      sweeps: this.#sweeps,
      sweepErrors: this.#sweepErrors,
      sitesSkipped: this.#capture.skipped,
      sitesCaptured: this.#capture.captured,
    };
  }

  /** Suspects found by the latest sweep. */
  get suspects(): readonly LeakSuspect[] {
    return this.#suspects;
  }

  get lastSweepSeconds(): number | null {
    return this.#lastSweepMs === null ? null : this.#lastSweepMs / 1000;
  }

  /**
   * Walks the registry now: drops collected and disposed maps, stamps activity, formats new
   * creation sites, samples site growth (after a major GC) and recomputes the suspects.
   * The timer calls this every `sweepIntervalMs`; call it yourself for an up-to-date report.
   */
  sweep(): readonly LeakSuspect[] {
    const startedAt = performance.now();
    const now = this.#clock();
    // Counted again from the live maps: a site's names are those of its live maps, or a site that
    // names a map per session would hold (and list as "+N more") every name it ever created.
    for (const record of this.#sites.values()) {
      record.live = 0;
      record.maps.clear();
    }
    const idle = new Map<string, { suspect: Mutable<IdleSuspect>; ids: number[]; oldestMs: number }>();
    const keyGrowth: KeyGrowthSuspect[] = [];
    let live = 0;
    let unreadable = 0;
    for (const [id, instance] of this.#instances) {
      const map = instance.ref.deref();
      if (map === undefined) {
        this.#forget(id, 'collected');
        continue;
      }
      // A map whose getters throw (a custom store whose backend is down) is alive but cannot
      // be judged: it is counted live and at its site, and skipped for IDLE and KEY_GROWTH,
      // so that one such map neither hides the leaks of every other map nor fails the sweep.
      let ops: number;
      let keys: number;
      try {
        if (map.disposed) {
          this.#forget(id, 'disposed');
          continue;
        }
        ops = totalOperations(map.counters);
        keys = map.size;
      } catch {
        unreadable++;
        ops = -1;
        keys = -1;
      }
      live++;
      if (instance.pending !== null) {
        instance.site = this.#siteRecord(formatSite(instance.pending, this.#cwd), now);
        instance.pending = null;
      }
      if (instance.site !== null) {
        instance.site.live++;
        instance.site.maps.add(instance.name);
      }
      if (ops < 0) continue;
      if (ops !== instance.lastOps) {
        instance.lastOps = ops;
        instance.lastActiveAtMs = now;
      }
      this.#followKeys(instance, keys, now);

      const idleForMs = now - instance.lastActiveAtMs;
      if (idleForMs >= this.idleThresholdMs) {
        const groupKey = `${instance.name}\u0000${instance.site?.site.key ?? SITE_NOT_CAPTURED}`;
        let group = idle.get(groupKey);
        if (group === undefined) {
          group = {
            suspect: { kind: 'IDLE', map: instance.name, site: instance.site?.site ?? null, instances: 0, keys: 0, idleForMs: { min: idleForMs, max: idleForMs }, oldestCreatedAt: iso(instance.createdAtMs), sampleIds: [] },
            ids: [],
            oldestMs: instance.createdAtMs,
          };
          idle.set(groupKey, group);
        }
        const s = group.suspect;
        s.instances++;
        s.keys += keys;
        s.idleForMs = { min: Math.min(s.idleForMs.min, idleForMs), max: Math.max(s.idleForMs.max, idleForMs) };
        if (instance.createdAtMs < group.oldestMs) {
          group.oldestMs = instance.createdAtMs;
          s.oldestCreatedAt = iso(instance.createdAtMs);
        }
        if (group.ids.length < 10) group.ids.push(id);
      }
      if (
        instance.keyRises >= this.keyGrowthSweeps &&
        keys - instance.keyStreakFromKeys >= this.minKeyGrowth &&
        stillGrowing(instance.keyFirstRiseMs, instance.keyLastRiseMs, now, this.keyGrowthSweeps * this.sweepIntervalMs)
      ) {
        keyGrowth.push({
          kind: 'KEY_GROWTH',
          map: instance.name,
          instance: id,
          site: instance.site?.site ?? null,
          keys,
          grewFrom: instance.keyStreakFromKeys,
          risingSweeps: instance.keyRises,
          since: iso(instance.keyStreakSinceMs),
        });
      }
    }
    this.#live = live;
    this.#unreadableMaps = unreadable;
    if (unreadable > 0) this.#sweepErrors++;
    const siteGrowth = this.#sampleSites(now);

    const suspects: LeakSuspect[] = [
      ...siteGrowth,
      ...[...idle.values()].map(({ suspect, ids }) => ({ ...suspect, sampleIds: ids })).sort((a, b) => b.instances - a.instances),
      ...keyGrowth.sort((a, b) => b.keys - a.keys),
    ];
    this.#suspects = suspects;
    this.#sweeps++;
    this.#lastSweepAtMs = now;
    this.#lastSweepMs = performance.now() - startedAt;
    this.#announce(suspects);
    return suspects;
  }

  /** The JSON report of the latest sweep (run `sweep()` first for a fresh one). */
  report(): SandboxReport {
    const listed = this.#suspects.slice(0, this.maxSuspectsListed);
    const topSites: SiteSummary[] = [...this.#sites.values()]
      .filter((r) => r.live > 0)
      .sort((a, b) => b.live - a.live)
      .slice(0, 10)
      .map((r) => ({ site: r.site, maps: namesOf(r), live: r.live }));
    return {
      generatedAt: iso(this.#clock()),
      running: this.running,
      settings: {
        idleThresholdMs: this.idleThresholdMs,
        sweepIntervalMs: this.sweepIntervalMs,
        siteCapturesPerSecond: this.#capture.capturesPerSecond,
        siteGrowthSamples: this.siteGrowthSamples,
        minSiteGrowth: this.minSiteGrowth,
        keyGrowthSweeps: this.keyGrowthSweeps,
        minKeyGrowth: this.minKeyGrowth,
      },
      sweeps: this.#sweeps,
      lastSweepAt: this.#lastSweepAtMs === null ? null : iso(this.#lastSweepAtMs),
      lastSweepMs: this.#lastSweepMs,
      instances: {
        live: this.#live,
        created: this.#created,
        collected: this.#collected,
        disposed: this.#disposed,
        sitesCaptured: this.#capture.captured,
        sitesSkipped: this.#capture.skipped,
      },
      suspects: listed,
      suspectsNotListed: this.#suspects.length - listed.length,
      topSites,
      gc: {
        observing: this.gc?.observing ?? false,
        pauses: this.gc?.stats() ?? null,
        trend: this.gc?.trend() ?? null,
      },
    };
  }

  // ---------------------------------------------------------------- internals

  #register(map: SandboxedMap, capture: boolean): void {
    const id = this.#nextId++;
    const now = this.#clock();
    // A map whose getters throw at creation (a custom store whose backend is down) is tracked
    // all the same, as an unreadable map is at a sweep: left out here, it would never be counted
    // nor judged, even once its store is back. Unread, its first readable sweep starts it off:
    // operations -1 differ from any count (active then, never idle from before), and keys
    // +Infinity make the first count read a fall, which starts the key streak from there.
    let keys = Number.POSITIVE_INFINITY;
    let ops = -1;
    try {
      keys = map.size;
      ops = totalOperations(map.counters);
    } catch {
      // read at the next sweep
    }
    const instance: TrackedInstance = {
      id,
      ref: new WeakRef(map),
      name: map.name,
      createdAtMs: now,
      pending: capture ? this.#capture.capture(map.constructor as ConstructorLike) : null,
      site: null,
      lastOps: ops,
      lastActiveAtMs: now,
      lastKeys: keys,
      lastKeySampleMs: now,
      keyStreakFromKeys: keys,
      keyStreakSinceMs: now,
      keyRises: 0,
      keyFirstRiseMs: now,
      keyLastRiseMs: now,
    };
    this.#instances.set(id, instance);
    // No unregister token: registering with one costs about 10x more (V8 keeps a token table),
    // and a callback for an instance already forgotten finds nothing to do.
    this.#finalization.register(map, id);
    this.#created++;
  }

  #forget(id: number, why: 'collected' | 'disposed'): void {
    const instance = this.#instances.get(id);
    if (instance === undefined) return;
    this.#instances.delete(id);
    if (why === 'collected') this.#collected++;
    else this.#disposed++;
  }

  /** A rise extends the streak; a fall restarts it from the fallen value. */
  #followKeys(instance: TrackedInstance, keys: number, now: number): void {
    if (keys < instance.lastKeys) {
      // A fall ends the streak whenever it is seen.
      instance.keyStreakFromKeys = keys;
      instance.keyStreakSinceMs = now;
      instance.keyRises = 0;
    } else if (now >= instance.lastKeySampleMs && now - instance.lastKeySampleMs < this.sweepIntervalMs / 2) {
      // A sweep run by hand soon after another (GET /sandbox/report polled by a dashboard) is
      // not a sample: otherwise five polls a few seconds apart would make any map taking new
      // keys a KEY_GROWTH suspect, where the rule means five rises over five sweep intervals.
      // A clock that stepped back (an NTP correction) makes a sample: otherwise none would be
      // taken until it caught up, and a leak would go unnamed for as long as the step.
      return;
    } else if (keys > instance.lastKeys) {
      if (instance.keyRises === 0) instance.keyFirstRiseMs = now;
      instance.keyLastRiseMs = now;
      instance.keyRises++;
    }
    instance.lastKeys = keys;
    instance.lastKeySampleMs = now;
  }

  #siteRecord(site: CreationSite, now: number): SiteRecord {
    let record = this.#sites.get(site.key);
    if (record === undefined) {
      record = { site, maps: new Set(), live: 0, lastSampleLive: 0, streakFromLive: 0, streakSinceMs: now, rises: 0, firstRiseMs: now, lastRiseMs: now };
      this.#sites.set(site.key, record);
    }
    return record;
  }

  /**
   * Site growth. Sampled only on the first sweep after a major GC (or every sweep without GC
   * observation); a fall restarts a site's streak, a rise extends it.
   */
  #sampleSites(now: number): SiteGrowthSuspect[] {
    const majors = this.gc?.majorCollections ?? null;
    const fresh = majors === null || majors !== this.#lastSampledMajors;
    if (fresh) this.#lastSampledMajors = majors ?? -1;
    const suspects: SiteGrowthSuspect[] = [];
    for (const [key, record] of this.#sites) {
      if (fresh) {
        if (record.live < record.lastSampleLive) {
          record.streakFromLive = record.live;
          record.streakSinceMs = now;
          record.rises = 0;
        } else if (record.live > record.lastSampleLive) {
          if (record.rises === 0) record.firstRiseMs = now;
          record.lastRiseMs = now;
          record.rises++;
        }
        record.lastSampleLive = record.live;
        if (record.live === 0) {
          // Nothing alive from here: forget it (a later instance starts a new record).
          this.#sites.delete(key);
          continue;
        }
      }
      if (
        record.rises >= this.siteGrowthSamples &&
        record.live - record.streakFromLive >= this.minSiteGrowth &&
        stillGrowing(record.firstRiseMs, record.lastRiseMs, now, this.siteGrowthSamples * this.sweepIntervalMs)
      ) {
        suspects.push({
          kind: 'SITE_GROWTH',
          site: record.site,
          maps: namesOf(record),
          live: record.live,
          grewFrom: record.streakFromLive,
          risingSamples: record.rises,
          since: iso(record.streakSinceMs),
        });
      }
    }
    return suspects.sort((a, b) => b.live - a.live);
  }

  #announce(suspects: readonly LeakSuspect[]): void {
    const now = new Set(suspects.map(suspectKey));
    for (const key of this.#activeSuspects) if (!now.has(key)) this.#activeSuspects.delete(key);
    if (this.#onSuspect === undefined) {
      for (const key of now) this.#activeSuspects.add(key);
      return;
    }
    for (const suspect of suspects) {
      const key = suspectKey(suspect);
      if (this.#activeSuspects.has(key)) continue;
      this.#activeSuspects.add(key);
      try {
        const returned: unknown = this.#onSuspect(suspect);
        // An `async` listener (which the `void` return type lets through) fails by rejecting:
        // left alone, that is an unhandled rejection, which ends the service's process.
        if (returned !== null && typeof returned === 'object' && typeof (returned as { then?: unknown }).then === 'function') {
          (returned as PromiseLike<unknown>).then(undefined, () => undefined);
        }
      } catch {
        // A failing listener (an audit sink down) must not stop the sweep; it reports its own failures.
      }
    }
  }

  #sweepFromTimer(): void {
    try {
      this.sweep();
    } catch {
      // The sweep reads maps through their public getters; a throwing custom store must not
      // kill the timer. Counted, visible in metrics.
      this.#sweepErrors++;
    }
  }
}

type Mutable<T> = { -readonly [P in keyof T]: T[P] };

/** Map names shown per site: a site that names its maps per request would otherwise list thousands. */
const MAX_NAMES_PER_SITE = 10;

function namesOf(record: SiteRecord): string[] {
  const names = [...record.maps].slice(0, MAX_NAMES_PER_SITE);
  if (record.maps.size > MAX_NAMES_PER_SITE) names.push(`(+${record.maps.size - MAX_NAMES_PER_SITE} more names)`);
  return names;
}

/** Operations a caller made: reads, writes, deletes, no-op updates, ranges (not expiry sweeps). */
export function totalOperations(c: Readonly<MapCounters>): number {
  return c.loads + c.hasCalls + c.storesOk + c.storesRejected + c.storesError + c.deletesOk + c.deletesMiss + c.deletesRejected + c.updatesNoop + c.ranges;
}

/**
 * Whether a streak of rises is still going on: no longer flat since its latest rise than it
 * took to rise (from its first rise to its latest), nor than `minGraceMs`. A flat sample does
 * not end a streak (a slow leak has many), so without this a bounded cache that filled up
 * (`maxKeys` with eviction: its size never falls again) or a set of per-tenant maps that
 * stopped at the last tenant would stay a suspect for the life of the process. The streak is
 * kept, not reset: a leak that rises in steps, flat in between, is named again at its next
 * rise with all its growth; and once it has risen for a while, a pause as long is improbable.
 */
function stillGrowing(firstRiseMs: number, lastRiseMs: number, now: number, minGraceMs: number): boolean {
  return now - lastRiseMs <= Math.max(lastRiseMs - firstRiseMs, minGraceMs);
}

function suspectKey(suspect: LeakSuspect): string {
  switch (suspect.kind) {
    case 'IDLE':
      return `IDLE\u0000${suspect.map}\u0000${suspect.site?.key ?? SITE_NOT_CAPTURED}`;
    case 'SITE_GROWTH':
      return `SITE_GROWTH\u0000${suspect.site.key}`;
    case 'KEY_GROWTH':
      return `KEY_GROWTH\u0000${suspect.instance}`;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function positive(option: string, value: number, min: number): number {
  if (!(typeof value === 'number' && Number.isFinite(value) && value >= min)) throw new ConfigurationError(option, `must be a number of milliseconds of at least ${min}`, value);
  return value;
}

/**
 * The longest delay a Node.js timer holds (a signed 32-bit count of ms, about 24.8 days). Node
 * turns a longer one into 1 ms with a TimeoutOverflowWarning: a sweep meant to be rare would
 * run a thousand times a second.
 */
const MAX_TIMER_MS = 2_147_483_647;

function timerDelay(option: string, value: number): number {
  if (value > MAX_TIMER_MS) throw new ConfigurationError(option, `must be at most ${MAX_TIMER_MS} ms (about 24.8 days), the longest delay a Node.js timer holds; a longer one would fire after 1 ms`, value);
  return value;
}

function wholeNumber(option: string, value: number, min: number): number {
  if (!(Number.isSafeInteger(value) && value >= min)) throw new ConfigurationError(option, `must be a whole number of at least ${min}`, value);
  return value;
}

import { ConfigurationError } from '../map/errors.ts';
import { CircuitBreaker } from './circuit-breaker.ts';
import type { Fallback, ProbeGate, TransitionListener } from './circuit-breaker.ts';
import { BreakerGroupDisposedError, BreakerKeyError } from './errors.ts';
import type { TimerHandle } from './clock.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { BREAKER_OPTIONS, resolveBreakerOptions } from './options.ts';
import type { BreakerSettings, CircuitBreakerOptions } from './options.ts';

export interface BreakerGroupOptions extends CircuitBreakerOptions {
  /** Most breakers held at once; at the limit, the least recently used idle one goes first. Default 10,000. */
  readonly maxBreakers?: number;
  /** A CLOSED breaker with no call for this long is evicted, milliseconds. Default 600,000 (10 min). */
  readonly idleEvictionMs?: number;
}

/** Every key of BreakerGroupOptions (the compiler checks the two stay the same): any other is refused. */
const GROUP_OPTIONS: ReadonlySet<string> = new Set([
  ...BREAKER_OPTIONS,
  ...optionKeys<Omit<BreakerGroupOptions, keyof CircuitBreakerOptions>>({ maxBreakers: true, idleEvictionMs: true }),
]);

/** What a group tells the cluster sync (or any other owner of shared state) about its breakers. */
export interface BreakerLifecycle {
  /** A breaker was created: restore it, install a probe gate, publish it. */
  added(breaker: CircuitBreaker): void;
  /** A breaker was evicted or the group disposed: forget it (and its published snapshot if CLOSED). */
  removed(breaker: CircuitBreaker): void;
}

/** Keys of a group: the same alphabet as X-Biz-Tag values, so an orgId is a key as it is. */
export const BREAKER_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * One breaker per key (route, org, downstream instance) behind one configuration, with bounded
 * memory: at most `maxBreakers`, and breakers idle for `idleEvictionMs` are evicted.
 *
 * Invariants:
 * - only a CLOSED breaker with nothing in flight is evicted when idle: forgetting an OPEN one
 *   would send the next call straight at the failing dependency. At `maxBreakers`, creating a
 *   breaker evicts the least recently used CLOSED one; only if none is CLOSED does it evict the
 *   least recently used of all (counted in `forcedEvictions`; with a cluster sync its OPEN
 *   snapshot stays in the store and is restored if the key comes back).
 * - `get` on the hot path is one Map lookup; recency is a number the breaker writes itself
 *   (`lastUsedAt`), so nothing is reordered per call; the idle sweep runs on a timer.
 */
export class BreakerGroup {
  readonly name: string;
  readonly settings: BreakerSettings;
  readonly maxBreakers: number;
  readonly idleEvictionMs: number;
  /** Breakers evicted because they were idle, or to make room. */
  evictions = 0;
  /** Evictions of a breaker that was not CLOSED (the group was full of open breakers). */
  forcedEvictions = 0;

  readonly #options: CircuitBreakerOptions;
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #listeners: TransitionListener[] = [];
  readonly #lifecycles: BreakerLifecycle[] = [];
  #gateFor: ((breaker: CircuitBreaker) => ProbeGate | null) | null = null;
  #sweep: TimerHandle | null = null;
  #disposed = false;
  /** Eviction candidates from the last scan, oldest first (see #nextVictim). */
  #victims: { readonly breaker: CircuitBreaker; readonly usedAt: number }[] = [];
  #victimAt = 0;

  constructor(options: BreakerGroupOptions) {
    // Checked here, under the group's name and with its two keys: each breaker then gets only
    // the breaker options (the rest below), which it checks again.
    refuseUnknownOptions(options, GROUP_OPTIONS, 'BreakerGroup');
    const { maxBreakers = 10_000, idleEvictionMs = 600_000, ...breakerOptions } = options ?? ({} as BreakerGroupOptions);
    this.settings = resolveBreakerOptions(breakerOptions);
    if (!Number.isInteger(maxBreakers) || maxBreakers < 1 || maxBreakers > 10_000_000) throw new ConfigurationError('maxBreakers', 'a whole number from 1 to 10000000', maxBreakers);
    if (!Number.isInteger(idleEvictionMs) || idleEvictionMs < 1_000 || idleEvictionMs > 86_400_000) {
      throw new ConfigurationError('idleEvictionMs', 'a whole number of milliseconds from 1000 to 86400000', idleEvictionMs);
    }
    this.name = this.settings.name;
    this.maxBreakers = maxBreakers;
    this.idleEvictionMs = idleEvictionMs;
    this.#options = breakerOptions;
    this.#armSweep();
  }

  /** The breaker for `key`, created on first use. @throws BreakerGroupDisposedError after dispose() */
  get(key: string): CircuitBreaker {
    const existing = this.#breakers.get(key);
    if (existing !== undefined) return existing;
    return this.#create(key);
  }

  /**
   * `get(key).execute(call, fallback)`, as a promise in every case: an invalid key rejects with
   * BreakerKeyError and a disposed group with BreakerGroupDisposedError, never a synchronous
   * throw that would pass by the caller's `.catch()`.
   */
  execute<T>(key: string, call: (signal: AbortSignal) => T | PromiseLike<T>, fallback?: Fallback<T>): Promise<T> {
    const breaker = this.#breakers.get(key);
    if (breaker !== undefined) return breaker.execute(call, fallback);
    if (this.#disposed) return Promise.reject(new BreakerGroupDisposedError(this.name, key));
    let created: CircuitBreaker;
    try {
      created = this.#create(key);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return created.execute(call, fallback);
  }

  /** The breaker for `key` if one is held now (does not create one). */
  peek(key: string): CircuitBreaker | undefined {
    return this.#breakers.get(key);
  }

  /** True after dispose(): metrics drop the group from the scrape. */
  get disposed(): boolean {
    return this.#disposed;
  }

  get size(): number {
    return this.#breakers.size;
  }

  breakers(): IterableIterator<CircuitBreaker> {
    return this.#breakers.values();
  }

  /** Listens to the transitions of every breaker of the group, present and future. */
  onTransition(listener: TransitionListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Attaches an owner of shared state (the cluster sync): told of every breaker added or removed, present ones included. */
  attach(lifecycle: BreakerLifecycle, gateFor?: (breaker: CircuitBreaker) => ProbeGate | null): void {
    this.#lifecycles.push(lifecycle);
    if (gateFor !== undefined) this.#gateFor = gateFor;
    for (const breaker of this.#breakers.values()) {
      if (gateFor !== undefined) breaker.setProbeGate(gateFor(breaker));
      lifecycle.added(breaker);
    }
  }

  /** Evicts idle CLOSED breakers now (the sweep timer does this every quarter of idleEvictionMs). */
  evictIdle(now = this.settings.clock.now()): number {
    let evicted = 0;
    for (const breaker of this.#breakers.values()) {
      if (now - breaker.lastUsedAt >= this.idleEvictionMs && this.#evictable(breaker)) {
        this.#evict(breaker);
        evicted++;
      }
    }
    return evicted;
  }

  /**
   * Forgets the breaker for `key` whatever its state (its owner no longer calls through it: a
   * route removed, or given another target, by a table reload). Unlike an eviction it takes an
   * OPEN one too: nothing will call it again, so nothing would ever close it, and it would be
   * scraped as open (alerting) for ever. Calls in flight finish on it. Returns whether there was one.
   */
  remove(key: string): boolean {
    const breaker = this.#breakers.get(key);
    if (breaker === undefined) return false;
    this.#evict(breaker, false);
    return true;
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#sweep !== null) this.settings.clock.clearTimer(this.#sweep);
    this.#sweep = null;
    this.#victims = [];
    for (const breaker of [...this.#breakers.values()]) this.#evict(breaker, false);
  }

  #create(key: string): CircuitBreaker {
    if (typeof key !== 'string' || !BREAKER_KEY.test(key)) throw new BreakerKeyError(this.name, key, 'a key is 1 to 64 letters, digits, "_", "." or "-"');
    // A breaker made now would never be swept, and the attached sync would publish it after its close.
    if (this.#disposed) throw new BreakerGroupDisposedError(this.name, key);
    if (this.#breakers.size >= this.maxBreakers) this.#makeRoom();
    const breaker = new CircuitBreaker({ ...this.#options, clock: this.settings.clock }, { key, sharedListeners: this.#listeners });
    this.#breakers.set(key, breaker);
    if (this.#gateFor !== null) breaker.setProbeGate(this.#gateFor(breaker));
    for (const lifecycle of this.#lifecycles) lifecycle.added(breaker);
    return breaker;
  }

  #makeRoom(): void {
    const idle = this.#nextVictim();
    if (idle !== undefined) {
      this.#evict(idle);
      return;
    }
    let oldest: CircuitBreaker | undefined;
    for (const breaker of this.#breakers.values()) if (oldest === undefined || breaker.lastUsedAt < oldest.lastUsedAt) oldest = breaker;
    if (oldest === undefined) return;
    this.forcedEvictions++;
    this.#evict(oldest);
  }

  /**
   * The least recently used evictable breaker. Scanning every breaker for each new key cost about
   * 1 ms at 10,000 breakers: a flood of unseen orgIds would own the event loop. One scan instead
   * queues the oldest evictable breakers, oldest first, with the lastUsedAt each had; a queued one
   * used since (or no longer evictable) is skipped. The other evictable ones were all used later
   * than the queued ones, and can only have been used later still, so the head stays the oldest;
   * a breaker that becomes evictable meanwhile (its slow call settles) waits for the next scan.
   */
  #nextVictim(): CircuitBreaker | undefined {
    for (let pass = 0; pass < 2; pass++) {
      while (this.#victimAt < this.#victims.length) {
        const { breaker, usedAt } = this.#victims[this.#victimAt++]!;
        if (breaker.lastUsedAt === usedAt && this.#breakers.get(breaker.key!) === breaker && this.#evictable(breaker)) return breaker;
      }
      const candidates: { breaker: CircuitBreaker; usedAt: number }[] = [];
      for (const breaker of this.#breakers.values()) if (this.#evictable(breaker)) candidates.push({ breaker, usedAt: breaker.lastUsedAt });
      candidates.sort((a, b) => a.usedAt - b.usedAt);
      this.#victims = candidates.slice(0, Math.max(1, Math.ceil(this.maxBreakers / 16)));
      this.#victimAt = 0;
      if (candidates.length === 0) return undefined;
    }
    return undefined;
  }

  #evictable(breaker: CircuitBreaker): boolean {
    return breaker.inFlight === 0 && breaker.state === 'CLOSED';
  }

  #evict(breaker: CircuitBreaker, count = true): void {
    this.#breakers.delete(breaker.key!);
    breaker.dispose();
    if (count) this.evictions++;
    for (const lifecycle of this.#lifecycles) lifecycle.removed(breaker);
  }

  #armSweep(): void {
    if (this.#disposed) return;
    this.#sweep = this.settings.clock.setTimer(() => {
      this.evictIdle();
      this.#armSweep();
    }, Math.max(250, Math.floor(this.idleEvictionMs / 4)));
  }
}

import { optionKeys, refuseUnknownOptions } from '../../map/known-options.ts';

/** Marks a key cached as absent: Redis tracks a GET that found nothing like any other read. */
export const ABSENT: unique symbol = Symbol('govmap.absent');
export type Cached<V> = V | typeof ABSENT;

export interface NearCacheOptions {
  /** Entries kept; the oldest-inserted is dropped past it. 0 disables the near cache. */
  readonly maxEntries: number;
  /** How long (ms) entries may still be served after the link went down; 0 drops them at once. */
  readonly staleReadMs: number;
  readonly clock: () => number;
}

/** Every key of NearCacheOptions (the compiler checks the two stay the same): any other is refused. */
const NEAR_CACHE_OPTIONS = optionKeys<NearCacheOptions>({ maxEntries: true, staleReadMs: true, clock: true });

/** One read in flight, shared by every load of the key that arrives meanwhile (single flight). */
interface Fill<V> {
  readonly promise: Promise<Cached<V>>;
  /** The cache generation the read started in. */
  readonly generation: number;
  /** Cleared by an invalidation of the key that arrives while the read is in flight. */
  valid: boolean;
}

/**
 * The in-process near cache of a remote map: decoded values of recently read keys, kept
 * coherent by the server's invalidation messages (RESP3 client tracking).
 *
 * The race it must win: node-redis settles a reply's promise in a later microtask, but runs the
 * push handler for an invalidation synchronously as it decodes it. So "GET reply (old value),
 * then invalidation" on the wire can reach us as "invalidation, then GET result". An entry is
 * therefore admitted only if no invalidation of its key (and no flush, disconnect or reconnect)
 * happened between the moment its read was issued and the moment its result arrived.
 *
 * Invariants:
 * - An entry is only ever a value some GET on a tracking connection returned, admitted under the
 *   rule above; while the link is healthy the server owes us an invalidation for it after the
 *   next write by anyone, and that invalidation removes it.
 * - While the link is down, entries are served only until `staleReadMs` after the last moment the
 *   link was known healthy, and nothing new is admitted; when it comes back, everything is dropped
 *   (invalidations may have been missed).
 */
export class NearCache<V> {
  readonly maxEntries: number;
  readonly staleReadMs: number;
  readonly #clock: () => number;
  readonly #entries = new Map<string, Cached<V>>();
  readonly #inflight = new Map<string, Fill<V>>();
  #generation = 0;
  /** Null while the link is healthy; else the last moment it was known to be. */
  #downSinceMs: number | null = null;

  /** Hits served while the link was down (within `staleReadMs`). */
  staleServes = 0;
  /** Reads whose result was not admitted because the key changed while they were in flight. */
  fillsDiscarded = 0;
  /** Invalidation messages applied (per key, or null for all). */
  invalidations = 0;
  /** Entries dropped to stay within `maxEntries`. */
  evictions = 0;

  constructor(options: NearCacheOptions) {
    refuseUnknownOptions(options, NEAR_CACHE_OPTIONS, 'NearCache');
    this.maxEntries = options.maxEntries;
    this.staleReadMs = options.staleReadMs;
    this.#clock = options.clock;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** False while the link is down. */
  get trusted(): boolean {
    return this.#downSinceMs === null;
  }

  /** The cached value, ABSENT, or undefined when the near cache cannot answer. The hot path. */
  peek(key: string): Cached<V> | undefined {
    const cached = this.#entries.get(key);
    if (cached === undefined || this.#downSinceMs === null) return cached;
    if (this.#clock() - this.#downSinceMs > this.staleReadMs) {
      this.#entries.clear();
      return undefined;
    }
    this.staleServes++;
    return cached;
  }

  /**
   * Reads `key` through the cache: joins a read already in flight, else runs `fetch` and admits
   * its result if the rule in the header allows. `fetch` decodes (and may throw: nothing is
   * admitted then).
   */
  read(key: string, fetch: () => Promise<Cached<V>>): Promise<Cached<V>> {
    const running = this.#inflight.get(key);
    if (running !== undefined) return running.promise;
    const generation = this.#generation;
    const fill: Fill<V> = { promise: undefined as unknown as Promise<Cached<V>>, generation, valid: true };
    (fill as { promise: Promise<Cached<V>> }).promise = fetch().then(
      (value) => {
        if (this.#inflight.get(key) === fill) this.#inflight.delete(key);
        if (fill.valid && fill.generation === this.#generation && this.#downSinceMs === null && this.maxEntries > 0) this.#admit(key, value);
        else this.fillsDiscarded++;
        return value;
      },
      (error: unknown) => {
        if (this.#inflight.get(key) === fill) this.#inflight.delete(key);
        throw error;
      },
    );
    this.#inflight.set(key, fill);
    return fill.promise;
  }

  /** Drops `key` (a server invalidation, or our own write) and disowns any read of it in flight. */
  invalidate(key: string): void {
    this.#entries.delete(key);
    const fill = this.#inflight.get(key);
    if (fill !== undefined) {
      fill.valid = false;
      this.#inflight.delete(key);
    }
  }

  /** Drops everything and disowns every read in flight. */
  invalidateAll(): void {
    this.#generation++;
    this.#entries.clear();
    for (const fill of this.#inflight.values()) fill.valid = false;
    this.#inflight.clear();
  }

  /** The link went down; `sinceMs` is the last moment it was known healthy. */
  suspend(sinceMs: number): void {
    this.#generation++;
    for (const fill of this.#inflight.values()) fill.valid = false;
    this.#inflight.clear();
    if (this.#downSinceMs === null || sinceMs < this.#downSinceMs) this.#downSinceMs = sinceMs;
    if (this.staleReadMs === 0) this.#entries.clear();
  }

  /** The link is back and tracking again: what was cached may have missed invalidations. */
  resume(): void {
    this.#downSinceMs = null;
    this.invalidateAll();
  }

  clear(): void {
    this.invalidateAll();
  }

  #admit(key: string, value: Cached<V>): void {
    if (!this.#entries.has(key) && this.#entries.size >= this.maxEntries) {
      for (const oldest of this.#entries.keys()) {
        this.#entries.delete(oldest);
        this.evictions++;
        break;
      }
    }
    this.#entries.set(key, value);
  }
}

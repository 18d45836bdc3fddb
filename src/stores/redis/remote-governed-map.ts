import { isUtf8 } from 'node:buffer';
import { notifyMapCreated } from '../../map/creation-hooks.ts';
import {
  AsyncRangeCallbackError,
  ConfigurationError,
  GovMapError,
  InvalidArgumentError,
  RangeBoundsError,
  MapDisposedError,
  ObserverFlushError,
  UpdateConflictError,
  UpdateReentrantError,
  ValidationError,
  describeKey,
} from '../../map/errors.ts';
import { checkObservers } from '../../map/governed-map.ts';
import { KeyedQueue } from '../../map/keyed-queue.ts';
import { NULL_OPTION_RULE, findNullOption, findUnknownOption, optionKeys, refuseUnknownOptions } from '../../map/known-options.ts';
import type { MapObserver, OpType, Outcome } from '../../map/observer.ts';
import { checkRangeOptions, compareKeys, describeBounds, inBounds, isBounded } from '../../map/range.ts';
import type { RangeCallback, RangeOptions, RangeResult } from '../../map/range.ts';
import { MapCounters, MapWindows, RANGE_BUCKETS_SECONDS, bucketQuantile } from '../../map/stats.ts';
import type { MapStatsSnapshot } from '../../map/stats.ts';
import { toRejection } from '../../map/validator.ts';
import { admitDelete, admitStore, writeAdmission } from '../../map/admission.ts';
import type { WriteAdmission } from '../../map/admission.ts';
import type { DeleteValidator, Validator } from '../../map/validator.ts';
import { INT64_MAX, INT64_MIN, LONE_SURROGATE } from './codec.ts';
import type { ValueCodec } from './codec.ts';
import { RedisCommandRefusedError, RedisUnavailableError, RedisValueCorruptError } from './errors.ts';
import { LinkFailure, MAX_TIMER_MS } from './link.ts';
import type { RedisLink } from './link.ts';
import { BOUNDED_ADD, CAS_DELETE, CAS_SET, RAW_HEX, Status } from './lua.ts';
import type { LuaScript } from './lua.ts';
import { ABSENT, NearCache } from './near-cache.ts';
import type { Cached } from './near-cache.ts';

/**
 * The range of values an int64 map's validator allows, stated so that Redis can enforce it
 * atomically in `add` (a Lua script checks it against the value Redis holds at that instant).
 * It must agree with the validator: the validator also runs on every `add`, on the freshest
 * value this process knows, for its value-independent rules (type, account state...).
 */
export interface Int64Bounds {
  /** Lowest value allowed, inclusive (0n for a balance). */
  readonly min: bigint;
  /** Highest value allowed, inclusive. Default INT64_MAX. */
  readonly max?: bigint;
  /** Reason code when an `add` would go below `min`. Default `BELOW_MIN`. */
  readonly belowReason?: string;
  /** Reason code when an `add` would go above `max`. Default `ABOVE_MAX`. */
  readonly aboveReason?: string;
}

export interface NearCacheConfig {
  /** Entries kept in process; past it the oldest-inserted is dropped (not the least recently read). 0 disables. Default 100,000. */
  readonly maxEntries?: number;
  /**
   * While Redis is unreachable, near-cache entries are served for at most this many ms after the
   * last moment the connection was known healthy; then reads fail with RedisUnavailableError.
   * Default 0: the near cache is dropped the moment the connection is lost.
   */
  readonly staleReadMs?: number;
}

export interface RemoteGovernedMapOptions<V> {
  /** Names the map in metrics (`map` label), audit events and errors. `[A-Za-z_][A-Za-z0-9_:.-]{0,63}`. */
  readonly name: string;
  /** The business validator every write passes. Required. */
  readonly validate: Validator<string, V>;
  /** Optional check on deletes. */
  readonly validateDelete?: DeleteValidator<string, V>;
  /** How values are written in Redis. `int64Codec` for money (decimal strings). */
  readonly codec: ValueCodec<V>;
  /** Required for `add` (int64 maps): the validator's range, enforced atomically in Redis. */
  readonly bounds?: Int64Bounds;
  /** The connection (from `connectRedis`); may be shared by several maps. */
  readonly link: RedisLink;
  /** Closes `link` on dispose. Default false (true when built by `openRedisGovernedMap`). */
  readonly ownsLink?: boolean;
  /**
   * Prefix of every Redis key of this map: entry `k` lives at `<keyPrefix><k>`. Default
   * `govmap:<name>:`. No `{` or `}`: a hash tag would pin every key of the map to one cluster slot.
   */
  readonly keyPrefix?: string;
  /** Near cache settings, or `false` for none (every load is a round trip). */
  readonly nearCache?: NearCacheConfig | false;
  /**
   * Compare-and-set retries of `update`/`store`/`delete` when another machine changed the key
   * between our read and our write. At most `1 + updateRetries` attempts, then
   * UpdateConflictError (nothing written). Default 8.
   */
  readonly updateRetries?: number;
  /** Upper bound (ms) of the random pause before retry n: uniform in [0, min(max, 2^n)]. Default 50. */
  readonly retryBackoffMaxMs?: number;
  /** How often (ms) `size` is recounted with SCAN. 0 = only on `refreshSize()`. Default 30,000. */
  readonly sizeRefreshMs?: number;
  /** Sliding window of the miss and read:write ratios, in ms. Default 300,000. */
  readonly windowMs?: number;
  /** Milliseconds clock for windows and staleness. Default `Date.now`. */
  readonly clock?: () => number;
  /** Watchers of every operation (audit, sandbox). */
  readonly observers?: readonly MapObserver<string>[];
  /** Called after the near cache dropped `key` on a server invalidation (null: every key). */
  readonly onNearInvalidated?: (key: string | null) => void;
}

/** Every key of RemoteGovernedMapOptions (the compiler checks the two stay the same): any other is refused. */
export const REMOTE_MAP_OPTIONS = optionKeys<RemoteGovernedMapOptions<unknown>>({
  name: true, validate: true, validateDelete: true, codec: true, bounds: true, link: true, ownsLink: true, keyPrefix: true,
  nearCache: true, updateRetries: true, retryBackoffMaxMs: true, sizeRefreshMs: true, windowMs: true, clock: true,
  observers: true, onNearInvalidated: true,
});
/** Every key of NearCacheConfig and of Int64Bounds: a misspelt `staleReadMS` or `mx` would leave a default in force. */
const NEAR_CACHE_CONFIG = optionKeys<NearCacheConfig>({ maxEntries: true, staleReadMs: true });
const INT64_BOUNDS = optionKeys<Int64Bounds>({ min: true, max: true, belowReason: true, aboveReason: true });

/**
 * MapCounters plus what a remote map adds. `misses` counts every load the near cache did not
 * answer with a value (a round trip to Redis, or an absent key): the specification's miss ratio
 * then measures the near cache, which is what a service sizing it needs to see.
 */
export class RemoteMapCounters extends MapCounters {
  /** Loads that went to Redis. (Near-cache hits are `loads - misses`: one increment fewer per hit.) */
  remoteLoads = 0;
  /** Compare-and-set attempts lost to another writer (each one retried or given up). */
  casConflicts = 0;
  /** Operations that failed because Redis was unreachable. */
  unavailable = 0;
}

export interface RemoteMapStatsSnapshot extends MapStatsSnapshot {
  readonly store: string;
  readonly near: {
    readonly entries: number;
    readonly maxEntries: number;
    readonly hits: number;
    readonly remoteLoads: number;
    readonly staleServes: number;
    readonly invalidations: number;
    readonly fillsDiscarded: number;
    readonly evictions: number;
    readonly trusted: boolean;
  };
  readonly casConflicts: number;
  readonly unavailable: number;
}

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$/;
const MAX_KEY_LENGTH = 1024;
const DEFAULT_WINDOW_MS = 5 * 60 * 1000;
const DEFAULT_UPDATE_RETRIES = 8;
const DEFAULT_BACKOFF_MAX_MS = 50;
const DEFAULT_NEAR_ENTRIES = 100_000;
const DEFAULT_SIZE_REFRESH_MS = 30_000;
// SCAN COUNT: keys examined per call; 1,000 keeps each call well under a millisecond on the server.
const SCAN_BATCH = 1000;

interface Current<V> {
  readonly value: V | undefined;
  /** The encoded form Redis holds (compare-and-set compares it), null when absent. */
  readonly raw: string | null;
  /** Whether it came from the near cache (not from Redis just now). */
  readonly near: boolean;
}

/**
 * A governed map whose entries live in Redis (one server or a cluster), shared by every process
 * and machine connected to it, with an in-process near cache kept coherent by RESP3 client
 * tracking. The asynchronous sibling of GovernedMap: same validators, errors, counters, metrics
 * and observers; every operation that may reach Redis returns a promise.
 *
 * Atomicity across machines: every write is a single-key Lua script, so it reads, compares and
 * writes with no other client in between. `update` is optimistic: read (near cache or GET), run
 * `fn` and the validator, then compare-and-set; if another machine wrote first, run again on the
 * value Redis returned, at most `1 + updateRetries` times. `add` is one bounded INCRBY: it never
 * retries and never crosses `bounds`. Within this process, writes of one key are queued (a
 * KeyedQueue) so that they do not contend with each other.
 *
 * Coherence: a write anywhere makes the server send an invalidation to every connection that
 * read the key; a near-cache entry lives until that invalidation arrives. A write on machine A
 * is therefore invisible on B for at most one invalidation delay (measured: `npm run bench --
 * redis`, `invalidation_p99_ms`). When the connection is lost the near cache is distrusted (see
 * `staleReadMs`) and dropped when it returns.
 */
export class RemoteGovernedMap<V> {
  readonly name: string;
  readonly keyPrefix: string;
  readonly createdAtMs: number;
  readonly #link: RedisLink;
  readonly #ownsLink: boolean;
  readonly #codec: ValueCodec<V>;
  readonly #validate: Validator<string, V>;
  readonly #bounds: Required<Int64Bounds> | null;
  readonly #near: NearCache<V>;
  readonly #updateRetries: number;
  readonly #backoffMaxMs: number;
  readonly #clock: () => number;
  readonly #counters = new RemoteMapCounters();
  readonly #windows: MapWindows;
  readonly #queue = new KeyedQueue<string>();
  readonly #onNearInvalidated: ((key: string | null) => void) | undefined;
  readonly #unlisten: () => void;
  readonly #sizeTimer: NodeJS.Timeout | null;
  #observers: MapObserver<string>[];
  /** What admitStore/admitDelete need of this map: the same validation rule as GovernedMap's. */
  readonly #admission: WriteAdmission<string, V>;
  #disposed = false;
  #size = 0;

  constructor(options: RemoteGovernedMapOptions<V>) {
    const { codec, keyPrefix, bounds, maxEntries, staleReadMs, retries, backoffMaxMs, sizeRefreshMs, observers, windowMs } = remoteMapSettings(options);
    const link = options.link;
    if (link === null || typeof link !== 'object' || typeof link.get !== 'function' || typeof link.listen !== 'function') {
      throw new ConfigurationError('link', 'must be a RedisLink from connectRedis()');
    }

    this.name = options.name;
    this.keyPrefix = keyPrefix;
    this.#link = link;
    this.#ownsLink = options.ownsLink === true;
    this.#codec = codec;
    this.#validate = options.validate;
    this.#bounds = bounds;
    this.#updateRetries = retries;
    this.#backoffMaxMs = backoffMaxMs;
    this.#clock = options.clock ?? Date.now;
    this.#near = new NearCache<V>({ maxEntries, staleReadMs, clock: this.#clock });
    this.#onNearInvalidated = options.onNearInvalidated;
    this.createdAtMs = this.#clock();
    this.#windows = new MapWindows(windowMs, this.createdAtMs);
    this.#observers = [...observers];
    this.#admission = writeAdmission(options, this.#counters, (op, key, outcome, reason, value) => {
      if (this.#observers.length !== 0) this.#emit(op, key, outcome, reason, undefined, value);
    });

    if (!link.healthy) this.#near.suspend(this.#clock());
    this.#unlisten = link.listen({
      invalidated: (redisKey) => this.#onInvalidated(redisKey),
      down: (sinceMs) => this.#near.suspend(sinceMs),
      up: () => this.#near.resume(),
    });
    this.#sizeTimer = sizeRefreshMs > 0 ? setInterval(() => void this.refreshSize().catch(() => undefined), sizeRefreshMs).unref() : null;
    for (const observer of this.#observers) observer.onLifecycle?.(this.name, 'CREATED');
    notifyMapCreated(this);
  }

  // ---------------------------------------------------------------- reads

  /**
   * The value of `key` if the near cache holds it, else undefined: no round trip, no promise,
   * no allocation. Undefined means "not answered here" (or absent): `await load(key)` then.
   * Only an answer with a value is counted (as a load and a hit).
   */
  loadCached(key: string): V | undefined {
    if (this.#disposed) throw new MapDisposedError(this.name, 'loadCached');
    const cached = this.#near.peek(key);
    if (cached === undefined || cached === ABSENT) return undefined;
    this.#counters.loads++;
    if (this.#observers.length !== 0) this.#emit('LOAD', key, 'ok', null);
    return cached;
  }

  /**
   * The value of `key`, or undefined when absent: from the near cache when it holds the key,
   * else one GET (whose result the near cache keeps). While Redis is unreachable, answers only
   * from near-cache entries within `staleReadMs`, else throws RedisUnavailableError.
   */
  async load(key: string): Promise<V | undefined> {
    this.#assertLive('load');
    this.#assertKey('load', key);
    const counters = this.#counters;
    let cached = this.#near.peek(key);
    if (cached === undefined) {
      counters.remoteLoads++;
      try {
        cached = await this.#near.read(key, () => this.#fetch('load', key));
      } catch (error) {
        counters.loads++;
        counters.misses++;
        throw this.#failed(error, 'LOAD', 'load', key, undefined);
      }
      counters.loads++;
      counters.misses++;
    } else {
      counters.loads++;
      if (cached === ABSENT) counters.misses++;
    }
    const value = cached === ABSENT ? undefined : cached;
    if (this.#observers.length !== 0) this.#emit('LOAD', key, value === undefined ? 'miss' : 'ok', null);
    return value;
  }

  async has(key: string): Promise<boolean> {
    this.#assertLive('has');
    this.#assertKey('has', key);
    this.#counters.hasCalls++;
    const current = await this.#read('has', key).catch((error: unknown) => {
      throw this.#failed(error, null, 'has', key, undefined);
    });
    return current.raw !== null;
  }

  /**
   * Entries in Redis under this map's prefix, as last counted (every `sizeRefreshMs`, or by
   * `refreshSize()`), adjusted by this process's own inserts and deletes since. Synchronous
   * because metrics read it at scrape time; a cross-machine count needs a SCAN.
   */
  get size(): number {
    return this.#size;
  }

  get storeKind(): string {
    return this.#link.kind;
  }

  /** Recounts the entries with SCAN (every master of a cluster) and returns the count. */
  async refreshSize(): Promise<number> {
    this.#assertLive('refreshSize');
    let count = 0;
    try {
      for await (const batch of this.#link.scan(`${escapeGlob(this.keyPrefix)}*`, SCAN_BATCH)) count += batch.length;
    } catch (error) {
      throw this.#failed(error, null, 'refreshSize', undefined, undefined);
    }
    this.#size = count;
    return count;
  }

  // ---------------------------------------------------------------- writes

  /** Validates `value` against the value it replaces and writes it. */
  async store(key: string, value: V): Promise<void> {
    this.#assertLive('store');
    this.#assertKey('store', key);
    this.#assertValue('store', value);
    await this.#settle('store', key, this.#compareAndSet('store', key, () => value, false), value);
  }

  /**
   * Atomic read-modify-write across machines. `fn` gets the current value (undefined if absent)
   * and returns the next; it may be async, and may run more than once (once per attempt) if
   * other machines write the key meanwhile: keep it free of side effects. Returning the current
   * value unchanged writes nothing. After `1 + updateRetries` lost attempts: UpdateConflictError,
   * nothing written.
   * @returns the value the key holds afterwards
   */
  async update(key: string, fn: (previous: V | undefined) => V | Promise<V>): Promise<V> {
    this.#assertLive('update');
    this.#assertKey('update', key);
    if (typeof fn !== 'function') throw new InvalidArgumentError(this.name, 'update', 'fn', 'must be a function');
    return this.#settle('update', key, this.#compareAndSet('update', key, fn, true));
  }

  /**
   * Adds `delta` to an int64 entry in one atomic step on the Redis server (INCRBY), refused if
   * the result would leave `bounds`: concurrent adds from any number of machines never lose one
   * and never cross a bound. The validator runs first on the freshest value this process knows.
   * @returns the value after the add, or undefined if the key is absent (nothing written)
   */
  async add(key: string, delta: bigint): Promise<bigint | undefined> {
    this.#assertLive('add');
    this.#assertKey('add', key);
    const bounds = this.#bounds;
    if (bounds === null) {
      throw new ConfigurationError('bounds', `map "${this.name}": add() needs the map's int64 bounds (the validator's range, enforced atomically by Redis)`);
    }
    if (typeof delta !== 'bigint' || delta < INT64_MIN || delta > INT64_MAX) throw new InvalidArgumentError(this.name, 'add', 'delta', 'must be a bigint within int64');
    return this.#settle('add', key, this.#boundedAdd(key, delta, bounds));
  }

  /** Returns the existing value, or validates and stores `value` (only if still absent). */
  async loadOrStore(key: string, value: V): Promise<{ value: V; loaded: boolean }> {
    this.#assertLive('loadOrStore');
    this.#assertKey('loadOrStore', key);
    this.#assertValue('loadOrStore', value);
    return this.#settle(
      'loadOrStore',
      key,
      this.#queue.run(key, async () => {
        let current = await this.#readForWrite('loadOrStore', key);
        // "Loaded" would end the write on the near cache alone: an entry another machine just
        // deleted would be answered as present and nothing stored. Ask Redis (as delete does);
        // the near cache still counts as hit (misses are the near cache's, as for load).
        const confirmedHit = current.value !== undefined && current.near;
        if (confirmedHit) current = await this.#confirm('loadOrStore', key);
        for (;;) {
          if (current.value !== undefined) {
            this.#counters.loads++;
            if (!current.near && !confirmedHit) this.#counters.misses++;
            if (this.#observers.length !== 0) this.#emit('LOAD', key, 'ok', null);
            return { value: current.value, loaded: true };
          }
          this.#check(key, value, undefined);
          const reply = await this.#script('loadOrStore', key, CAS_SET, ['absent', '', this.#codec.encode(value)], value);
          if (reply.status === Status.APPLIED) {
            this.#committed('STORE', key, value, true);
            return { value, loaded: false };
          }
          current = this.#decodeCurrent(key, reply.raw);
        }
      }, { map: this.name }),
      value,
    );
  }

  /**
   * Stores `next` only if the key holds exactly `expected` (compared as encoded by the codec;
   * undefined = absent). The validator sees `expected` as the previous value. No retry.
   */
  async compareAndSwap(key: string, expected: V | undefined, next: V): Promise<boolean> {
    this.#assertLive('compareAndSwap');
    this.#assertKey('compareAndSwap', key);
    this.#assertValue('compareAndSwap', next);
    if (expected !== undefined) this.#assertValue('compareAndSwap', expected);
    return this.#settle(
      'compareAndSwap',
      key,
      this.#queue.run(key, async () => {
        this.#check(key, next, expected);
        const args = expected === undefined ? ['absent', '', this.#codec.encode(next)] : ['equals', this.#codec.encode(expected), this.#codec.encode(next)];
        const reply = await this.#script('compareAndSwap', key, CAS_SET, args, next);
        if (reply.status !== Status.APPLIED) {
          this.#counters.casConflicts++;
          this.#near.invalidate(key);
          // A write attempted and not made: the audit keeps the attempt, with the value offered.
          if (this.#observers.length !== 0) this.#emit('STORE', key, 'miss', 'CAS_MISMATCH', undefined, next);
          return false;
        }
        this.#committed('STORE', key, next, expected === undefined);
        return true;
      }, { map: this.name }),
      next,
    );
  }

  /** Deletes `key` (passing `validateDelete`); returns whether it was present. */
  async delete(key: string): Promise<boolean> {
    this.#assertLive('delete');
    this.#assertKey('delete', key);
    return (await this.#settle('delete', key, this.#compareAndDelete(key))) !== undefined;
  }

  /** Deletes `key` and returns the value it held, or undefined. */
  async loadAndDelete(key: string): Promise<V | undefined> {
    this.#assertLive('loadAndDelete');
    this.#assertKey('loadAndDelete', key);
    return this.#settle('loadAndDelete', key, this.#compareAndDelete(key));
  }

  // ---------------------------------------------------------------- range

  /**
   * Walks the map's entries in Redis (SCAN over every master, then the values): each entry as of
   * some moment during the walk; an entry present for the whole walk is visited exactly once, one
   * written meanwhile may or may not be. (On a cluster only while its masters and slots hold: a
   * slot resharded mid-walk, or a master node-redis has not discovered yet, loses entries; see
   * docs/redis.md.) A consistent snapshot across machines would need a
   * global lock, which this map does not take. Entries are fetched first and the callback runs
   * afterwards, synchronously (it must not block): returning false stops it.
   */
  async range(callback: RangeCallback<string, V>, options?: RangeOptions<string>): Promise<RangeResult> {
    this.#assertLive('range');
    if (typeof callback !== 'function') throw new InvalidArgumentError(this.name, 'range', 'callback', 'must be a function');
    checkRangeOptions(this.name, options);
    // Keys here are always strings, so a bound of another type is refused before the scan, as the
    // in-process map refuses it at the first key (GOVMAP_RANGE_BOUNDS_MISMATCHED), not audited as a failed walk.
    for (const argument of ['start', 'end'] as const) {
      const bound: unknown = options?.[argument];
      if (bound !== undefined && typeof bound !== 'string') {
        throw new RangeBoundsError(this.name, 'range', `options.${argument}`, `${describeKey(bound)} is a ${typeof bound} but a Redis map's keys are strings`, 'GOVMAP_RANGE_BOUNDS_MISMATCHED', options?.start, options?.end);
      }
    }
    const startedAt = performance.now();
    let visited = 0;
    let stopped = false;
    let outcome: Outcome = 'ok';
    let reason: string | null = null;
    try {
      let entries: Array<[string, V]>;
      try {
        entries = await this.#collect(options);
      } catch (error) {
        const typed = this.#failed(error, null, 'range', undefined, undefined);
        // The audit says why the walk failed: unreachable, or an entry another client wrote in a
        // form the codec refuses (REDIS_VALUE_CORRUPT), which retrying will not cure.
        reason = typed instanceof GovMapError ? typed.code.replace(/^GOVMAP_/, '') : 'REDIS_UNAVAILABLE';
        throw typed;
      }
      for (const [key, value] of entries) {
        visited++;
        const verdict = callback(key, value) as unknown;
        if (verdict !== null && typeof verdict === 'object' && typeof (verdict as { then?: unknown }).then === 'function') {
          (verdict as Promise<unknown>).then(undefined, () => undefined);
          throw new AsyncRangeCallbackError(this.name);
        }
        if (verdict === false) {
          stopped = true;
          break;
        }
      }
    } catch (error) {
      outcome = 'error';
      reason ??= 'CALLBACK_FAILED';
      throw error;
    } finally {
      this.#counters.recordRange((performance.now() - startedAt) / 1000, visited);
      if (this.#observers.length !== 0) this.#emit('RANGE', undefined, outcome, reason, options);
    }
    return { visited, stopped };
  }

  /** All entries (optionally bounded) as an array; same consistency as `range`. */
  async entries(options?: RangeOptions<string>): Promise<Array<[string, V]>> {
    const out: Array<[string, V]> = [];
    await this.range((key, value) => {
      out.push([key, value]);
    }, options);
    return out;
  }

  // ---------------------------------------------------------------- lifecycle & observation

  /** Adds a watcher (audit, sandbox) of every later operation. Returns a function that removes it. */
  observe(observer: MapObserver<string>): () => void {
    // As GovernedMap.observe: an observer listed twice (an audit recorder attached twice) hears,
    // and records, every operation twice.
    if (this.#observers.includes(observer)) throw new ConfigurationError('observer', `already observes map "${this.name}" (each observer once)`);
    this.#observers = [...this.#observers, observer];
    return () => {
      this.#observers = this.#observers.filter((o) => o !== observer);
    };
  }

  /** Ends this map object's life (the entries stay in Redis); closes the link if it owns it. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#sizeTimer !== null) clearInterval(this.#sizeTimer);
    this.#unlisten();
    this.#near.clear();
    for (const observer of this.#observers) observer.onLifecycle?.(this.name, 'DISPOSED');
    if (this.#ownsLink) await this.#link.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The raw counters (read by MapMetrics at scrape time). */
  get counters(): Readonly<RemoteMapCounters> {
    return this.#counters;
  }

  /** A point-in-time view, with the sliding-window ratios computed now. */
  stats(): RemoteMapStatsSnapshot {
    const c = this.#counters;
    const now = this.#clock();
    const miss = this.#windows.missRatio.observe(now, c.misses, c.loads);
    const rw = this.#windows.readWrite.observe(now, c.reads, c.writes);
    const near = this.#near;
    return {
      name: this.name,
      store: this.#link.kind,
      keys: this.#size,
      loads: c.loads,
      hits: c.loads - c.misses,
      misses: c.misses,
      stores: { ok: c.storesOk, rejected: c.storesRejected, error: c.storesError },
      deletes: { ok: c.deletesOk, miss: c.deletesMiss, rejected: c.deletesRejected },
      rejectionsByReason: Object.fromEntries(c.rejectionsByReason),
      evictions: c.evictions,
      expirations: c.expirations,
      ranges: c.ranges,
      rangeP99Seconds: bucketQuantile(c.rangeBuckets, RANGE_BUCKETS_SECONDS, 0.99),
      missRatio: miss.b === 0 ? null : miss.a / miss.b,
      readWriteRatio: rw.a === 0 && rw.b === 0 ? null : rw.b === 0 ? Number.POSITIVE_INFINITY : rw.a / rw.b,
      windowMs: this.#windows.missRatio.windowMs,
      near: {
        entries: near.size,
        maxEntries: near.maxEntries,
        hits: c.loads - c.misses,
        remoteLoads: c.remoteLoads,
        staleServes: near.staleServes,
        invalidations: near.invalidations,
        fillsDiscarded: near.fillsDiscarded,
        evictions: near.evictions,
        trusted: near.trusted,
      },
      casConflicts: c.casConflicts,
      unavailable: c.unavailable,
    };
  }

  // ---------------------------------------------------------------- write paths

  async #compareAndSet(operation: string, key: string, fn: (previous: V | undefined) => V | Promise<V>, noopIfUnchanged: boolean): Promise<V> {
    return this.#queue.run(key, async () => {
      let current = await this.#readForWrite(operation, key);
      for (let attempt = 1; ; attempt++) {
        const next = await fn(current.value);
        this.#assertLive(operation);
        if (noopIfUnchanged && current.value !== undefined && Object.is(next, current.value)) {
          if (current.near) {
            // "Nothing to change" would settle on the near cache alone (possibly stale, or
            // served past an outage under staleReadMs): decide on Redis' value instead.
            const fresh = await this.#confirm(operation, key);
            if (fresh.raw !== current.raw) {
              current = fresh;
              attempt--; // not a lost compare-and-set: no retry is used up
              continue;
            }
          }
          this.#counters.updatesNoop++;
          // Nothing written, but the value was read (and handed to fn): the audit keeps the access.
          if (this.#observers.length !== 0) this.#emit('LOAD', key, 'ok', 'UPDATE_UNCHANGED');
          return next;
        }
        this.#assertValue(operation, next);
        this.#check(key, next, current.value);
        const args = current.raw === null ? ['absent', '', this.#codec.encode(next)] : ['equals', current.raw, this.#codec.encode(next)];
        const reply = await this.#script(operation, key, CAS_SET, args, next);
        if (reply.status === Status.APPLIED) {
          this.#committed('STORE', key, next, current.raw === null);
          return next;
        }
        this.#assertComparable('STORE', operation, key, reply.raw, current.raw);
        current = this.#decodeCurrent(key, reply.raw);
        this.#conflict('STORE', operation, key, attempt, next);
        await this.#backoff(attempt);
      }
    }, { map: this.name });
  }

  async #compareAndDelete(key: string): Promise<V | undefined> {
    return this.#queue.run(key, async () => {
      let current = await this.#readForWrite('delete', key);
      // "Nothing to delete" would settle on the near cache alone: a delete of a key another
      // machine just created would be lost. Ask Redis (a miss is decided on its answer).
      if (current.raw === null && current.near) current = await this.#confirm('delete', key);
      for (let attempt = 1; ; attempt++) {
        if (current.raw === null) {
          this.#counters.deletesMiss++;
          if (this.#observers.length !== 0) this.#emit('DELETE', key, 'miss', null);
          return undefined;
        }
        const previous = current.value as V;
        this.#checkDelete(key, previous);
        const reply = await this.#script('delete', key, CAS_DELETE, [current.raw], previous);
        if (reply.status === Status.APPLIED) {
          this.#committed('DELETE', key, previous, false);
          return previous;
        }
        this.#assertComparable('DELETE', 'delete', key, reply.raw, current.raw);
        current = this.#decodeCurrent(key, reply.raw);
        if (current.raw === null) continue; // deleted by someone else meanwhile: a miss, not a conflict
        this.#conflict('DELETE', 'delete', key, attempt, previous);
        await this.#backoff(attempt);
      }
    }, { map: this.name });
  }

  async #boundedAdd(key: string, delta: bigint, bounds: Required<Int64Bounds>): Promise<bigint | undefined> {
    const self = this as unknown as RemoteGovernedMap<bigint>;
    let current = (await this.#readForWrite('add', key)) as Current<bigint>;
    if (current.near && (current.value === undefined || delta === 0n || self.#verdict(key, current.value + delta, current.value) !== null)) {
      // Each of these ends the add without the script: a refusal, "no such entry", or nothing to
      // add. Resting on a near-cache value an invalidation is about to replace (or one served
      // past an outage under staleReadMs), it would refuse a payment, or report success for a
      // write Redis never saw: decide on the value in Redis.
      current = (await this.#confirm('add', key)) as Current<bigint>;
    }
    if (current.value === undefined) {
      if (this.#observers.length !== 0) this.#emit('STORE', key, 'miss', 'ENTRY_ABSENT');
      return undefined;
    }
    if (delta === 0n) {
      this.#counters.updatesNoop++;
      if (this.#observers.length !== 0) this.#emit('LOAD', key, 'ok', 'UPDATE_UNCHANGED');
      return current.value;
    }
    self.#check(key, current.value + delta, current.value);
    const args = [(bounds.min - delta).toString(), (bounds.max - delta).toString(), delta.toString()];
    const reply = await this.#script('add', key, BOUNDED_ADD, args, (current.value + delta) as V);
    this.#near.invalidate(key);
    switch (reply.status) {
      case Status.APPLIED: {
        const next = BigInt(reply.raw!) + delta;
        this.#committed('STORE', key, next as V, false);
        return next;
      }
      case Status.ABSENT:
        if (this.#observers.length !== 0) this.#emit('STORE', key, 'miss', 'ENTRY_ABSENT');
        return undefined;
      case Status.BELOW_MIN:
      case Status.ABOVE_MAX: {
        const below = reply.status === Status.BELOW_MIN;
        const reason = below ? bounds.belowReason : bounds.aboveReason;
        const next = BigInt(reply.raw!) + delta;
        this.#counters.storesRejected++;
        this.#counters.recordRejection(reason);
        if (this.#observers.length !== 0) this.#emit('STORE', key, 'rejected', reason, undefined, next);
        throw new ValidationError(this.name, key, reason, `${reply.raw} + ${delta} = ${next} is ${below ? `below the minimum ${bounds.min}` : `above the maximum ${bounds.max}`}`);
      }
      default:
        throw new RedisValueCorruptError(this.name, key, this.keyPrefix + key, `holds ${JSON.stringify(String(reply.raw).slice(0, 40))}, not a canonical int64 decimal`);
    }
  }

  // ---------------------------------------------------------------- internals

  #assertLive(operation: string): void {
    if (this.#disposed) throw new MapDisposedError(this.name, operation);
  }

  #assertKey(operation: string, key: string): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new InvalidArgumentError(this.name, operation, 'key', `must be a string of 1-${MAX_KEY_LENGTH} characters (Redis keys are strings)`);
    }
    // Redis keys are UTF-8 bytes: every lone surrogate would become U+FFFD, so "a\uD800" and
    // "a\uDC00" would be one entry in Redis, and range would hand back a key nobody wrote.
    if (LONE_SURROGATE.test(key)) {
      throw new InvalidArgumentError(this.name, operation, 'key', 'must be well-formed UTF-16: it holds a lone surrogate, which Redis would store as U+FFFD (merging it with other keys)');
    }
  }

  #assertValue(operation: string, value: V): void {
    if (value === undefined) throw new InvalidArgumentError(this.name, operation, 'value', 'must not be undefined (undefined means "absent"; use delete)');
    const problem = this.#codec.check(value);
    if (problem !== null) throw new InvalidArgumentError(this.name, operation, 'value', `${problem} (codec ${this.#codec.kind})`);
  }

  /** Whether the validator refuses a write, without counting or reporting it. */
  #verdict(key: string, next: V, previous: V | undefined): 'refused' | null {
    try {
      return toRejection(this.#validate(key, next, previous)) === null ? null : 'refused';
    } catch {
      return 'refused';
    }
  }

  /** Runs the validator; counts, reports and throws a refusal (the rule GovernedMap applies). */
  #check(key: string, next: V, previous: V | undefined): void {
    admitStore(this.#admission, key, next, previous);
  }

  #checkDelete(key: string, previous: V): void {
    admitDelete(this.#admission, key, previous);
  }

  #committed(op: 'STORE' | 'DELETE', key: string, value: V, created: boolean): void {
    // Our own write makes the server invalidate the key for us too; dropping it now also detaches
    // any read of the old value still in flight, so a load after this write reads the new one.
    this.#near.invalidate(key);
    const counters = this.#counters;
    if (op === 'STORE') {
      counters.storesOk++;
      if (created) this.#size++;
    } else {
      counters.deletesOk++;
      if (this.#size > 0) this.#size--;
    }
    if (this.#observers.length !== 0) this.#emit(op, key, 'ok', null, undefined, value);
  }

  /**
   * A compare-and-set lost to another writer: counted; past `updateRetries`, the write is given
   * up, and that failed attempt is counted and audited as GovernedMap does (a STORE as a failed
   * store, a DELETE as a refused delete, reason UPDATE_CONFLICT, with the value it carried:
   * `value` is the value being written, or for a DELETE the one it tried to remove).
   */
  #conflict(op: 'STORE' | 'DELETE', operation: string, key: string, attempt: number, value: V): void {
    const counters = this.#counters;
    counters.casConflicts++;
    this.#near.invalidate(key);
    if (attempt > this.#updateRetries) {
      if (op === 'STORE') counters.storesError++;
      else counters.deletesRejected++;
      counters.recordRejection('UPDATE_CONFLICT');
      if (this.#observers.length !== 0) this.#emit(op, key, 'error', 'UPDATE_CONFLICT', undefined, value);
      throw new UpdateConflictError(this.name, key, attempt, `other writers changed the key in Redis before each of our compare-and-set attempts (${operation}, updateRetries = ${this.#updateRetries})`);
    }
  }

  async #backoff(attempt: number): Promise<void> {
    // Full jitter: contenders that collided once spread out instead of colliding again in step.
    const ceiling = Math.min(this.#backoffMaxMs, 2 ** attempt);
    const pause = Math.random() * ceiling;
    if (pause >= 1) await new Promise((resolve) => setTimeout(resolve, pause));
  }

  /** After a write (applied or not): waits for observers to hold it durably, like updateAsync. */
  async #settle<T>(operation: string, key: string, work: Promise<T>, value?: V): Promise<T> {
    // The observers watching when the write began: one removed meanwhile (an audit recorder
    // stopped while the round trip was out detaches its maps) is still asked, so the caller hears
    // the write is applied but not audited rather than a success no record backs (as updateAsync).
    const watching = this.#observers;
    let result: T;
    try {
      result = await work;
    } catch (error) {
      if (error instanceof UpdateReentrantError) this.#reentrant(operation, key, value);
      await this.#flushObservers(watching).catch(() => undefined);
      throw error;
    }
    try {
      await this.#flushObservers(watching);
    } catch (error) {
      // The write is in Redis: a caller that read a bare flush error (or AUDIT_STOPPED) as a
      // refusal and retried would apply it twice. Say so in the type, as updateAsync does; an
      // error that says so itself (GOVMAP_AUDIT_NOT_DURABLE, details.applied) goes as it is.
      if (error instanceof GovMapError && error.details.applied === true) throw error;
      throw new ObserverFlushError(this.name, key, error, operation);
    }
    return result;
  }

  /**
   * A write of a key from inside the function of an update of the same key, refused by the queue
   * with UpdateReentrantError: a failed attempt, counted and audited as GovernedMap does its
   * re-entrant writes (error REENTRANT_WRITE; a STORE as a failed store, a DELETE as a refused
   * delete), with the value offered when the call carried one (none for an update: its function
   * never ran; none for a delete: the value was never read).
   */
  #reentrant(operation: string, key: string, value: V | undefined): void {
    const counters = this.#counters;
    const op = operation === 'delete' || operation === 'loadAndDelete' ? 'DELETE' : 'STORE';
    if (op === 'STORE') counters.storesError++;
    else counters.deletesRejected++;
    counters.recordRejection('REENTRANT_WRITE');
    if (this.#observers.length !== 0) this.#emit(op, key, 'error', 'REENTRANT_WRITE', undefined, value);
  }

  async #flushObservers(watching: readonly MapObserver<string>[] = []): Promise<void> {
    // Unchanged since the write began (the usual case: observe() replaces the array): no copy.
    const observers = watching === this.#observers || watching.length === 0 ? this.#observers : new Set([...watching, ...this.#observers]);
    for (const observer of observers) {
      if (observer.flush !== undefined) await observer.flush();
    }
  }

  /** A GET, decoded; absent = ABSENT. Throws LinkFailure or RedisValueCorruptError. */
  async #fetch(_operation: string, key: string): Promise<Cached<V>> {
    let raw = await this.#link.get(this.keyPrefix + key);
    if (raw !== null && raw.includes('\uFFFD')) raw = await this.#checkedText(key);
    if (raw === null) return ABSENT;
    const value = this.#codec.decode(raw);
    if (value === undefined) throw this.#corrupt(key, raw);
    return value;
  }

  /** The current value for a read, near cache first. */
  async #read(operation: string, key: string): Promise<Current<V>> {
    let cached = this.#near.peek(key);
    const near = cached !== undefined;
    if (cached === undefined) cached = await this.#near.read(key, () => this.#fetch(operation, key));
    return cached === ABSENT ? { value: undefined, raw: null, near } : { value: cached, raw: this.#codec.encode(cached), near };
  }

  /** The current value a write starts from: near cache first (the compare-and-set corrects a stale one). */
  async #readForWrite(operation: string, key: string): Promise<Current<V>> {
    try {
      return await this.#read(operation, key);
    } catch (error) {
      // Only a GET was sent: whatever became of it, the write itself was never sent, so its
      // outcome is known (not-applied), not "unknown" (which sends a caller to reconcile, and
      // makes the demo's transfer keep a debit it could have reversed).
      const failure = error instanceof LinkFailure && error.outcome === 'unknown' ? new LinkFailure(error.kind, 'not-applied', error.message, error.cause) : error;
      throw this.#failed(failure, operation === 'delete' ? 'DELETE' : 'STORE', operation, key, undefined);
    }
  }

  /**
   * The value in Redis, not the near cache's: for a write about to end on what the near cache
   * said, without sending a script. Fails (typed, not-applied) while Redis is unreachable.
   */
  async #confirm(operation: string, key: string): Promise<Current<V>> {
    this.#near.invalidate(key);
    return this.#readForWrite(operation, key);
  }

  #decodeCurrent(key: string, raw: string | null): Current<V> {
    if (raw === null) return { value: undefined, raw: null, near: false };
    const value = this.#codec.decode(raw);
    if (value === undefined) throw this.#corrupt(key, raw);
    return { value, raw, near: false };
  }

  /** Runs a script on the entry's key; a failure becomes the map's typed error. */
  async #script(operation: string, key: string, script: LuaScript, args: readonly string[], value: V): Promise<{ status: number; raw: string | null }> {
    let reply: unknown;
    try {
      reply = await this.#link.runScript(script, this.keyPrefix + key, args);
    } catch (error) {
      this.#near.invalidate(key);
      throw this.#failed(error, operation === 'delete' ? 'DELETE' : 'STORE', operation, key, value);
    }
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') {
      throw new RedisCommandRefusedError(this.name, operation, key, `unexpected reply to script ${script.name}: ${JSON.stringify(reply)?.slice(0, 80)}`);
    }
    const raw: unknown = reply[1];
    return { status: reply[0], raw: typeof raw === 'string' ? raw : null };
  }

  /**
   * Redis said the key holds something other than `sent`, yet reads it back as `sent`: its bytes
   * are not UTF-8 (node-redis decodes each bad sequence as U+FFFD), so no compare-and-set can ever
   * match. Retrying would end, after every attempt, in an UpdateConflictError blaming writers
   * that do not exist.
   */
  #assertComparable(op: 'STORE' | 'DELETE', operation: string, key: string, returned: string | null, sent: string | null): void {
    if (returned !== null && returned === sent) {
      const corrupt = new RedisValueCorruptError(this.name, key, this.keyPrefix + key, 'holds bytes that are not valid UTF-8 text (another program wrote them), which no string value can match');
      throw this.#failed(corrupt, op, operation, key, undefined);
    }
  }

  /**
   * The value of `key` read again as bytes, for a GET that came back holding U+FFFD: the text it
   * holds (null if gone meanwhile), or RedisValueCorruptError if its bytes are not UTF-8, which a
   * plain GET hands back mangled (U+FFFD for each bad sequence) as if it were the value.
   */
  async #checkedText(key: string): Promise<string | null> {
    const hex = await this.#link.runScript(RAW_HEX, this.keyPrefix + key, []);
    if (typeof hex !== 'string') return null;
    const bytes = Buffer.from(hex, 'hex');
    if (!isUtf8(bytes)) {
      throw new RedisValueCorruptError(this.name, key, this.keyPrefix + key, 'holds bytes that are not valid UTF-8 text (another program wrote them), which would read as U+FFFD in place of each bad sequence');
    }
    return bytes.toString('utf8');
  }

  #corrupt(key: string, raw: string): RedisValueCorruptError {
    return new RedisValueCorruptError(this.name, key, this.keyPrefix + key, `holds ${JSON.stringify(raw.slice(0, 40))}, which codec ${this.#codec.kind} does not accept`);
  }

  /** Turns a link failure into the map's typed error, counted and reported. */
  #failed(error: unknown, op: OpType | null, operation: string, key: string | undefined, value: V | undefined): unknown {
    if (!(error instanceof LinkFailure)) {
      if (op !== null && error instanceof GovMapError && this.#observers.length !== 0) this.#emit(op, key, 'error', error.code, undefined, value);
      return error;
    }
    const counters = this.#counters;
    let typed: GovMapError;
    if (error.kind === 'WRONGTYPE') {
      typed = new RedisValueCorruptError(this.name, key ?? '', this.keyPrefix + (key ?? ''), 'holds a Redis type other than a string');
    } else if (error.kind === 'REFUSED') {
      typed = new RedisCommandRefusedError(this.name, operation, key, error.message);
    } else {
      counters.unavailable++;
      const write = op === 'STORE' || op === 'DELETE';
      typed = new RedisUnavailableError(this.name, operation, key, error.kind, write ? error.outcome : 'none', error);
    }
    // As GovernedMap counts a delete its store refused: syncmap_delete_total has no error outcome,
    // and a delete that failed (outcome unknown included) is not a store; `unavailable` and the
    // audit record (error, with the reason) tell it apart from a validator's refusal.
    if (op === 'STORE') counters.storesError++;
    else if (op === 'DELETE') counters.deletesRejected++;
    if (op !== null && this.#observers.length !== 0) {
      const reason = typed instanceof RedisUnavailableError && typed.outcome === 'unknown' ? 'REDIS_OUTCOME_UNKNOWN' : typed.code.replace(/^GOVMAP_/, '');
      this.#emit(op, key, 'error', reason, undefined, value);
    }
    return typed;
  }

  #onInvalidated(redisKey: string | null): void {
    if (redisKey === null) {
      this.#near.invalidations++;
      this.#near.invalidateAll();
      this.#onNearInvalidated?.(null);
      return;
    }
    if (!redisKey.startsWith(this.keyPrefix)) return;
    const key = redisKey.slice(this.keyPrefix.length);
    this.#near.invalidations++;
    this.#near.invalidate(key);
    this.#onNearInvalidated?.(key);
  }

  async #collect(options: RangeOptions<string> | undefined): Promise<Array<[string, V]>> {
    const prefix = this.keyPrefix;
    const match = `${escapeGlob(prefix + (options?.prefix ?? ''))}*`;
    const bounded = isBounded(options);
    const seen = new Set<string>();
    const out: Array<[string, V]> = [];
    for await (const batch of this.#link.scan(match, SCAN_BATCH)) {
      const fresh = batch.filter((redisKey) => {
        if (seen.has(redisKey)) return false; // SCAN may return a key twice
        seen.add(redisKey);
        return !bounded || inBounds(this.name, redisKey.slice(prefix.length), options!);
      });
      // Issued together: node-redis pipelines them into one write per server. A key of another
      // Redis type (a hash another client put under the prefix) is named in the error.
      const raws = await Promise.all(
        fresh.map((redisKey) =>
          this.#link.get(redisKey).catch((error: unknown) => {
            if (error instanceof LinkFailure && error.kind === 'WRONGTYPE') {
              throw new RedisValueCorruptError(this.name, redisKey.slice(prefix.length), redisKey, 'holds a Redis type other than a string');
            }
            throw error;
          }),
        ),
      );
      for (let i = 0; i < fresh.length; i++) {
        const key = fresh[i]!.slice(prefix.length);
        let raw: string | null = raws[i]!;
        if (raw !== null && raw.includes('\uFFFD')) raw = await this.#checkedText(key);
        if (raw === null) continue; // deleted since the scan saw it
        const value = this.#codec.decode(raw);
        if (value === undefined) throw this.#corrupt(key, raw);
        out.push([key, value]);
      }
    }
    if (bounded) out.sort((a, b) => compareKeys(a[0], b[0]));
    return out;
  }

  #emit(op: OpType, key: string | undefined, outcome: Outcome, reason: string | null, options?: RangeOptions<string>, value?: unknown): void {
    const bounds = op === 'RANGE' ? describeBounds(options) : null;
    for (const observer of this.#observers) {
      try {
        observer.onOperation(this.name, op, key, outcome, reason, bounds, value);
      } catch {
        // An observer's failure must not fail the operation it watched (as in GovernedMap).
      }
    }
  }
}

/** Escapes Redis glob metacharacters so a prefix matches only itself. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** An unknown or null key of a nested option object (`nearCache`, `bounds`), named by its path. */
function refuseNested(value: unknown, known: ReadonlySet<string>, option: string): void {
  if (value === null || typeof value !== 'object') return;
  const unknown = findUnknownOption(value, known, `${option} (of RemoteGovernedMap)`);
  if (unknown !== undefined) throw new ConfigurationError(`${option}.${unknown.option}`, unknown.rule);
  const nullKey = findNullOption(value);
  if (nullKey !== undefined) throw new ConfigurationError(`${option}.${nullKey}`, NULL_OPTION_RULE, null);
}

/**
 * The map's options checked, the link aside: `openRedisGovernedMap` asks this before it
 * connects, so that a map with no validator or impossible bounds is named as such at once, not
 * reported as "Redis unavailable" after the connect timeout while Redis is down.
 */
export function remoteMapSettings<V>(options: Omit<RemoteGovernedMapOptions<V>, 'link'> | null | undefined) {
  if (options === null || typeof options !== 'object') throw new ConfigurationError('options', 'RemoteGovernedMap needs an options object');
  refuseUnknownOptions(options, REMOTE_MAP_OPTIONS, 'RemoteGovernedMap');
  if (typeof options.name !== 'string' || !NAME_PATTERN.test(options.name)) {
    throw new ConfigurationError('name', 'must match [A-Za-z_][A-Za-z0-9_:.-]{0,63} (it becomes a metric label)', options.name);
  }
  if (typeof options.validate !== 'function') {
    throw new ConfigurationError('validate', `map "${options.name}" needs a business validator: every write must pass one (a bare, unvalidated store is forbidden)`);
  }
  if (options.validateDelete !== undefined && typeof options.validateDelete !== 'function') throw new ConfigurationError('validateDelete', 'must be a function when given');
  // Both are called later, from a socket handler or a timer: a non-function would fail there as a
  // bare TypeError (swallowed, or breaking every operation), far from the option that caused it.
  if (options.onNearInvalidated !== undefined && typeof options.onNearInvalidated !== 'function') throw new ConfigurationError('onNearInvalidated', 'must be a function (key: string | null) => void when given');
  if (options.clock !== undefined && typeof options.clock !== 'function') throw new ConfigurationError('clock', 'must be a function returning milliseconds when given');
  const codec = options.codec;
  if (codec === null || typeof codec !== 'object' || typeof codec.encode !== 'function' || typeof codec.decode !== 'function' || typeof codec.check !== 'function') {
    throw new ConfigurationError('codec', 'must be a ValueCodec (int64Codec for money, stringCodec, or your own encode/decode/check)');
  }
  if (options.keyPrefix === undefined && options.name.includes(':')) {
    // The default prefix of "bal:x" (govmap:bal:x:) lies inside that of "bal" (govmap:bal:):
    // map "bal" would walk, count and delete "bal:x"'s entries as its own keys "x:...", and a
    // balances total would include another ledger's. Refused, not silently relocated: moving
    // the default prefix would make a map that already has entries there look empty.
    throw new ConfigurationError(
      'keyPrefix',
      `map "${options.name}" has a ":" in its name, so its default prefix govmap:${options.name}: lies inside the default prefix of map "${options.name.slice(0, options.name.lastIndexOf(':'))}" (range and size of that map would include this one's entries): give keyPrefix explicitly`,
    );
  }
  const keyPrefix = options.keyPrefix ?? `govmap:${options.name}:`;
  if (typeof keyPrefix !== 'string' || keyPrefix.length === 0 || keyPrefix.length > 256) throw new ConfigurationError('keyPrefix', 'must be a string of 1-256 characters', keyPrefix);
  if (LONE_SURROGATE.test(keyPrefix)) throw new ConfigurationError('keyPrefix', 'must be well-formed UTF-16 (a lone surrogate becomes U+FFFD in Redis)', keyPrefix);
  if (/[{}]/.test(keyPrefix)) {
    throw new ConfigurationError('keyPrefix', 'must not contain "{" or "}": a Redis Cluster hash tag would put every key of the map in one slot', keyPrefix);
  }
  let bounds: Required<Int64Bounds> | null = null;
  if (options.bounds !== undefined) {
    if (codec.kind !== 'int64') throw new ConfigurationError('bounds', 'apply only to maps with codec int64Codec');
    refuseNested(options.bounds, INT64_BOUNDS, 'bounds');
    const { min, max = INT64_MAX, belowReason = 'BELOW_MIN', aboveReason = 'ABOVE_MAX' } = options.bounds;
    if (typeof min !== 'bigint' || typeof max !== 'bigint' || min < INT64_MIN || max > INT64_MAX || min > max) {
      throw new ConfigurationError('bounds', 'min and max must be bigints with INT64_MIN <= min <= max <= INT64_MAX');
    }
    bounds = { min, max, belowReason, aboveReason };
  }
  const near: NearCacheConfig = options.nearCache === false ? { maxEntries: 0 } : (options.nearCache ?? {});
  refuseNested(near, NEAR_CACHE_CONFIG, 'nearCache');
  const maxEntries = near.maxEntries ?? DEFAULT_NEAR_ENTRIES;
  if (!(Number.isSafeInteger(maxEntries) && maxEntries >= 0)) throw new ConfigurationError('nearCache.maxEntries', 'must be a non-negative integer', maxEntries);
  const staleReadMs = near.staleReadMs ?? 0;
  if (!(Number.isFinite(staleReadMs) && staleReadMs >= 0)) throw new ConfigurationError('nearCache.staleReadMs', 'must be a non-negative number of milliseconds', staleReadMs);
  const retries = options.updateRetries ?? DEFAULT_UPDATE_RETRIES;
  if (!(Number.isSafeInteger(retries) && retries >= 0)) throw new ConfigurationError('updateRetries', 'must be a non-negative integer', retries);
  // Both become timers, which Node runs after 1 ms past MAX_TIMER_MS: a SCAN of every master
  // each millisecond, or compare-and-set retries with no pause at all.
  const backoffMaxMs = options.retryBackoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
  if (!(Number.isFinite(backoffMaxMs) && backoffMaxMs >= 0 && backoffMaxMs <= MAX_TIMER_MS)) throw new ConfigurationError('retryBackoffMaxMs', `must be a number of milliseconds from 0 to ${MAX_TIMER_MS}`, backoffMaxMs);
  const sizeRefreshMs = options.sizeRefreshMs ?? DEFAULT_SIZE_REFRESH_MS;
  if (!(Number.isFinite(sizeRefreshMs) && sizeRefreshMs >= 0 && sizeRefreshMs <= MAX_TIMER_MS)) throw new ConfigurationError('sizeRefreshMs', `must be a number of milliseconds from 0 to ${MAX_TIMER_MS}`, sizeRefreshMs);
  const observers = checkObservers(options.observers);
  const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
  if (!(Number.isFinite(windowMs) && windowMs >= 1000)) throw new ConfigurationError('windowMs', 'must be at least 1000 ms', windowMs);
  return { codec, keyPrefix, bounds, maxEntries, staleReadMs, retries, backoffMaxMs, sizeRefreshMs, observers, windowMs };
}

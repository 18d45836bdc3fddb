import {
  AsyncRangeCallbackError,
  CapacityExceededError,
  ConfigurationError,
  GovMapError,
  InvalidArgumentError,
  MapDisposedError,
  ObserverFlushError,
  StoreRefusedError,
  UpdateAbortedError,
  UpdateConflictError,
} from './errors.ts';
import { freezeValue } from './freeze.ts';
import { KeyedQueue } from './keyed-queue.ts';
import { findUnknownOption, optionKeys, refuseUnknownOptions } from './known-options.ts';
import type { MapObserver, OpType, Outcome } from './observer.ts';
import { checkRangeOptions, compareKeys, describeBounds, inBounds, isBounded } from './range.ts';
import type { RangeCallback, RangeOptions, RangeResult } from './range.ts';
import { notifyMapCreated } from './creation-hooks.ts';
import { MapCounters, MapWindows, RANGE_BUCKETS_SECONDS, bucketQuantile } from './stats.ts';
import type { MapStatsSnapshot } from './stats.ts';
import { admitDelete, admitStore, writeAdmission } from './admission.ts';
import type { WriteAdmission } from './admission.ts';
import type { DeleteValidator, Validator } from './validator.ts';
import { InProcessStore } from '../stores/in-process-store.ts';
import type { MapStore } from '../stores/store.ts';

export type CapacityPolicy = 'reject' | 'evict-oldest';

export interface GovernedMapOptions<K, V> {
  /** Names the map in metrics (`map` label), audit events and errors. `[A-Za-z_][A-Za-z0-9_:.-]{0,63}`. */
  readonly name: string;
  /** The business validator every write passes. Required: a bare store is not expressible. */
  readonly validate: Validator<K, V>;
  /** Optional check on deletes (e.g. refuse to delete an account with a non-zero balance). */
  readonly validateDelete?: DeleteValidator<K, V>;
  /**
   * Where entries live. Default: a new in-process store, owned by the map (`dispose` drops its
   * entries). A store passed in is the caller's: it may be shared with other threads or maps,
   * so `dispose` leaves its entries alone.
   */
  readonly store?: MapStore<K, V>;
  /** Upper bound on keys; keys have an explicit lifecycle. Default: unbounded. */
  readonly maxKeys?: number;
  /** What a write of a new key does at `maxKeys`. Default `reject`. */
  readonly onFull?: CapacityPolicy;
  /** Entries expire this many ms after their last write. Default: never. */
  readonly ttlMs?: number;
  /** Sliding window of the miss and read:write ratios, in ms. Default 300,000 (5 minutes). */
  readonly windowMs?: number;
  /** Retries of a read-modify-write whose key was changed underneath it. Default 3. */
  readonly updateRetries?: number;
  /** Milliseconds clock for TTL and windows; tests pass a controllable one. Default `Date.now`. */
  readonly clock?: () => number;
  /** Watchers of every operation (audit, sandbox). */
  readonly observers?: readonly MapObserver<K>[];
  /**
   * Freeze object values as they are stored, through nested plain objects and arrays (their own
   * enumerable properties; an accessor's getter runs once per store, its result frozen). Default
   * true. A store that holds the caller's objects (the in-process store) would otherwise let
   * `update(k, (a) => { a.balance -= 100n; return a; })`, or any later change to a stored object,
   * alter the map without its validator, its metrics or its audit seeing a write (returning the
   * same object is a no-op). Frozen, such a change throws a TypeError where it is made; return a
   * new value instead (`{ ...a, balance: a.balance - 100n }`). Stores that keep copies (shared
   * memory, Redis) are not affected: what they hand out cannot change what they hold. Set false
   * only for values the map alone ever touches.
   */
  readonly freezeValues?: boolean;
}

/** Every key of GovernedMapOptions (the compiler checks the two stay the same): any other is refused. */
const GOVERNED_MAP_OPTIONS = optionKeys<GovernedMapOptions<unknown, unknown>>({
  name: true, validate: true, validateDelete: true, store: true, maxKeys: true, onFull: true, ttlMs: true,
  windowMs: true, updateRetries: true, clock: true, observers: true, freezeValues: true,
});

export interface UpdateAsyncOptions {
  /** Cancels the update if it has not committed yet; the map is then unchanged. */
  readonly signal?: AbortSignal;
}

const UPDATE_ASYNC_OPTIONS = optionKeys<UpdateAsyncOptions>({ signal: true });

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$/;
/** #remove's answer when a shared store's key changed between the read and the delete. */
const CONFLICT: unique symbol = Symbol('conflict');
const DEFAULT_WINDOW_MS = 5 * 60 * 1000;
const DEFAULT_UPDATE_RETRIES = 3;
/** What a store passed in must have (the atomic operations are optional, all or none). */
const STORE_METHODS = ['get', 'has', 'set', 'delete', 'oldestKey', 'snapshot', 'clear'] as const;

/**
 * A map whose every write passes a business validator, whose read-modify-writes are atomic
 * (synchronously with `update`, and across `await` with `updateAsync`, serialised per key),
 * whose range walks a consistent snapshot, and which counts everything it does for metrics
 * and audit without allocating on its read path.
 *
 * Atomicity comes from the JavaScript execution model: between the read, the validation and
 * the store of `update` no other code can run on this thread. What breaks atomicity in Node is
 * an `await` between a load and a store; `updateAsync` exists for exactly that case.
 *
 * A store shared with other threads (one with `compareAndSwap`, e.g. SharedInt64Store) can
 * change between our read and our store whatever this thread does. Then every write commits
 * with the store's compare-and-swap on the value it was validated against; if another thread
 * got there first, the write is redone on the fresh value — `update`'s function called again,
 * the validator run again — up to `updateRetries` times, then UpdateConflictError (map
 * unchanged). An update function may therefore run more than once: keep it free of side effects.
 */
export class GovernedMap<K, V> {
  readonly name: string;
  readonly #store: MapStore<K, V>;
  /** The map built its store itself, so its entries are the map's to drop on dispose. */
  readonly #ownsStore: boolean;
  readonly #maxKeys: number;
  readonly #onFull: CapacityPolicy;
  readonly #ttlMs: number;
  readonly #expiresAt: Map<K, number> | null;
  readonly #updateRetries: number;
  /** The store is written by other threads too: commit by compare-and-swap (see the class comment). */
  readonly #atomic: boolean;
  /** Object values are frozen as stored (option freezeValues, for stores holding references). */
  readonly #freeze: boolean;
  /**
   * A copying store's value handed to an update function is frozen: changed in place, it would no
   * longer match the stored value, and every attempt would read as another thread's write.
   */
  readonly #freezePrevious: boolean;
  readonly #clock: () => number;
  readonly #counters = new MapCounters();
  readonly #windows: MapWindows;
  readonly #queue = new KeyedQueue<K>();
  readonly createdAtMs: number;
  #observers: MapObserver<K>[];
  /** What admitStore/admitDelete need of this map (the validation rule shared with RemoteGovernedMap). */
  readonly #admission: WriteAdmission<K, V>;
  /** One per updateAsync in progress: dispose aborts them all. */
  readonly #pendingUpdates = new Set<AbortController>();
  #disposed = false;

  constructor(options: GovernedMapOptions<K, V>) {
    if (options === null || typeof options !== 'object') {
      throw new ConfigurationError('options', 'GovernedMap needs an options object with a name and a validate function');
    }
    // A misspelt `maxkeys` would leave the map unbounded while its owner believes it is capped.
    refuseUnknownOptions(options, GOVERNED_MAP_OPTIONS, 'GovernedMap');
    if (typeof options.name !== 'string' || !NAME_PATTERN.test(options.name)) {
      throw new ConfigurationError('name', 'must match [A-Za-z_][A-Za-z0-9_:.-]{0,63} (it becomes a metric label)', options.name);
    }
    if (typeof options.validate !== 'function') {
      throw new ConfigurationError(
        'validate',
        `map "${options.name}" needs a business validator: every write must pass one (a bare, unvalidated store is forbidden)`,
      );
    }
    if (options.validateDelete !== undefined && typeof options.validateDelete !== 'function') {
      throw new ConfigurationError('validateDelete', 'must be a function when given');
    }
    const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
    if (!(maxKeys === Number.POSITIVE_INFINITY || (Number.isSafeInteger(maxKeys) && maxKeys > 0))) {
      throw new ConfigurationError('maxKeys', 'must be a positive integer', maxKeys);
    }
    const onFull = options.onFull ?? 'reject';
    if (onFull !== 'reject' && onFull !== 'evict-oldest') {
      throw new ConfigurationError('onFull', 'must be "reject" or "evict-oldest"', onFull);
    }
    // Meant as a bounded cache, it would be an unbounded map: nothing is ever full without maxKeys.
    if (onFull === 'evict-oldest' && maxKeys === Number.POSITIVE_INFINITY) {
      throw new ConfigurationError('onFull', '"evict-oldest" needs maxKeys: without a bound nothing is ever evicted and the map grows without limit', onFull);
    }
    const ttlMs = options.ttlMs ?? 0;
    if (!(Number.isFinite(ttlMs) && ttlMs >= 0)) throw new ConfigurationError('ttlMs', 'must be a non-negative number of milliseconds', ttlMs);
    const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    if (!(Number.isFinite(windowMs) && windowMs >= 1000)) throw new ConfigurationError('windowMs', 'must be at least 1000 ms', windowMs);
    const retries = options.updateRetries ?? DEFAULT_UPDATE_RETRIES;
    if (!(Number.isSafeInteger(retries) && retries >= 0)) throw new ConfigurationError('updateRetries', 'must be a non-negative integer', retries);
    if (options.freezeValues !== undefined && typeof options.freezeValues !== 'boolean') throw new ConfigurationError('freezeValues', 'must be true or false', options.freezeValues);
    if (options.clock !== undefined && typeof options.clock !== 'function') throw new ConfigurationError('clock', 'must be a function returning milliseconds', options.clock);
    if (options.store !== undefined) {
      const store = options.store as unknown as Record<string, unknown> | null;
      const missing = store === null || typeof store !== 'object' ? ['get'] : STORE_METHODS.filter((m) => typeof store[m] !== 'function');
      if (missing.length > 0) throw new ConfigurationError('store', `must be a MapStore (missing ${missing.map((m) => `${m}()`).join(', ')}); see src/stores/store.ts`);
    }
    const observers = checkObservers(options.observers);

    this.name = options.name;
    this.#store = options.store ?? new InProcessStore<K, V>();
    this.#ownsStore = options.store === undefined;
    this.#store.adoptMapName?.(this.name);
    this.#maxKeys = maxKeys;
    this.#onFull = onFull;
    this.#ttlMs = ttlMs;
    this.#expiresAt = ttlMs > 0 ? new Map<K, number>() : null;
    this.#updateRetries = retries;
    this.#atomic = typeof this.#store.compareAndSwap === 'function' && typeof this.#store.compareAndDelete === 'function';
    this.#freeze = options.freezeValues !== false && !this.#atomic;
    this.#freezePrevious = options.freezeValues !== false && this.#atomic;
    this.#clock = options.clock ?? Date.now;
    this.createdAtMs = this.#clock();
    this.#windows = new MapWindows(windowMs, this.createdAtMs);
    this.#observers = [...observers];
    this.#admission = writeAdmission(options, this.#counters, (op, key, outcome, reason, value) => {
      if (this.#observers.length !== 0) this.#emit(op, key, outcome, reason, undefined, value);
    });
    this.#lifecycle('CREATED');
    notifyMapCreated(this);
  }

  // ---------------------------------------------------------------- reads

  /** The value of `key`, or `undefined`. Allocation-free. */
  load(key: K): V | undefined {
    if (this.#disposed) throw new MapDisposedError(this.name, 'load');
    let value = this.#store.get(key);
    if (value !== undefined && this.#expiresAt !== null && this.#expireIfDue(key)) value = undefined;
    const counters = this.#counters;
    counters.loads++;
    if (value === undefined) counters.misses++;
    if (this.#observers.length !== 0) this.#emit('LOAD', key, value === undefined ? 'miss' : 'ok', null);
    return value;
  }

  has(key: K): boolean {
    if (this.#disposed) throw new MapDisposedError(this.name, 'has');
    this.#counters.hasCalls++;
    if (this.#expiresAt !== null && this.#store.has(key) && this.#expireIfDue(key)) return false;
    return this.#store.has(key);
  }

  /** Keys held, expired ones not counted (they are removed now). */
  get size(): number {
    if (this.#expiresAt !== null) this.#expireDue();
    return this.#store.size;
  }

  get storeKind(): string {
    return this.#store.kind;
  }

  // ---------------------------------------------------------------- writes

  /** Validates and stores. Throws ValidationError (map unchanged) when the validator refuses. */
  store(key: K, value: V): void {
    this.#assertLive('store');
    this.#assertKey('store', key);
    this.#assertValue('store', value);
    for (let attempt = 1; !this.#commit(key, value, this.#current(key)); attempt++) this.#retryAfterConflict('STORE', key, attempt, value);
  }

  /**
   * Atomic read-modify-write: `fn` gets the current value (or undefined) and returns the next.
   * Returning the current value unchanged (Object.is) writes nothing: a zero delta is a no-op.
   * If `fn` throws, the error propagates and the map is unchanged. `fn` must be synchronous: a
   * promise returned is refused with InvalidArgumentError (use updateAsync).
   * @returns the value the key holds afterwards
   */
  update(key: K, fn: (previous: V | undefined) => V): V {
    this.#assertLive('update');
    this.#assertKey('update', key);
    if (typeof fn !== 'function') throw new InvalidArgumentError(this.name, 'update', 'fn', 'must be a function (previous) => next');
    for (let attempt = 1; ; attempt++) {
      const previous = this.#current(key);
      if (this.#freezePrevious) freezeValue(previous);
      const next = fn(previous);
      // An async function given to update by mistake (nothing stops it from JavaScript): the
      // promise would pass a validator such as `next < 0n` and be stored as the balance.
      if (isThenable(next)) {
        try {
          next.then(undefined, () => undefined); // its rejection is this error, not a crash
        } catch {
          // A thenable whose then() throws has nothing left to handle.
        }
        throw new InvalidArgumentError(this.name, 'update', 'fn', 'returned a promise (update functions must be synchronous; use updateAsync for a computation that awaits); nothing was written');
      }
      if (this.#disposed) throw new MapDisposedError(this.name, 'update', true); // fn disposed the map
      // fn is ours to call but the user's to write: a write to the same key from inside it would
      // be silently overwritten by ours. Refuse instead of losing it. (With a shared store the
      // writer may also be another thread: then redo the update on the fresh value.) Read
      // without expiring: an entry whose TTL ran out while fn ran was not written by anyone.
      const after = previous === undefined ? this.#current(key) : this.#store.get(key);
      if (!this.#same(after, previous)) {
        if (!this.#atomic) throw this.#conflictRefused('STORE', key, next, 'REENTRANT_WRITE', new UpdateConflictError(this.name, key, 1, 'the update function itself wrote the same key'));
        this.#retryAfterConflict('STORE', key, attempt, next);
        continue;
      }
      if (this.#same(next, previous)) {
        this.#counters.updatesNoop++;
        // Nothing written, but the value was read (and handed to fn): the audit keeps the access.
        if (this.#observers.length !== 0) this.#emit('LOAD', key, previous === undefined ? 'miss' : 'ok', 'UPDATE_UNCHANGED');
        return next;
      }
      this.#assertReturned('update', next);
      if (this.#commit(key, next, previous)) return next;
      this.#retryAfterConflict('STORE', key, attempt, next);
    }
  }

  /**
   * Read-modify-write whose computation awaits (a risk check, a downstream call). Updates of one
   * key run one after another in call order; other keys are not held up. Validation happens at
   * commit. If a plain `store`/`update` changed the key while `fn` was awaiting, `fn` is run
   * again on the fresh value (up to `updateRetries` times), so no update is ever lost. A write
   * of the key from inside `fn` itself is refused with UpdateConflictError.
   * @returns the value the key holds afterwards
   */
  async updateAsync(key: K, fn: (previous: V | undefined, signal: AbortSignal) => V | Promise<V>, options: UpdateAsyncOptions = {}): Promise<V> {
    this.#assertLive('updateAsync');
    // Before fn runs: its downstream call (a risk check, a reservation) would be made for a write
    // that can never commit.
    this.#assertKey('updateAsync', key);
    if (typeof fn !== 'function') throw new InvalidArgumentError(this.name, 'updateAsync', 'fn', 'must be a function (previous, signal) => next');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError(this.name, 'updateAsync', 'options', 'must be an object ({ signal })');
    // It has no own keys, so it would pass as `{}`: an update its caller believes it can cancel.
    if (options instanceof AbortSignal) throw new InvalidArgumentError(this.name, 'updateAsync', 'options', 'is an AbortSignal; pass it as { signal }');
    // `{ singal }` would leave the update uncancellable while its caller believes it can abort it.
    const unknown = findUnknownOption(options, UPDATE_ASYNC_OPTIONS, 'updateAsync (signal)');
    if (unknown !== undefined) throw new InvalidArgumentError(this.name, 'updateAsync', `options.${unknown.option}`, unknown.rule);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InvalidArgumentError(this.name, 'updateAsync', 'options.signal', 'must be an AbortSignal');
    }
    // The observers watching when the call was made: one removed while `fn` awaited (an audit
    // recorder stopped meanwhile detaches its maps) did not record the write, and its flush()
    // must still be asked, so the caller hears the write is applied but not audited
    // (GOVMAP_AUDIT_STOPPED, wrapped below) instead of a success that no record backs.
    const watching = this.#observers;
    let result: V;
    try {
      result = await this.#updateQueued(key, fn, options);
    } catch (error) {
      // A refused write was recorded too; its record is made durable before the caller hears of
      // it. A failure to do so is the audit's to report (its sink metrics), not this caller's:
      // the caller's error is the refusal.
      await this.#flushObservers(watching).catch(() => undefined);
      throw error;
    }
    // Settles only once observers (the audit) hold the write durably: after the key is released,
    // so the next update of the key does not wait for this fsync.
    try {
      await this.#flushObservers(watching);
    } catch (error) {
      // The write is applied: a caller that retried on this error would apply it twice. Say so
      // in the error's type. An error that says so itself (GOVMAP_AUDIT_NOT_DURABLE, details.applied)
      // goes as it is; any other (GOVMAP_AUDIT_STOPPED from a recorder stopped meanwhile, a
      // custom observer's) is wrapped, so no caller reads "applied" as "refused".
      if (error instanceof GovMapError && error.details.applied === true) throw error;
      throw new ObserverFlushError(this.name, key, error);
    }
    return result;
  }

  #updateQueued(key: K, fn: (previous: V | undefined, signal: AbortSignal) => V | Promise<V>, options: UpdateAsyncOptions): Promise<V> {
    const signal = options.signal ?? new AbortController().signal;
    // Ends the wait (for the turn, or for `fn`) on the caller's abort or on dispose: an update
    // queued behind a function that never returns would otherwise outlive the map.
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    if (signal.aborted) stop.abort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const aborted = (): Error => (this.#disposed ? new MapDisposedError(this.name, 'updateAsync', true) : new UpdateAbortedError(this.name, key, signal.reason));
    const queueing = { signal: stop.signal, aborted, map: this.name, onReentrant: this.#reentrantUpdate };
    this.#pendingUpdates.add(stop);
    const settled = (): void => {
      this.#pendingUpdates.delete(stop);
      signal.removeEventListener('abort', onAbort);
    };
    return this.#queue.run(key, async () => {
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted) throw new UpdateAbortedError(this.name, key, signal.reason);
        // Disposed while this update waited its turn: its function would see the key as absent.
        if (this.#disposed) throw new MapDisposedError(this.name, 'updateAsync', true);
        const previous = this.#current(key);
        if (this.#freezePrevious) freezeValue(previous);
        const next = await unlessAborted(fn(previous, signal), stop.signal, aborted);
        if (signal.aborted) throw new UpdateAbortedError(this.name, key, signal.reason);
        if (this.#disposed) throw new MapDisposedError(this.name, 'updateAsync', true);
        if (!this.#same(this.#current(key), previous)) {
          if (attempt > this.#updateRetries) {
            throw this.#conflictRefused('STORE', key, next, 'UPDATE_CONFLICT', new UpdateConflictError(this.name, key, attempt, 'the key kept changing outside updateAsync while the update awaited'));
          }
          continue;
        }
        if (this.#same(next, previous)) {
          this.#counters.updatesNoop++;
          if (this.#observers.length !== 0) this.#emit('LOAD', key, previous === undefined ? 'miss' : 'ok', 'UPDATE_UNCHANGED');
          return next;
        }
        this.#assertReturned('updateAsync', next);
        if (this.#queue.committing(() => this.#commit(key, next, previous))) return next;
        if (attempt > this.#updateRetries) {
          throw this.#conflictRefused('STORE', key, next, 'UPDATE_CONFLICT', new UpdateConflictError(this.name, key, attempt, 'other threads kept changing the key while the update awaited'));
        }
      }
    }, queueing).finally(settled);
  }

  /** Returns the existing value, or validates and stores `value` and returns it. */
  loadOrStore(key: K, value: V): { value: V; loaded: boolean } {
    this.#assertLive('loadOrStore');
    this.#assertKey('loadOrStore', key);
    for (let attempt = 1; ; attempt++) {
      const existing = this.load(key);
      if (existing !== undefined) return { value: existing, loaded: true };
      this.#assertValue('loadOrStore', value);
      if (this.#commit(key, value, undefined)) return { value, loaded: false };
      this.#retryAfterConflict('STORE', key, attempt, value); // another thread stored it first: load that
    }
  }

  /**
   * Stores `next` only if the key currently holds `expected` (Object.is, or the store's
   * `sameValue` for shared stores; `undefined` = absent).
   */
  compareAndSwap(key: K, expected: V | undefined, next: V): boolean {
    this.#assertLive('compareAndSwap');
    this.#assertKey('compareAndSwap', key);
    this.#assertValue('compareAndSwap', next);
    const current = this.#current(key);
    if (!this.#same(current, expected)) {
      // A write attempted and not made: the audit keeps the attempt, with the value offered.
      if (this.#observers.length !== 0) this.#emit('STORE', key, 'miss', 'CAS_MISMATCH', undefined, next);
      return false;
    }
    return this.#commit(key, next, current);
  }

  /** Deletes `key`; returns whether it was present. Passes `validateDelete` when configured. */
  delete(key: K): boolean {
    this.#assertLive('delete');
    return this.#removeCurrent(key) !== undefined;
  }

  /** Deletes `key` and returns the value it held, or undefined. */
  loadAndDelete(key: K): V | undefined {
    this.#assertLive('loadAndDelete');
    return this.#removeCurrent(key);
  }

  // ---------------------------------------------------------------- range

  /**
   * Visits a consistent snapshot: writes made during the walk (including by the callback) do
   * not tear it. The callback must be synchronous; returning false stops the walk.
   */
  range(callback: RangeCallback<K, V>, options?: RangeOptions<K>): RangeResult {
    this.#assertLive('range');
    if (typeof callback !== 'function') throw new InvalidArgumentError(this.name, 'range', 'callback', 'must be a function');
    checkRangeOptions(this.name, options);
    const startedAt = performance.now();
    let entries = this.#store.snapshot();
    if (isBounded(options)) {
      entries = entries.filter(([key]) => inBounds(this.name, key, options!));
      entries.sort((a, b) => compareKeys(a[0], b[0]));
    }
    const nowMs = this.#expiresAt !== null ? this.#clock() : 0;
    let visited = 0;
    let stopped = false;
    let outcome: Outcome = 'ok';
    try {
      for (const [key, value] of entries) {
        if (this.#expiresAt !== null && (this.#expiresAt.get(key) ?? Infinity) <= nowMs) continue;
        visited++;
        const verdict = callback(key, value) as unknown;
        if (verdict !== null && typeof verdict === 'object' && typeof (verdict as { then?: unknown }).then === 'function') {
          // Do not leave the stray promise's rejection unhandled; the walk itself is the error.
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
      throw error;
    } finally {
      this.#counters.recordRange((performance.now() - startedAt) / 1000, visited);
      if (this.#observers.length !== 0) this.#emit('RANGE', undefined, outcome, outcome === 'error' ? 'CALLBACK_FAILED' : null, options);
    }
    return { visited, stopped };
  }

  /** All entries of a consistent snapshot, optionally bounded, as an array. */
  entries(options?: RangeOptions<K>): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    this.range((key, value) => {
      out.push([key, value]);
    }, options);
    return out;
  }

  // ---------------------------------------------------------------- lifecycle & observation

  /** Adds a watcher (audit, sandbox) of every later operation. Returns a function that removes it. */
  observe(observer: MapObserver<K>): () => void {
    this.#assertLive('observe');
    checkObserver(observer, 'observer');
    // Twice in the list, an observer hears every operation twice: an audit recorder attached
    // twice (or attached to a map that already has it in `observers`) would record one STORE as
    // two, and a detach would remove both.
    if (this.#observers.includes(observer)) throw new ConfigurationError('observer', `already observes map "${this.name}" (each observer once)`);
    this.#observers = [...this.#observers, observer];
    return () => {
      this.#observers = this.#observers.filter((o) => o !== observer);
    };
  }

  /** Removes expired entries now (they are otherwise removed when next touched). */
  purgeExpired(): number {
    if (this.#expiresAt === null) return 0;
    const now = this.#clock();
    let purged = 0;
    for (const [key, deadline] of [...this.#expiresAt]) {
      if (deadline <= now && this.#expireIfDue(key)) purged++;
    }
    return purged;
  }

  /**
   * Ends the map's life: every later read, write, range or update throws MapDisposedError;
   * `size`, `stats()` and `counters` stay readable (a scrape after dispose reports the final
   * counts, and `size` what the store still holds: 0 for a store the map created). The entries of a store
   * the map created are dropped; a store passed in (`options.store`) is the caller's and may
   * be shared (other threads over the same shared memory, other maps), so it is left as is.
   * Every updateAsync in progress, running or waiting its turn, rejects at once with MapDisposedError.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const stop of this.#pendingUpdates) stop.abort();
    this.#expiresAt?.clear();
    try {
      if (this.#ownsStore) this.#store.clear();
    } finally {
      this.#lifecycle('DISPOSED');
    }
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The raw counters (read by metrics at scrape time). */
  get counters(): Readonly<MapCounters> {
    return this.#counters;
  }

  /** A point-in-time view, with the sliding-window ratios computed now. */
  stats(): MapStatsSnapshot {
    const c = this.#counters;
    const now = this.#clock();
    const miss = this.#windows.missRatio.observe(now, c.misses, c.loads);
    const rw = this.#windows.readWrite.observe(now, c.reads, c.writes);
    return {
      name: this.name,
      keys: this.#disposed ? this.#store.size : this.size,
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
    };
  }

  // ---------------------------------------------------------------- internals

  #assertLive(operation: string): void {
    if (this.#disposed) throw new MapDisposedError(this.name, operation);
  }

  /**
   * An entry under no key: its audit record would name no resource (resource_id null, like a
   * lifecycle record), and a shared or remote store would refuse it later, less clearly. NaN is
   * what Number() makes of a malformed id: every such id would share the one NaN entry.
   */
  #assertKey(operation: string, key: K): void {
    if (key === undefined || key === null || Number.isNaN(key)) throw new InvalidArgumentError(this.name, operation, 'key', `must be a key, not ${String(key)}`);
  }

  /** What an update function returned: undefined is usually a forgotten `return`, not a value passed. */
  #assertReturned(operation: string, next: V): void {
    if (next === undefined) {
      throw new InvalidArgumentError(this.name, operation, 'fn', 'returned undefined (did it forget to return the new value? undefined means "absent": to remove the key, use delete)');
    }
  }

  #assertValue(operation: string, value: V): void {
    if (value === undefined) {
      throw new InvalidArgumentError(this.name, operation, 'value', 'must not be undefined (undefined means "absent"; use delete)');
    }
  }

  /** Current value with expiry applied, without counting a load. */
  #current(key: K): V | undefined {
    const value = this.#store.get(key);
    if (value !== undefined && this.#expiresAt !== null && this.#expireIfDue(key)) return undefined;
    return value;
  }

  #expireIfDue(key: K): boolean {
    const deadline = this.#expiresAt!.get(key);
    if (deadline === undefined || deadline > this.#clock()) return false;
    // The value removed goes into the DELETE record, as for a delete() (an expired balance is
    // money leaving the map too); read only when someone records it.
    const removed = this.#observers.length !== 0 ? this.#store.get(key) : undefined;
    this.#store.delete(key);
    this.#expiresAt!.delete(key);
    this.#counters.expirations++;
    if (this.#observers.length !== 0) this.#emit('DELETE', key, 'ok', 'EXPIRED', undefined, removed);
    return true;
  }

  /**
   * A write of `key` from inside the function of an updateAsync of `key`: the update would see
   * the key changed and run its function again, writing again each time, then give up with
   * every one of those writes applied. Refused where it is made, as `update` refuses its own.
   */
  #refuseWriteFromOwnUpdate(op: 'STORE' | 'DELETE', key: K, value: V): void {
    if (this.#queue.insideSection(key)) {
      throw this.#conflictRefused(op, key, value, 'REENTRANT_WRITE', new UpdateConflictError(this.name, key, 1, 'the key was written from inside the function of an updateAsync of the same key; that write was refused (return the new value from the updateAsync instead)'));
    }
  }

  /** Equality of stored values: identity, or the shared store's value equality. */
  #same(a: V | undefined, b: V | undefined): boolean {
    if (Object.is(a, b)) return true;
    if (!this.#atomic || a === undefined || b === undefined) return false;
    return this.#store.sameValue?.(a, b) === true;
  }

  /**
   * A shared store's compare-and-swap lost to another thread: retry, or give up past the bound
   * (`value`: the value being written, or for a DELETE the one it tried to remove).
   */
  #retryAfterConflict(op: 'STORE' | 'DELETE', key: K, attempt: number, value: V): void {
    if (attempt > this.#updateRetries) {
      throw this.#conflictRefused(op, key, value, 'UPDATE_CONFLICT', new UpdateConflictError(this.name, key, attempt, 'other threads kept changing the key between its read and its commit (raise updateRetries for keys this contended)'));
    }
  }

  /**
   * An updateAsync of a key from inside an updateAsync of the same key, refused with
   * UpdateReentrantError: a failed write like the other re-entrant ones (REENTRANT_WRITE), with
   * no value, as its function never ran. Bound once, so that updateAsync allocates nothing for it.
   */
  readonly #reentrantUpdate = (key: K): void => {
    this.#countRefused('STORE', key, undefined, 'REENTRANT_WRITE');
  };

  /**
   * A write refused with UpdateConflictError is a failed attempt like any other (PCI DSS v4 10.2
   * asks that those be recorded): counted (a STORE as a failed store, a DELETE as a refused
   * delete, as the validators count them) and audited with its reason and the value it carried.
   * Only on this path, never on a write that commits. Returns `error` to throw.
   */
  #conflictRefused(op: 'STORE' | 'DELETE', key: K, value: V, reason: 'UPDATE_CONFLICT' | 'REENTRANT_WRITE', error: UpdateConflictError): UpdateConflictError {
    this.#countRefused(op, key, value, reason);
    return error;
  }

  /** Counts and audits a refused write (#conflictRefused, #reentrantUpdate); `value` undefined: none known. */
  #countRefused(op: 'STORE' | 'DELETE', key: K, value: V | undefined, reason: 'UPDATE_CONFLICT' | 'REENTRANT_WRITE'): void {
    const counters = this.#counters;
    if (op === 'STORE') counters.storesError++;
    else counters.deletesRejected++;
    counters.recordRejection(reason);
    if (this.#observers.length !== 0) this.#emit(op, key, 'error', reason, undefined, value);
  }

  #removeCurrent(key: K): V | undefined {
    for (let attempt = 1; ; attempt++) {
      const previous = this.#current(key);
      const removed = this.#remove(key, previous, null);
      if (removed !== CONFLICT) return removed;
      this.#retryAfterConflict('DELETE', key, attempt, previous as V); // a conflict means it was present
    }
  }

  /**
   * Validation, capacity, store: the one path every write takes. Returns false, having written
   * and emitted nothing, only when a shared store's key no longer holds `previous`.
   */
  #commit(key: K, next: V, previous: V | undefined): boolean {
    this.#refuseWriteFromOwnUpdate('STORE', key, next);
    const counters = this.#counters;
    admitStore(this.#admission, key, next, previous);
    if (this.#disposed) throw new MapDisposedError(this.name, 'store', true); // the validator disposed the map
    if (!this.#atomic && !Object.is(this.#store.get(key), previous)) {
      // The validator wrote this key itself: storing ours now would silently drop that write.
      throw this.#conflictRefused('STORE', key, next, 'REENTRANT_WRITE', new UpdateConflictError(this.name, key, 1, 'the validator itself wrote the same key; the write was refused so that neither is lost'));
    }
    if (previous === undefined && this.#store.size >= this.#maxKeys && this.#expiresAt !== null) this.#expireDue();
    if (previous === undefined && this.#store.size >= this.#maxKeys && !this.#store.has(key)) {
      if (this.#onFull === 'reject') {
        counters.storesRejected++;
        counters.recordRejection('CAPACITY_EXCEEDED');
        if (this.#observers.length !== 0) this.#emit('STORE', key, 'rejected', 'CAPACITY_EXCEEDED', undefined, next);
        throw new CapacityExceededError(this.name, key, this.#maxKeys);
      }
      // An eviction cannot be undone: make sure the store will take this write before making
      // room for it, or a refused write (key too long, value out of range) would cost a live entry.
      try {
        this.#store.checkWrite?.(key, next);
        // Frozen now, not after the eviction: a value that refuses (a Proxy) would cost a live entry.
        if (!this.#atomic && this.#freeze) freezeValue(next);
      } catch (error) {
        counters.storesError++;
        throw this.#storeRefused('STORE', key, error, next);
      }
      this.#evictOldest();
    }
    try {
      if (this.#atomic) {
        if (!this.#store.compareAndSwap!(key, previous, next)) return false;
      } else {
        // Frozen as it is stored, not before: a refused write leaves the caller's object as it was.
        if (this.#freeze) freezeValue(next);
        this.#store.set(key, next);
      }
    } catch (error) {
      counters.storesError++;
      throw this.#storeRefused('STORE', key, error, next);
    }
    if (this.#expiresAt !== null) {
      // Re-insert so the expiry map stays in deadline order for purgeExpired's early exit.
      this.#expiresAt.delete(key);
      this.#expiresAt.set(key, this.#clock() + this.#ttlMs);
    }
    counters.storesOk++;
    if (this.#observers.length !== 0) this.#emit('STORE', key, 'ok', null, undefined, next);
    return true;
  }

  /**
   * The store refused a write the validator accepted (a shared store's key too long, value out
   * of range, table full): the map is unchanged, and the refusal is counted by its reason and
   * audited like any other failed write. Returns the error to throw (the caller counts the op).
   */
  #storeRefused(op: 'STORE' | 'DELETE', key: K, error: unknown, value: V): Error {
    const reason = storeRefusal(error);
    this.#counters.recordRejection(reason);
    if (this.#observers.length !== 0) this.#emit(op, key, 'error', reason, undefined, value);
    return error instanceof GovMapError ? error : new StoreRefusedError(this.name, key, this.#store.kind, error);
  }

  /**
   * Expires every entry whose deadline has passed. #expiresAt is in deadline order (a write
   * re-inserts its key with the latest deadline), so this stops at the first live entry.
   */
  #expireDue(): void {
    const now = this.#clock();
    for (const [key, deadline] of this.#expiresAt!) {
      if (deadline > now) return;
      this.#expireIfDue(key);
    }
  }

  /** Tells every observer; one that throws does not keep the others from hearing it. */
  #lifecycle(event: 'CREATED' | 'DISPOSED'): void {
    for (const observer of this.#observers) {
      try {
        observer.onLifecycle?.(this.name, event);
      } catch {
        // As in #emit: an observer's failure is its own to report.
      }
    }
  }

  #evictOldest(): void {
    const victim = this.#store.oldestKey();
    if (victim === undefined) return;
    // As for expiry: the evicted value is recorded with its DELETE.
    const removed = this.#observers.length !== 0 ? this.#store.get(victim) : undefined;
    this.#store.delete(victim);
    this.#expiresAt?.delete(victim);
    this.#counters.evictions++;
    if (this.#observers.length !== 0) this.#emit('DELETE', victim, 'ok', 'EVICTED', undefined, removed);
  }

  #remove(key: K, previous: V | undefined, _reason: string | null): V | undefined | typeof CONFLICT {
    const counters = this.#counters;
    if (previous === undefined) {
      counters.deletesMiss++;
      if (this.#observers.length !== 0) this.#emit('DELETE', key, 'miss', null);
      return undefined;
    }
    this.#refuseWriteFromOwnUpdate('DELETE', key, previous);
    admitDelete(this.#admission, key, previous);
    if (this.#disposed) throw new MapDisposedError(this.name, 'delete', true); // validateDelete disposed the map
    try {
      if (this.#atomic) {
        if (!this.#store.compareAndDelete!(key, previous)) return CONFLICT;
      } else {
        this.#store.delete(key);
      }
    } catch (error) {
      counters.deletesRejected++;
      throw this.#storeRefused('DELETE', key, error, previous);
    }
    this.#expiresAt?.delete(key);
    counters.deletesOk++;
    if (this.#observers.length !== 0) this.#emit('DELETE', key, 'ok', null, undefined, previous);
    return previous;
  }

  /**
   * Awaits every observer that offers `flush` (the audit's fsync); nothing when none does. Those
   * in `watching` (the observers when the operation began) are asked too, removed or not.
   */
  async #flushObservers(watching: readonly MapObserver<K>[] = []): Promise<void> {
    // Unchanged since the operation began (the usual case: observe() replaces the array): no copy.
    const observers = watching === this.#observers || watching.length === 0 ? this.#observers : new Set([...watching, ...this.#observers]);
    for (const observer of observers) {
      if (observer.flush !== undefined) await observer.flush();
    }
  }

  #emit(op: OpType, key: K | undefined, outcome: Outcome, reason: string | null, options?: RangeOptions<K>, value?: V): void {
    const bounds = op === 'RANGE' ? describeBounds(options) : null;
    for (const observer of this.#observers) {
      try {
        observer.onOperation(this.name, op, key, outcome, reason, bounds, value);
      } catch {
        // An observer's failure must not fail (or half-apply) the operation it watched;
        // the audit part reports its own sink failures through its own channel.
      }
    }
  }
}

/**
 * `answer`, or a rejection with `aborted()` as soon as `signal` aborts, whichever comes first. An
 * update function that ignores its signal (a downstream call without a timeout) must not keep the
 * caller, and every later update of the key queued behind it, waiting past the abort. Its late
 * answer is discarded unwritten (nothing commits once the signal has aborted), and a late
 * rejection is handled here.
 */
function unlessAborted<V>(answer: V | Promise<V>, signal: AbortSignal | undefined, aborted: () => Error): V | Promise<V> {
  if (signal === undefined || answer === null || typeof answer !== 'object' || typeof (answer as { then?: unknown }).then !== 'function') return answer;
  let onAbort!: () => void;
  const abort = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(aborted());
  });
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  // The abort first: when both have happened, the update was aborted.
  return Promise.race([abort, answer]).finally(() => signal.removeEventListener('abort', onAbort));
}

/** The `observers` option of a map (this one, or the Redis store's): checked before anything is built. */
export function checkObservers<K>(option: readonly MapObserver<K>[] | undefined): readonly MapObserver<K>[] {
  const observers: readonly MapObserver<K>[] = option ?? [];
  // (Array.isArray would narrow a readonly array to any[].)
  if (!(observers instanceof Array)) throw new ConfigurationError('observers', 'must be an array of MapObservers', observers);
  for (const [i, observer] of observers.entries()) {
    checkObserver(observer, `observers[${i}]`);
    // As in observe(): one observer listed twice would record every operation twice.
    const first = observers.indexOf(observer);
    if (first !== i) throw new ConfigurationError(`observers[${i}]`, `is observers[${first}] again (each observer once)`);
  }
  return observers;
}

/** An observer must at least take operations; reject anything else at the door. */
function checkObserver(observer: unknown, argument: string): void {
  if (observer === null || typeof observer !== 'object' || typeof (observer as { onOperation?: unknown }).onOperation !== 'function') {
    throw new ConfigurationError(argument, 'must be a MapObserver (an object with an onOperation function)');
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/** The reason a store's refusal is counted and audited under: its code, else STORE_FAILED. */
function storeRefusal(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code.replace(/^GOVMAP_/, '') : 'STORE_FAILED';
}

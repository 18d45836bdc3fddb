/**
 * Where a GovernedMap's entries live. Deliberately small: GovernedMap owns validation,
 * atomicity, metrics and audit; a store only holds entries. Implementations: in-process
 * (a Map), shared memory across worker threads, Redis for many machines.
 *
 * Contract:
 * - `get` of an absent key returns `undefined`; stores never hold `undefined` as a value.
 * - `snapshot` returns entries as of the call: later writes do not show up in, or tear, it.
 * - Methods are synchronous: a GovernedMap write is atomic because nothing can interleave
 *   between its read, its validation and its `set` on the one JavaScript thread — unless the
 *   store is shared with other threads or processes; such a store provides the atomic
 *   operations below and GovernedMap commits through them.
 */
export interface MapStore<K, V> {
  /** Stable name of the implementation, for reports (`in-process`, `shared-memory`, ...). */
  readonly kind: string;
  readonly size: number;
  get(key: K): V | undefined;
  has(key: K): boolean;
  set(key: K, value: V): void;
  delete(key: K): boolean;
  /** The key added longest ago, for the `evict-oldest` capacity policy. */
  oldestKey(): K | undefined;
  snapshot(): Array<[K, V]>;
  clear(): void;

  // Atomic operations of stores that other threads or processes write too (shared memory).
  // There, nothing stops another writer between GovernedMap's read, validation and `set`, so
  // when a store has these, GovernedMap commits through them instead: a write whose key changed
  // since it was read is detected and re-validated on the fresh value, never silently
  // overwritten. A store has all three or none.

  /** Stores `next` only if `key` currently holds a value `sameValue` to `expected` (undefined: is absent). */
  compareAndSwap?(key: K, expected: V | undefined, next: V): boolean;
  /** Deletes `key` only if it currently holds a value `sameValue` to `expected`. */
  compareAndDelete?(key: K, expected: V): boolean;
  /** Value equality as the store compares values (e.g. field by field for records read from shared memory). */
  sameValue?(a: V, b: V): boolean;

  /**
   * Throws the refusal `set` would throw for this key and value (a shared store's key too long,
   * a value outside its layout), writing nothing. Optional: stores that take every key and value
   * have none. GovernedMap asks before it evicts an entry to make room for the write.
   */
  checkWrite?(key: K, value: V): void;

  /**
   * A GovernedMap constructed over this store passes its name. Optional: a store whose errors
   * would otherwise name no map (shared memory) takes it unless it was given a name of its own.
   */
  adoptMapName?(name: string): void;
}

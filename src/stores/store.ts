/**
 * Where a GovernedMap's entries live. Deliberately small: GovernedMap owns validation,
 * atomicity, metrics and audit; a store only holds entries. Implementations: in-process
 * (a Map), shared memory across worker threads, Redis for many machines.
 *
 * Contract:
 * - `get` of an absent key returns `undefined`; stores never hold `undefined` as a value.
 * - `snapshot` returns entries as of the call: later writes do not show up in, or tear, it.
 * - Methods are synchronous: a GovernedMap write is atomic because nothing can interleave
 *   between its read, its validation and its `set` on the one JavaScript thread.
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
}

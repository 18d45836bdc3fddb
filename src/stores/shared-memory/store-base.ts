import type { Worker } from 'node:worker_threads';
import type { MapStore } from '../store.ts';
import { SharedKeyError } from './errors.ts';
import type { IntegrityReport, SharedMapHandle, SharedMapStats, SharedTable } from './shared-table.ts';

/**
 * What both shared-memory stores share: the MapStore contract over a SharedTable, plus the
 * atomic operations GovernedMap commits through (compareAndSwap, compareAndDelete, sameValue)
 * and the lifecycle of this thread's attachment (handle, supervise, close).
 *
 * Reads of a key that cannot be stored (longer than maxKeyLength) are misses; writes of one
 * throw SharedKeyError. Values are checked against the layout before anything is written.
 */
export abstract class SharedMemoryStore<V> implements MapStore<string, V> {
  readonly kind = 'shared-memory';
  protected readonly table: SharedTable<V>;

  protected constructor(table: SharedTable<V>) {
    this.table = table;
  }

  /** Pass this in `workerData`; the worker calls the store's `attach(handle)`. */
  get handle(): SharedMapHandle {
    return this.table.handle;
  }

  get size(): number {
    return this.table.size;
  }

  get maxKeyLength(): number {
    return this.table.maxKeyLength;
  }

  /** The map's name (create option `name`, the handle's, or its GovernedMap's), or null; SharedMapFullError carries it. */
  get name(): string | null {
    return this.table.name;
  }

  /** Called by a GovernedMap over this store: an unnamed map takes the GovernedMap's name (and hands it to workers attached after). */
  adoptMapName(name: string): void {
    this.table.adoptName(name);
  }

  /** The value, or undefined; from this thread's read cache when still valid (a record: a new object every call). */
  get(key: string): V | undefined {
    return this.table.read(key);
  }

  has(key: string): boolean {
    return this.table.contains(key);
  }

  set(key: string, value: V): void {
    this.#checkWrite(key, 'set');
    this.table.codec.check(key, value);
    this.table.put(key, value, false, undefined);
  }

  delete(key: string): boolean {
    const table = this.table;
    return table.admissible(key, 'delete') ? table.remove(key, false, undefined) : false;
  }

  /** Stores `next` only if `key` holds a value equal to `expected` (field by field); `undefined`: only if absent. */
  compareAndSwap(key: string, expected: V | undefined, next: V): boolean {
    this.#checkWrite(key, 'compareAndSwap');
    this.table.codec.check(key, next);
    return this.table.put(key, next, true, expected);
  }

  /** Deletes `key` only if it holds a value equal to `expected`. */
  compareAndDelete(key: string, expected: V): boolean {
    const table = this.table;
    return table.admissible(key, 'compareAndDelete') ? table.remove(key, true, expected) : false;
  }

  sameValue(a: V, b: V): boolean {
    return this.table.codec.same(a, b);
  }

  /** Throws what `set(key, value)` would refuse it with (SharedKeyError, SharedValueError), writing nothing. */
  checkWrite(key: string, value: V): void {
    this.#checkWrite(key, 'set');
    this.table.codec.check(key, value);
  }

  /** The key added longest ago (O(n): walks every entry with writers held off). */
  oldestKey(): string | undefined {
    return this.table.oldestKey();
  }

  /** Every entry at one instant, in insertion order (as a Map): writers are held off while it is copied, readers are not. */
  snapshot(): Array<[string, V]> {
    return this.table.entries();
  }

  clear(): void {
    this.table.clear();
  }

  /**
   * Call in the thread that starts a worker attached to this map, right after `new Worker`:
   * when the worker exits — normally, by a crash or by `terminate()` — the locks it held are
   * recovered and a write it was in the middle of is finished or undone.
   */
  supervise(worker: Worker): void {
    this.table.supervise(worker);
  }

  /** Recovers a thread known to be dead (what `supervise` does on 'exit'). Returns owner slots recovered. */
  recoverThread(threadId: number): number {
    return this.table.recoverThread(threadId);
  }

  /**
   * Detaches this thread's instance (frees its owner slot). The map lives on in other threads.
   * Entry operations on this instance then throw SharedStoreClosedError; `size` and `stats()`
   * still answer with the map's figures (a metrics scrape during shutdown must not fail).
   */
  close(): void {
    this.table.close();
  }

  stats(): SharedMapStats {
    return this.table.stats();
  }

  /** Verifies the map's structural invariants with writers held off; see SharedTable.checkIntegrity. */
  checkIntegrity(): IntegrityReport {
    return this.table.checkIntegrity();
  }

  #checkWrite(key: string, operation: string): void {
    if (!this.table.admissible(key, operation)) throw new SharedKeyError(key, `is ${key.length} UTF-16 units long; this map's maxKeyLength is ${this.table.maxKeyLength}`);
  }
}

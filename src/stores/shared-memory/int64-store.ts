import type { SharedAttachOptions, SharedMapHandle, SharedMapOptions } from './shared-table.ts';
import { SHARED_ATTACH_OPTIONS, SHARED_MAP_OPTIONS, SharedTable } from './shared-table.ts';
import { assertOptionsObject, refuseUnknownOptions } from '../../map/known-options.ts';
import { SharedMemoryStore } from './store-base.ts';
import { SharedValueError } from './errors.ts';

/**
 * Balances in minor units (int64 `bigint`) shared by worker threads: lock-free reads, atomic
 * `add` and `compareAndSwap`. Behind a GovernedMap, `update(key, b => b + delta)` becomes a
 * compare-and-swap loop on the entry, so every write is still validated and audited.
 *
 * ```ts
 * const balances = SharedInt64Store.create({ initialCapacity: 100_000 });
 * const worker = new Worker(url, { workerData: { balances: balances.handle } });
 * balances.supervise(worker);
 * // in the worker:
 * const balances = SharedInt64Store.attach(workerData.balances);
 * ```
 */
export class SharedInt64Store extends SharedMemoryStore<bigint> {
  private constructor(table: SharedTable<bigint>) {
    super(table);
  }

  /** A new map; this thread is attached to it. */
  static create(options: SharedMapOptions = {}): SharedInt64Store {
    // A misspelt `maxkeys` would reserve the default million keys, not the cap the caller meant.
    assertOptionsObject(options, 'SharedInt64Store.create');
    refuseUnknownOptions(options, SHARED_MAP_OPTIONS, 'SharedInt64Store.create');
    return new SharedInt64Store(SharedTable.create<bigint>('int64', options));
  }

  /** Attaches this thread to the map behind `handle` (from another thread's `handle`); `options`: this thread's read cache. */
  static attach(handle: SharedMapHandle, options?: SharedAttachOptions): SharedInt64Store {
    if (options !== undefined) {
      assertOptionsObject(options, 'SharedInt64Store.attach');
      refuseUnknownOptions(options, SHARED_ATTACH_OPTIONS, 'SharedInt64Store.attach');
    }
    return new SharedInt64Store(SharedTable.attach<bigint>(handle, 'int64', options));
  }

  /** The value, or undefined. From this thread's read cache when still valid, else lock-free from the table; returns the same bigint while the value is unchanged. */
  override get(key: string): bigint | undefined {
    return this.table.readInt64(key);
  }

  /**
   * Adds `delta` atomically and returns the new value; `undefined` (nothing written) when the
   * key is absent. A result outside int64 throws SharedInt64OverflowError, nothing written.
   * This is the raw store: it bypasses GovernedMap's validator and audit — use
   * `GovernedMap.update` for governed data.
   */
  add(key: string, delta: bigint): bigint | undefined {
    if (typeof delta !== 'bigint') throw new SharedValueError(String(key), `add(): delta must be a bigint, got ${typeof delta}`);
    return this.table.admissible(key, 'add') ? this.table.add(key, delta) : undefined;
  }
}

/**
 * A thread of the shared-memory suite. It holds the contenders — its own plain Map (the
 * single-thread baseline), an attachment to the SharedInt64Store, the two baseline tables —
 * and on request runs a read:write mix against one of them, started together with the other
 * worker at a barrier, reporting its own elapsed time. As `owner`, it instead answers
 * postMessage lookups from its Map (the pattern the shared map replaces).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { SharedInt64Store } from '../src/stores/index.ts';
import type { SharedMapHandle } from '../src/stores/index.ts';
import { BaselineTable } from './shared-memory-baselines.ts';
import type { BaselineKind } from './shared-memory-baselines.ts';
import { measureReadCost } from './shared-memory-read-cost.ts';
import type { ReadCost } from './shared-memory-read-cost.ts';

/** `shared`: read cache on (the default); `shared-uncached`: `readCacheKeys: 0`, every read through the table. */
export type Contender = 'map' | 'shared' | 'shared-uncached' | BaselineKind;

export interface RunRequest {
  readonly contender: Contender;
  /** Reads per write: one op in (readsPerWrite + 1) is a write. */
  readonly readsPerWrite: number;
  readonly ops: number;
  /** Threads that start together at the barrier. */
  readonly parties: number;
  /** Offset into the shared key order, so two workers do not walk it in lockstep. */
  readonly offset: number;
  /** Walk the hot-set order (every operation on 5,000 of the keys) instead of the uniform one. */
  readonly hot: boolean;
  /** Full collection before the timed run (when gc is exposed). Default true; false for A/B checks of that choice. */
  readonly settle?: boolean;
}

/** Times the parts of one read in this thread alone (see shared-memory-read-cost.ts). */
export interface ReadCostRequest {
  readonly kind: 'read-cost';
  /** The first `keys` keys: 1,000 (cache-resident) or all of them. */
  readonly keys: number;
  readonly ops: number;
}

/**
 * The owner pattern asked from a worker (as a pool's worker would ask): `reads` lookups over
 * `port` (a MessageChannel to the owner), one in flight, each awaited before the next, with one
 * persistent listener. The reply is the mean round trip, ns.
 */
export interface RoundTripRequest {
  readonly kind: 'round-trips';
  readonly port: MessagePort;
  readonly reads: number;
}

export interface RunReply {
  /** Wall-clock time of this thread's timed loop. */
  readonly ns: number;
  /**
   * process.hrtime.bigint() (one monotonic clock for every thread of the process) when the start
   * barrier released the threads (written by the last to arrive; this thread's own start when
   * alone), when this thread started its loop, and when it finished.
   */
  readonly releasedAt: bigint;
  readonly startedAt: bigint;
  readonly finishedAt: bigint;
  /** CPU time this thread spent in it (user + system): excludes time it waited for a core. */
  readonly cpuNs: number;
  readonly hits: number;
}

interface Data {
  readonly role: 'runner' | 'owner';
  readonly keys: number;
  readonly order: Int32Array;
  readonly shared: SharedMapHandle;
  /** A second map with the same keys, for the `shared-uncached` contender (its writes would otherwise make the cached contender's entries stale). */
  readonly sharedUncached: SharedMapHandle;
  readonly hotOrder: Int32Array;
  readonly baselines: Record<BaselineKind, SharedArrayBuffer>;
  /** Barrier words: [0] arrivals, [1] generation; BigInt64 slot 1 (bytes 8-15): release time. */
  readonly sync: SharedArrayBuffer;
}

const data = workerData as Data;
const collectGarbage = (globalThis as { gc?: () => void }).gc;
const keys = Array.from({ length: data.keys }, (_, i) => `acct-${String(i).padStart(6, '0')}`);
const values = Array.from({ length: 1024 }, (_, i) => BigInt(1_000_000 + i));
const uniformOrder = data.order;
const orderMask = uniformOrder.length - 1;
const map = new Map<string, bigint>();
for (let i = 0; i < keys.length; i++) map.set(keys[i]!, values[i & 1023]!);

if (data.role === 'owner') {
  // The owner pattern: the map lives in one thread; everyone else asks it.
  parentPort!.on('message', (request: string | { port: MessagePort }) => {
    if (typeof request === 'string') {
      parentPort!.postMessage(map.get(request));
      return;
    }
    // A channel from a worker that asks directly (no hop through the main thread).
    const port = request.port;
    port.on('message', (key: string) => port.postMessage(map.get(key)));
  });
  parentPort!.postMessage('ready');
} else {
  // The store as a service would attach it (read cache on, default size), and a second
  // attachment with the cache off, for the read-cost rows and the `shared-uncached` contender.
  const shared = SharedInt64Store.attach(data.shared);
  const uncached = SharedInt64Store.attach(data.sharedUncached, { readCacheKeys: 0 });
  const spinlock = new BaselineTable('global-spinlock', data.baselines['global-spinlock']);
  const readerCounter = new BaselineTable('reader-counter', data.baselines['reader-counter']);
  const sync = new Int32Array(data.sync);
  const releasedAt = new BigInt64Array(data.sync, 8, 1);
  // Every read's value is stored here, so no contender's read can be optimised away (a JIT that
  // inlined a get() whose result is only compared with undefined could skip creating the bigint).
  let sink: bigint | undefined;

  // One loop per contender, so each stays monomorphic for the JIT.
  const runMap = (order: Int32Array, period: number, ops: number, offset: number): number => {
    let hits = 0;
    for (let i = 0; i < ops; i++) {
      const key = keys[order[(i + offset) & orderMask]!]!;
      if (i % period === 0) map.set(key, values[i & 1023]!);
      else {
        const value = map.get(key);
        if (value !== undefined) {
          hits++;
          sink = value;
        }
      }
    }
    return hits;
  };
  const runShared = (order: Int32Array, store: SharedInt64Store, period: number, ops: number, offset: number): number => {
    let hits = 0;
    for (let i = 0; i < ops; i++) {
      const key = keys[order[(i + offset) & orderMask]!]!;
      if (i % period === 0) store.set(key, values[i & 1023]!);
      else {
        const value = store.get(key);
        if (value !== undefined) {
          hits++;
          sink = value;
        }
      }
    }
    return hits;
  };
  const runBaseline = (order: Int32Array, table: BaselineTable, period: number, ops: number, offset: number): number => {
    let hits = 0;
    for (let i = 0; i < ops; i++) {
      const key = keys[order[(i + offset) & orderMask]!]!;
      if (i % period === 0) table.set(key, values[i & 1023]!);
      else {
        const value = table.get(key);
        if (value !== undefined) {
          hits++;
          sink = value;
        }
      }
    }
    return hits;
  };
  const run = (request: RunRequest, ops: number): number => {
    const period = request.readsPerWrite + 1;
    const order = request.hot ? data.hotOrder : uniformOrder;
    switch (request.contender) {
      case 'map':
        return runMap(order, period, ops, request.offset);
      case 'shared':
        return runShared(order, shared, period, ops, request.offset);
      case 'shared-uncached':
        return runShared(order, uncached, period, ops, request.offset);
      case 'global-spinlock':
        return runBaseline(order, spinlock, period, ops, request.offset);
      case 'reader-counter':
        return runBaseline(order, readerCounter, period, ops, request.offset);
    }
  };

  /**
   * Start barrier: the last thread to arrive stamps the release time and wakes the others
   * (Atomics.notify); they sleep in Atomics.wait meanwhile, so a waiting thread does not take a
   * core from one still warming up. Returns the release time.
   */
  const barrier = (parties: number): bigint => {
    if (parties === 1) return process.hrtime.bigint();
    const generation = Atomics.load(sync, 1);
    if (Atomics.add(sync, 0, 1) === parties - 1) {
      const now = process.hrtime.bigint();
      Atomics.store(releasedAt, 0, now);
      Atomics.store(sync, 0, 0);
      Atomics.add(sync, 1, 1);
      Atomics.notify(sync, 1);
      return now;
    }
    while (Atomics.load(sync, 1) === generation) Atomics.wait(sync, 1, generation, 1);
    return Atomics.load(releasedAt, 0);
  };

  const readCost = (request: ReadCostRequest): ReadCost => {
    if (request.keys >= keys.length) return measureReadCost(keys, uniformOrder, uncached, shared, map, request.ops);
    // A smaller population of its own: a store and a Map of the first `keys` keys, read in the
    // same random order folded onto them.
    const few = keys.slice(0, request.keys);
    const store = SharedInt64Store.create({ initialCapacity: few.length, maxKeyLength: 16, readCacheKeys: 0 });
    const cachedStore = SharedInt64Store.attach(store.handle);
    const small = new Map<string, bigint>();
    for (let i = 0; i < few.length; i++) {
      store.set(few[i]!, values[i & 1023]!);
      small.set(few[i]!, values[i & 1023]!);
    }
    const folded = new Int32Array(1 << 16);
    for (let i = 0; i < folded.length; i++) folded[i] = uniformOrder[i]! % few.length;
    try {
      return measureReadCost(few, folded, store, cachedStore, small, request.ops);
    } finally {
      cachedStore.close();
      store.close();
    }
  };

  const roundTrips = async (request: RoundTripRequest): Promise<number> => {
    const port = request.port;
    let pending: ((value: unknown) => void) | null = null;
    port.on('message', (value: unknown) => {
      const resolve = pending;
      pending = null;
      resolve?.(value);
    });
    const ask = (key: string): Promise<unknown> =>
      new Promise((resolve) => {
        pending = resolve;
        port.postMessage(key);
      });
    for (let i = 0; i < 1000; i++) sink = (await ask(keys[uniformOrder[i]!]!)) as bigint | undefined;
    const start = process.hrtime.bigint();
    for (let i = 0; i < request.reads; i++) sink = (await ask(keys[uniformOrder[i & orderMask]!]!)) as bigint | undefined;
    const ns = Number(process.hrtime.bigint() - start) / request.reads;
    port.close();
    return ns;
  };

  parentPort!.on('message', (request: RunRequest | ReadCostRequest | RoundTripRequest) => {
    if ('kind' in request) {
      if (request.kind === 'round-trips') void roundTrips(request).then((ns) => parentPort!.postMessage(ns));
      else parentPort!.postMessage(readCost(request));
      return;
    }
    run(request, Math.min(request.ops, 200_000)); // warm-up: let the JIT settle first
    // A full collection before every timed run (when --expose-gc is on, as `npm run bench` runs
    // it): every contender starts from a settled heap. Without it the plain Map's time per
    // operation moved 2-3x with whatever collections the runner had happened to do before
    // (65-255 ns at 20:1 in one runner; docs/shared-memory.md, "Baselines").
    if (request.settle !== false) collectGarbage?.();
    const released = barrier(request.parties);
    const cpu = process.threadCpuUsage();
    const start = process.hrtime.bigint();
    const hits = run(request, request.ops);
    const end = process.hrtime.bigint();
    const used = process.threadCpuUsage(cpu);
    if (hits > 0 && sink === undefined) throw new Error('unreachable: a hit stored its value');
    parentPort!.postMessage({
      ns: Number(end - start),
      releasedAt: released,
      startedAt: start,
      finishedAt: end,
      cpuNs: (used.user + used.system) * 1000,
      hits,
    } satisfies RunReply);
  });
  parentPort!.postMessage('ready');
}

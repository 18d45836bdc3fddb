/**
 * Proof that the shared-memory stores are linearizable: fast-check generates workloads, worker
 * threads run them against one real map at the same time (starting each history at a barrier),
 * every call and return is stamped from a shared atomic clock, and each recorded history is
 * searched for a linearization (test/stores/linearizability.ts). The checker itself is tested
 * first, against a brute-force enumeration, and the whole pipeline is shown to catch a real
 * lost update (a racy add) — so "zero violations" means something.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { SharedInt64Store, SharedRecordStore } from '../../src/stores/index.ts';
import type { SharedMapHandle } from '../../src/stores/index.ts';
import { checkHistory, describeHistory, step } from './linearizability.ts';
import type { Event, Operation, Value } from './linearizability.ts';
import { ACCOUNT_LAYOUT, decodeRecord, encodeRecord } from './workers/history-protocol.ts';
import type { HistoryBatch, HistorySpec, OpKind, OpResult, OpSpec } from './workers/history-protocol.ts';

const HISTORIES = Number(process.env.GOVMAP_LINEARIZABILITY_HISTORIES ?? 10_000);
const BATCH = 100;
// One worker per core of the 2-core CI machine: a third would mostly wait for a core, and the
// histories would overlap less, not more (measured: 3x fewer overlapping pairs with 3 workers).
const WORKERS = Number(process.env.GOVMAP_LINEARIZABILITY_WORKERS ?? 2);

// ------------------------------------------------------------------ the checker itself

const ev = (thread: number, call: number, ret: number, op: Operation, key = 'k'): Event => ({ key, op, call, ret, thread });

describe('linearizability checker', () => {
  test('accepts concurrent operations that have a valid order', () => {
    // set(1) overlaps a get that saw 1 and a get that saw absent: both orders exist.
    const history = [ev(0, 0, 5, { kind: 'set', value: 1n }), ev(1, 1, 2, { kind: 'get', output: null }), ev(2, 3, 4, { kind: 'get', output: 1n })];
    assert.equal(checkHistory(history).ok, true);
  });

  test('rejects a lost update: two overlapping adds of 1 to 0 both returning 1', () => {
    const history = [
      ev(0, 0, 1, { kind: 'set', value: 0n }),
      ev(1, 2, 5, { kind: 'add', delta: 1n, output: 1n }),
      ev(2, 3, 6, { kind: 'add', delta: 1n, output: 1n }),
    ];
    const result = checkHistory(history);
    assert.equal(result.ok, false);
    assert.equal(result.key, 'k');
  });

  test('rejects a stale read after a completed write', () => {
    const history = [ev(0, 0, 1, { kind: 'set', value: 1n }), ev(0, 2, 3, { kind: 'set', value: 2n }), ev(1, 4, 5, { kind: 'get', output: 1n })];
    assert.equal(checkHistory(history).ok, false);
  });

  test('checks keys independently and names the failing one', () => {
    const history = [ev(0, 0, 1, { kind: 'set', value: 1n }, 'a'), ev(1, 2, 3, { kind: 'get', output: null }, 'b'), ev(1, 4, 5, { kind: 'get', output: 7n }, 'b')];
    const result = checkHistory(history);
    assert.equal(result.ok, false);
    assert.equal(result.key, 'b');
  });

  test('an operation that never returned may or may not have taken effect', () => {
    const took = [ev(0, 0, Infinity, { kind: 'set', value: 5n }), ev(1, 1, 2, { kind: 'get', output: 5n })];
    const didNot = [ev(0, 0, Infinity, { kind: 'set', value: 5n }), ev(1, 1, 2, { kind: 'get', output: null })];
    assert.equal(checkHistory(took).ok, true);
    assert.equal(checkHistory(didNot).ok, true);
  });

  test('agrees with a brute-force search on random small histories', () => {
    const opArb: fc.Arbitrary<Operation> = fc.oneof(
      fc.record({ kind: fc.constant('get' as const), output: fc.constantFrom<Value>(null, 0n, 1n, 2n) }),
      fc.record({ kind: fc.constant('set' as const), value: fc.constantFrom(0n, 1n, 2n) }),
      fc.record({ kind: fc.constant('add' as const), delta: fc.constantFrom(1n, -1n), output: fc.constantFrom<bigint | null>(null, 0n, 1n, 2n) }),
      fc.record({ kind: fc.constant('cas' as const), expected: fc.constantFrom<Value>(null, 0n, 1n), next: fc.constantFrom(1n, 2n), output: fc.boolean() }),
      fc.record({ kind: fc.constant('delete' as const), output: fc.boolean() }),
    );
    const historyArb = fc.array(fc.record({ op: opArb, start: fc.integer({ min: 0, max: 20 }), length: fc.integer({ min: 1, max: 8 }) }), { minLength: 1, maxLength: 6 }).map((items) =>
      items.map((item, i) => ev(i, item.start * 100 + i, (item.start + item.length) * 100 + i + 50, item.op)),
    );
    fc.assert(
      fc.property(historyArb, (history) => {
        assert.equal(checkHistory(history).ok, bruteForce(history));
      }),
      { numRuns: 2000 },
    );
  });
});

/** Tries every order of the operations consistent with real time. */
function bruteForce(history: readonly Event[]): boolean {
  const used = new Array<boolean>(history.length).fill(false);
  const search = (state: Value, done: number): boolean => {
    if (done === history.length) return true;
    for (let i = 0; i < history.length; i++) {
      if (used[i]) continue;
      // i may go next only if no other remaining operation returned before i was called.
      if (history.some((other, j) => !used[j] && j !== i && other.ret < history[i]!.call)) continue;
      const { ok, next } = step(state, history[i]!.op, history[i]!.ret === Infinity);
      if (!ok) continue;
      used[i] = true;
      if (search(next, done + 1)) return true;
      used[i] = false;
    }
    return false;
  };
  return search(null, 0);
}

// ------------------------------------------------------------------ the stores

interface Pool {
  run(batch: HistoryBatch): Promise<OpResult[][][]>;
  /** Read-cache counters of every worker's attachment, summed. */
  cacheStats(): Promise<{ hits: number; rereads: number; misses: number }>;
  close(): Promise<void>;
}

async function startPool(handle: SharedMapHandle, records: boolean, racy: boolean, supervise: (w: Worker) => void): Promise<Pool> {
  const sync = new SharedArrayBuffer(16);
  const workers = Array.from({ length: WORKERS }, (_, index) => {
    const worker = new Worker(new URL('./workers/history-worker.ts', import.meta.url), { workerData: { handle, records, sync, workers: WORKERS, index, racy } });
    supervise(worker);
    return worker;
  });
  await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  })));
  const ask = <T>(w: Worker, message: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onError = (error: Error): void => {
        w.off('message', onMessage);
        reject(error);
      };
      const onMessage = (reply: T): void => {
        w.off('error', onError);
        resolve(reply);
      };
      w.once('message', onMessage);
      w.once('error', onError);
      w.postMessage(message);
    });
  return {
    cacheStats: async () => {
      const all = await Promise.all(workers.map((w) => ask<{ hits: number; rereads: number; misses: number }>(w, 'cache-stats')));
      return all.reduce((sum, s) => ({ hits: sum.hits + s.hits, rereads: sum.rereads + s.rereads, misses: sum.misses + s.misses }), { hits: 0, rereads: 0, misses: 0 });
    },
    run: (batch) =>
      Promise.all(
        workers.map(
          (w) =>
            new Promise<OpResult[][]>((resolve, reject) => {
              const onError = (error: Error): void => {
                w.off('message', onMessage);
                reject(error);
              };
              const onMessage = (reply: OpResult[][]): void => {
                w.off('error', onError);
                resolve(reply);
              };
              w.once('message', onMessage);
              w.once('error', onError);
              w.postMessage(batch);
            }),
        ),
      ),
    close: async () => {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

function toOperation(spec: OpSpec, result: OpResult, records: boolean): Operation {
  const value = (n: bigint): Exclude<Value, null> => (records ? encodeRecord(decodeRecord(n)) : n);
  switch (spec.kind) {
    case 'get':
      return { kind: 'get', output: result.output as Value };
    case 'set':
      return { kind: 'set', value: value(spec.a) };
    case 'add':
      return { kind: 'add', delta: spec.a, output: result.output as bigint | null };
    case 'cas':
      return { kind: 'cas', expected: spec.b < 0n ? null : value(spec.b), next: value(spec.a), output: result.output as boolean };
    case 'delete':
      return { kind: 'delete', output: result.output as boolean };
    case 'cad':
      return { kind: 'cad', expected: value(spec.b), output: result.output as boolean };
  }
}

function historyArb(records: boolean): fc.Arbitrary<Omit<HistorySpec, 'id'>> {
  // Reads weigh three in nine (int64): a thread reads a key again across the other thread's
  // writes of it, so cached reads (hits and re-reads) are checked as well as table reads.
  const kinds: OpKind[] = records ? ['get', 'get', 'get', 'set', 'cas', 'cas', 'delete', 'cad'] : ['get', 'get', 'get', 'set', 'add', 'add', 'cas', 'delete', 'cad'];
  const op: fc.Arbitrary<OpSpec> = fc.record({
    kind: fc.constantFrom(...kinds),
    key: fc.integer({ min: 0, max: 2 }),
    a: fc.bigInt({ min: 1n, max: 3n }),
    b: fc.bigInt({ min: -1n, max: 3n }),
    // Up to a few microseconds between operations, so threads woken a little apart still overlap.
    pause: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 5000 })),
  });
  return fc.record({ threads: fc.array(fc.array(op, { minLength: 1, maxLength: 12 }), { minLength: WORKERS, maxLength: WORKERS }) });
}

interface RunReport {
  histories: number;
  operations: number;
  /** Pairs of operations of different threads on the same key whose intervals overlap. */
  overlapping: number;
  steps: number;
  violation: string | null;
}

let nextId = 0; // history ids, hence keys, are unique across runs on one store

/**
 * Runs at least `total` generated histories through the pool, and more (up to 5 times as many)
 * until `minOverlapping` pairs of operations of different threads overlapped on a key: on a busy
 * machine the threads overlap less, and a proof without concurrency would prove nothing.
 */
async function runHistories(pool: Pool, records: boolean, total: number, minOverlapping: number): Promise<RunReport> {
  const report: RunReport = { histories: 0, operations: 0, overlapping: 0, steps: 0, violation: null };
  const chunk = Math.max(BATCH, Math.min(total, 2000));
  while (report.violation === null && (report.histories < total || (report.overlapping < minOverlapping && report.histories < 5 * total))) {
    await runChunk(pool, records, chunk, report);
  }
  return report;
}

async function runChunk(pool: Pool, records: boolean, total: number, report: RunReport): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(historyArb(records), { minLength: BATCH, maxLength: BATCH }), async (drafts) => {
      const histories: HistorySpec[] = drafts.map((d) => ({ ...d, id: nextId++ }));
      const perWorker = await pool.run({ histories });
      const events: Event[] = [];
      histories.forEach((history, h) => {
        history.threads.forEach((ops, thread) => {
          ops.forEach((spec, i) => {
            const result = perWorker[thread]![h]![i]!;
            events.push({ key: `h${history.id}:k${spec.key}`, op: toOperation(spec, result, records), call: result.call, ret: result.ret, thread });
          });
        });
      });
      report.histories += histories.length;
      report.operations += events.length;
      report.overlapping += countOverlaps(events);
      const result = checkHistory(events);
      report.steps += result.steps;
      if (!result.ok) {
        report.violation ??= `key ${result.key} has no linearization:\n${describeHistory(result.history!)}`;
        return false;
      }
      return true;
    }),
    { numRuns: Math.ceil(total / BATCH), endOnFailure: true },
  ).catch((error: unknown) => {
    if (report.violation === null) throw error;
  });
}

function countOverlaps(events: readonly Event[]): number {
  const byKey = new Map<string, Event[]>();
  for (const e of events) {
    const list = byKey.get(e.key) ?? [];
    list.push(e);
    byKey.set(e.key, list);
  }
  let overlaps = 0;
  for (const list of byKey.values()) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (a.thread !== b.thread && a.call < b.ret && b.call < a.ret) overlaps++;
      }
    }
  }
  return overlaps;
}

describe('shared-memory stores are linearizable', () => {
  test(`SharedInt64Store: ${HISTORIES} random histories from ${WORKERS} workers (get/set/add/cas/delete/cad), zero violations`, async (t) => {
    // Starts tiny so the table grows (and entries are freed and reused) while histories run.
    const store = SharedInt64Store.create({ initialCapacity: 16, maxKeyLength: 16 });
    const pool = await startPool(store.handle, false, false, (w) => store.supervise(w));
    try {
      const report = await runHistories(pool, false, HISTORIES, 200);
      const cache = await pool.cacheStats();
      t.diagnostic(`${report.histories} histories, ${report.operations} operations, ${report.overlapping} overlapping pairs, ${report.steps} search steps, ${store.stats().growths} table growths`);
      t.diagnostic(`reads answered by the workers' read caches: ${cache.hits} hits, ${cache.rereads} re-reads of a changed entry, ${cache.misses} through the table`);
      assert.equal(report.violation, null, report.violation ?? '');
      assert.ok(report.histories >= HISTORIES);
      // Concurrency really happened: otherwise "linearizable" would be vacuous.
      assert.ok(report.overlapping >= 200, `only ${report.overlapping} overlapping operation pairs in ${report.histories} histories`);
      assert.ok(store.stats().growths > 0, 'the table grew during the run');
      // The histories checked cached reads, not only table reads: repeated reads of a key by one
      // thread, across writes of it by the other.
      // (Each history has fresh keys, so most first reads go through the table: ~1,400 hits and
      // ~430 re-reads per 10,000 histories measured.)
      assert.ok(cache.hits >= HISTORIES / 40 && cache.rereads >= HISTORIES / 200, `too few cached reads: ${JSON.stringify(cache)}`);
      assert.deepEqual(store.checkIntegrity().problems, []);
    } finally {
      await pool.close();
      store.close();
    }
  });

  test(`SharedRecordStore: ${Math.ceil(HISTORIES / 5)} random histories of two-field records, zero violations (no torn record)`, async (t) => {
    const store = SharedRecordStore.create({ layout: ACCOUNT_LAYOUT, initialCapacity: 16, maxKeyLength: 16 });
    const pool = await startPool(store.handle, true, false, (w) => store.supervise(w));
    try {
      const report = await runHistories(pool, true, Math.ceil(HISTORIES / 5), 50);
      const cache = await pool.cacheStats();
      t.diagnostic(`${report.histories} histories, ${report.operations} operations, ${report.overlapping} overlapping pairs; read cache: ${cache.hits} hits, ${cache.misses} through the table`);
      assert.equal(report.violation, null, report.violation ?? '');
      assert.ok(report.overlapping >= 50, `only ${report.overlapping} overlapping operation pairs in ${report.histories} histories`);
      assert.ok(cache.hits >= HISTORIES / 200, `too few cached record reads: ${JSON.stringify(cache)}`);
      assert.deepEqual(store.checkIntegrity().problems, []);
    } finally {
      await pool.close();
      store.close();
    }
  });

  test('negative control: the same pipeline catches a racy read-then-write add', async (t) => {
    const store = SharedInt64Store.create({ initialCapacity: 16, maxKeyLength: 16 });
    const pool = await startPool(store.handle, false, true, (w) => store.supervise(w));
    try {
      const report = await runHistories(pool, false, 5000, 0);
      t.diagnostic(`violation found after ${report.histories} histories`);
      assert.notEqual(report.violation, null, 'a non-atomic add must produce a history with no linearization');
    } finally {
      await pool.close();
      store.close();
    }
  });
});

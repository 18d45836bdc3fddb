/**
 * Runs batches of operation lists against a shared-memory store attached from `workerData`,
 * stamping each call and return from a shared atomic clock, and posts back what happened.
 * All workers start each history together at a barrier so their operations overlap.
 *
 * `racy: true` replaces `add` by a non-atomic read-then-write: the negative control that shows
 * the recording and the checker do catch a lost update.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store, SharedRecordStore } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';
import { ACCOUNT_LAYOUT, encodeRecord, decodeRecord } from './history-protocol.ts';
import type { HistoryBatch, OpResult, OpSpec } from './history-protocol.ts';

interface Data {
  readonly handle: SharedMapHandle;
  readonly records: boolean;
  readonly sync: SharedArrayBuffer;
  readonly workers: number;
  readonly index: number;
  readonly racy: boolean;
}

const data = workerData as Data;
const CLOCK = 0;
const BARRIER_COUNT = 1;
const BARRIER_GENERATION = 2;
const sync = new Int32Array(data.sync);
const int64 = data.records ? null : SharedInt64Store.attach(data.handle);
const records = data.records ? SharedRecordStore.attach(data.handle, ACCOUNT_LAYOUT) : null;

function barrier(): void {
  const generation = Atomics.load(sync, BARRIER_GENERATION);
  if (Atomics.add(sync, BARRIER_COUNT, 1) === data.workers - 1) {
    Atomics.store(sync, BARRIER_COUNT, 0);
    Atomics.add(sync, BARRIER_GENERATION, 1);
    Atomics.notify(sync, BARRIER_GENERATION);
    return;
  }
  for (let spins = 0; Atomics.load(sync, BARRIER_GENERATION) === generation; spins++) {
    if (spins > 1_000_000) Atomics.wait(sync, BARRIER_GENERATION, generation, 1);
  }
}

let sink = 0;
function pause(iterations: number): void {
  for (let i = 0; i < iterations; i++) sink = (sink + i) | 0;
}

function perform(key: string, op: OpSpec): OpResult['output'] {
  if (int64 !== null) {
    switch (op.kind) {
      case 'get':
        return int64.get(key) ?? null;
      case 'set':
        int64.set(key, op.a);
        return null;
      case 'add':
        if (data.racy) {
          const current = int64.get(key);
          if (current === undefined) return null;
          pause(op.pause + 50);
          int64.set(key, current + op.a);
          return current + op.a;
        }
        return int64.add(key, op.a) ?? null;
      case 'cas':
        return int64.compareAndSwap(key, op.b < 0n ? undefined : op.b, op.a);
      case 'delete':
        return int64.delete(key);
      case 'cad':
        return int64.compareAndDelete(key, op.b);
    }
  }
  const store = records!;
  switch (op.kind) {
    case 'get': {
      const value = store.get(key);
      return value === undefined ? null : encodeRecord(value);
    }
    case 'set':
      store.set(key, decodeRecord(op.a));
      return null;
    case 'cas':
      return store.compareAndSwap(key, op.b < 0n ? undefined : decodeRecord(op.b), decodeRecord(op.a));
    case 'delete':
      return store.delete(key);
    case 'cad':
      return store.compareAndDelete(key, decodeRecord(op.b));
    default:
      throw new Error(`records have no ${op.kind}`);
  }
}

parentPort!.on('message', (batch: HistoryBatch | 'cache-stats') => {
  if (batch === 'cache-stats') {
    // How many of this thread's reads its read cache answered (hits) or re-read from the entry a
    // stale cache entry named (rereads): the test requires both, so cached reads were checked too.
    parentPort!.postMessage((int64 ?? records!).stats().readCache);
    return;
  }
  const out: OpResult[][] = [];
  for (const history of batch.histories) {
    const mine = history.threads[data.index] ?? [];
    const results: OpResult[] = [];
    barrier();
    for (const op of mine) {
      pause(op.pause);
      const key = `h${history.id}:k${op.key}`;
      const call = Atomics.add(sync, CLOCK, 1);
      const output = perform(key, op);
      const ret = Atomics.add(sync, CLOCK, 1);
      results.push({ call, ret, output });
    }
    out.push(results);
  }
  parentPort!.postMessage(out);
});
parentPort!.postMessage('ready');
if (sink === 42) console.log(sink);

/**
 * Recovery of workers that die together, or die while recovering another: the white-box state a
 * killed worker leaves (the buffer's documented format, as in shared-memory-cache.test.ts) is
 * played by the test in the slots of real idle workers, which are then terminated.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SharedInt64Store } from '../../src/stores/index.ts';
import { hashKey } from '../../src/stores/shared-memory/hash.ts';
import {
  BUCKET_WORDS,
  B_LOCK,
  B_NEXT,
  B_REFS,
  B_SEQ,
  B_TAGS,
  E_VALUE,
  HEADER_WORDS,
  H_ALLOC_LOCK,
  H_SEED0,
  H_SEED1,
  H_TABLE,
  O_COUNT,
  O_INCARNATION,
  O_INTENT_BUCKET,
  O_INTENT_COUNT,
  O_INTENT_FREE,
  O_STATE,
  O_THREAD_ID,
  OWNER_DEAD,
  OWNER_WORDS,
  SLOTS_PER_BUCKET,
  TABLE_HEADER_WORDS,
  T_MASK,
  E_VERSION_REF_FROM_END,
  H_ENTRY_WORDS,
} from '../../src/stores/shared-memory/layout.ts';

const idleWorker = new URL('./workers/idle-worker.ts', import.meta.url);

async function startIdle(store: SharedInt64Store): Promise<{ worker: Worker; exited: Promise<unknown>; slot: number; ownerId: number }> {
  const worker = new Worker(idleWorker, { workerData: { handle: store.handle } });
  // Listening before supervise(): if its listener threw, the ones after it would never run.
  const exited = once(worker, 'exit');
  store.supervise(worker);
  await once(worker, 'message');
  const i32 = new Int32Array(store.handle.buffer, 0, HEADER_WORDS + 64 * OWNER_WORDS);
  for (let slot = 0; slot < 64; slot++) {
    const base = HEADER_WORDS + slot * OWNER_WORDS;
    if (Atomics.load(i32, base + O_THREAD_ID) === worker.threadId) return { worker, exited, slot, ownerId: (Atomics.load(i32, base + O_INCARNATION) << 10) | (slot + 1) };
  }
  throw new Error('the worker holds no owner slot');
}

/** Where `key` lives (white box): its root bucket, entry and version word. */
function locate(store: SharedInt64Store, key: string): { i32: Int32Array; root: number; ref: number; versionWord: number } {
  const i32 = new Int32Array(store.handle.buffer, 0, store.handle.buffer.byteLength >> 2);
  const hash = hashKey(key, i32[H_SEED0]!, i32[H_SEED1]!);
  const table = i32[H_TABLE]!;
  const root = table + TABLE_HEADER_WORDS + (hash & i32[table + T_MASK]!) * BUCKET_WORDS;
  for (let bucket = root; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
    for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
      const ref = i32[bucket + B_REFS + slot]!;
      if (ref === 0 || i32[ref]! !== key.length) continue;
      let same = true;
      for (let c = 0; c < key.length; c++) {
        const word = i32[ref + E_VALUE + 2 + (c >> 1)]!;
        if (((c & 1) === 0 ? word & 0xffff : word >>> 16) !== key.charCodeAt(c)) same = false;
      }
      if (same) return { i32, root, ref, versionWord: i32[ref + i32[H_ENTRY_WORDS]! - E_VERSION_REF_FROM_END]! };
    }
  }
  throw new Error(`${key} not found`);
}

describe('shared-memory recovery when several workers die', () => {
  test('two supervised workers die at once, one mid-delete, one inside the allocator: the process survives, both are recovered', { timeout: 30_000 }, async () => {
    const store = SharedInt64Store.create({ maxKeyLength: 16, lockTimeoutMs: 200 });
    const deleting = await startIdle(store);
    const allocating = await startIdle(store);
    store.set('gone', 1n);
    store.set('kept', 2n);
    const at = locate(store, 'gone');
    const { i32 } = at;
    // What `delete('gone')` leaves when it dies after unlinking, before #freeEntry (the steps of
    // remove() in order): bucket locked, intent recorded, version odd, unlinked, SEQ moved, count down.
    const owner = HEADER_WORDS + deleting.slot * OWNER_WORDS;
    const countBefore = i32[owner + O_COUNT]!;
    i32[at.root + B_LOCK] = deleting.ownerId;
    i32[owner + O_INTENT_COUNT] = countBefore;
    i32[owner + O_INTENT_FREE] = at.ref;
    i32[owner + O_INTENT_BUCKET] = at.root;
    Atomics.add(i32, at.versionWord, 1);
    for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
      if (i32[at.root + B_REFS + slot] === at.ref) {
        i32[at.root + B_REFS + slot] = 0;
        i32[at.root + B_TAGS + slot] = 0;
      }
    }
    Atomics.add(i32, at.root + B_SEQ, 2);
    i32[owner + O_COUNT] = countBefore - 1;
    // The other worker was killed inside the allocator (popping or pushing a free entry).
    Atomics.store(i32, H_ALLOC_LOCK, allocating.ownerId);

    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    // node:test reports an exception thrown by an 'exit' listener as uncaught: catch it here to assert on it.
    process.prependListener('uncaughtException', onUncaught);
    try {
      // A pool shutting down (or a crash taking two workers): both terminated together.
      const terminated = Promise.all([deleting.worker.terminate(), allocating.worker.terminate()]);
      await Promise.all([deleting.exited, allocating.exited]);
      // terminate() resolves from an 'exit' listener added after supervise()'s: a throwing
      // recovery left it pending for ever (a pool's shutdown hung).
      const settled = await Promise.race([terminated.then(() => true), new Promise((resolve) => setTimeout(resolve, 2000, false))]);
      assert.ok(settled, 'worker.terminate() resolved');
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
    assert.deepEqual(uncaught.map(String), [], 'recovery run by supervise() never throws out of the exit listener');
    assert.equal(store.get('gone'), undefined);
    assert.equal(store.get('kept'), 2n);
    assert.equal(store.size, 1);
    store.set('gone', 3n); // neither the bucket nor the allocator is left locked
    assert.equal(store.get('gone'), 3n);
    assert.equal(store.stats().recoveries, 2);
    assert.deepEqual(store.checkIntegrity().problems, []);
    store.close();
  });
});

describe('shared-memory recovery of a worker killed inside clear()', () => {
  const clearer = `
    import { workerData, parentPort } from 'node:worker_threads';
    import { SharedInt64Store } from ${JSON.stringify(new URL('../../src/stores/index.ts', import.meta.url).href)};
    const store = SharedInt64Store.attach(workerData.handle);
    const go = new Int32Array(workerData.go);
    parentPort.postMessage('ready');
    Atomics.wait(go, 0, 0);
    store.clear();
    Atomics.store(go, 0, 2); // finished: the kill came too late
    setInterval(() => {}, 1000);
  `;

  test('clear() cut short by terminate(): size counts what is reachable, nothing leaks, a full map takes keys again', { timeout: 60_000 }, async (t) => {
    const keys = 100_000;
    const store = SharedInt64Store.create({ initialCapacity: keys, maxKeys: keys, maxKeyLength: 16 });
    let reachable = 0;
    let delay = 10;
    for (let round = 0; round < 8 && (reachable === 0 || reachable === keys); round++) {
      store.clear();
      for (let i = 0; i < keys; i++) store.set(`k${i}`, BigInt(i));
      const go = new Int32Array(new SharedArrayBuffer(4));
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(clearer)}`), { workerData: { handle: store.handle, go: go.buffer } });
      store.supervise(worker);
      await once(worker, 'message');
      const exited = once(worker, 'exit');
      Atomics.store(go, 0, 1);
      Atomics.notify(go, 0);
      await new Promise((resolve) => setTimeout(resolve, delay));
      await worker.terminate();
      await exited;
      await new Promise((resolve) => setImmediate(resolve));
      reachable = store.snapshot().length;
      t.diagnostic(`round ${round}: killed after ${delay} ms, ${reachable} of ${keys} keys left`);
      // Too late (cleared) or too early (not started): aim again.
      delay = Atomics.load(go, 0) === 2 || reachable === 0 ? Math.max(1, delay / 2) : delay * 2;
    }
    assert.ok(reachable > 0 && reachable < keys, 'the kill landed inside clear()');
    assert.equal(store.size, reachable, 'size counts the keys still reachable');
    assert.deepEqual(store.checkIntegrity().problems, []);
    store.set('one-more', 1n); // before: SharedMapFullError, the map "held" maxKeys keys
    store.clear();
    assert.equal(store.size, 0);
    // The entries the killed clear() unlinked were freed: the whole population fits again.
    for (let i = 0; i < keys; i++) store.set(`k${i}`, BigInt(i));
    assert.equal(store.size, keys);
    assert.deepEqual(store.checkIntegrity().problems, []);
    store.close();
  });
});

describe('shared-memory recovery raced by two writers', () => {
  const writer = `
    import { workerData, parentPort } from 'node:worker_threads';
    import { SharedInt64Store } from ${JSON.stringify(new URL('../../src/stores/index.ts', import.meta.url).href)};
    const store = SharedInt64Store.attach(workerData.handle);
    const go = new Int32Array(workerData.go);
    Atomics.add(go, 1, 1);
    while (Atomics.load(go, 0) === 0) {} // start together
    let error = null;
    try { store.set(workerData.key, 7n); } catch (e) { error = String(e); }
    store.close();
    parentPort.postMessage(error);
  `;

  test('two workers meet the lock of an owner reported dead at once: the loser waits for the recovery, it does not release the lock', { timeout: 120_000 }, async (t) => {
    const ROUNDS = 30;
    for (let round = 0; round < ROUNDS; round++) {
      const live = SharedInt64Store.create({ maxKeyLength: 16, initialCapacity: 8192, lockTimeoutMs: 5000 }); // owner slot 0
      const dead = SharedInt64Store.attach(live.handle); // owner slot 1
      // A free list to walk: settling the dead owner's allocator steps takes a few microseconds.
      for (let i = 0; i < 5000; i++) live.set(`f${i}`, 1n);
      for (let i = 0; i < 5000; i++) live.delete(`f${i}`);
      dead.set('gone', 1n);
      const at = locate(live, 'gone');
      const { i32 } = at;
      const mask = i32[i32[H_TABLE]! + T_MASK]!;
      const bucketOf = (key: string): number => hashKey(key, i32[H_SEED0]!, i32[H_SEED1]!) & mask;
      const keys: string[] = [];
      for (let n = 0; keys.length < 2; n++) if (bucketOf(`x${n}`) === bucketOf('gone')) keys.push(`x${n}`);
      // `dead.delete('gone')` cut short after unlinking, before its count went down, while it also
      // held the allocator; reported dead (what recoverThread does first), not recovered yet.
      const owner = HEADER_WORDS + 1 * OWNER_WORDS;
      const id = (i32[owner + O_INCARNATION]! << 10) | 2;
      const countBefore = i32[owner + O_COUNT]!;
      i32[at.root + B_LOCK] = id;
      i32[owner + O_INTENT_COUNT] = countBefore;
      i32[owner + O_INTENT_FREE] = at.ref;
      i32[owner + O_INTENT_BUCKET] = at.root;
      Atomics.add(i32, at.versionWord, 1);
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[at.root + B_REFS + slot] === at.ref) {
          i32[at.root + B_REFS + slot] = 0;
          i32[at.root + B_TAGS + slot] = 0;
        }
      }
      Atomics.add(i32, at.root + B_SEQ, 2);
      Atomics.store(i32, H_ALLOC_LOCK, id);
      Atomics.store(i32, owner + O_STATE, OWNER_DEAD);

      const go = new Int32Array(new SharedArrayBuffer(8));
      const workers = keys.map((key) => new Worker(new URL(`data:text/javascript,${encodeURIComponent(writer)}`), { workerData: { handle: live.handle, go: go.buffer, key } }));
      const replies = workers.map((w) => once(w, 'message'));
      const exits = workers.map((w) => once(w, 'exit'));
      while (Atomics.load(go, 1) < workers.length) await new Promise((resolve) => setTimeout(resolve, 1));
      Atomics.store(go, 0, 1);
      const errors = (await Promise.all(replies)).map(([error]) => error as string | null);
      await Promise.all(exits);
      assert.deepEqual(errors, [null, null], `round ${round}: both writes went through`);
      assert.equal(live.get('gone'), undefined);
      for (const key of keys) assert.equal(live.get(key), 7n);
      assert.deepEqual(live.checkIntegrity().problems, [], `round ${round}: the dead owner's delete was settled (size ${live.size})`);
      assert.equal(live.size, 2);
      live.close();
      if (round === ROUNDS - 1) t.diagnostic(`${ROUNDS} rounds clean`);
    }
  });
});

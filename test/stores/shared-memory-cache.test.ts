/**
 * The per-thread read cache of the shared-memory stores (SharedTable invariants 7-10): a cached
 * read never returns a value another thread has replaced, deleted or torn; slot reuse, growth
 * and recovery of a dead writer keep it right. Each attachment has its own cache, so two
 * attachments in one thread behave as two threads; one test uses a real worker. The
 * linearizability test (shared-memory-linearizability.test.ts) runs with the cache on and
 * checks that its histories were answered by cached reads too.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ConfigurationError } from '../../src/map/index.ts';
import { SharedInt64Store, SharedRecordStore, SharedStoreClosedError } from '../../src/stores/index.ts';
import { hashKey } from '../../src/stores/shared-memory/hash.ts';
import {
  BUCKET_WORDS,
  B_LOCK,
  B_NEXT,
  B_REFS,
  B_SEQ,
  B_TAGS,
  E_HASH,
  H_FREE_HEAD,
  O_COUNT,
  O_INTENT_BUCKET,
  O_INTENT_COUNT,
  O_INTENT_FREE,
  E_VALUE,
  E_VERSION_REF_FROM_END,
  HEADER_WORDS,
  H_ENTRY_WORDS,
  H_SEED0,
  H_SEED1,
  H_TABLE,
  O_INCARNATION,
  OWNER_WORDS,
  SLOTS_PER_BUCKET,
  TABLE_HEADER_WORDS,
  T_MASK,
  VERSION_RETIRE_AT,
} from '../../src/stores/shared-memory/layout.ts';

/** White box (the buffer's documented format): where `key` lives, its root bucket and version word. */
function locate(store: SharedInt64Store, key: string): { i32: Int32Array; i64: BigInt64Array; root: number; ref: number; versionWord: number } {
  const buffer = store.handle.buffer;
  const i32 = new Int32Array(buffer, 0, buffer.byteLength >> 2);
  const i64 = new BigInt64Array(buffer, 0, buffer.byteLength >> 3);
  const hash = hashKey(key, i32[H_SEED0]!, i32[H_SEED1]!);
  const table = i32[H_TABLE]!;
  const root = table + TABLE_HEADER_WORDS + (hash & i32[table + T_MASK]!) * BUCKET_WORDS;
  for (let bucket = root; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
    for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
      const ref = i32[bucket + B_REFS + slot]!;
      if (ref === 0 || i32[ref]! !== key.length) continue;
      // int64 entries: [key length, hash][value: 2 words][key: 2 UTF-16 units per word]...
      let same = true;
      for (let c = 0; c < key.length; c++) {
        const word = i32[ref + E_VALUE + 2 + (c >> 1)]!;
        if (((c & 1) === 0 ? word & 0xffff : word >>> 16) !== key.charCodeAt(c)) same = false;
      }
      if (same) return { i32, i64, root, ref, versionWord: i32[ref + i32[H_ENTRY_WORDS]! - E_VERSION_REF_FROM_END]! };
    }
  }
  throw new Error(`${key} not found`);
}

describe('read cache: a cached read never returns a replaced value', () => {
  test('a hit returns the same bigint without touching the table; another attachment\'s write is seen at once', () => {
    const writer = SharedInt64Store.create();
    const reader = SharedInt64Store.attach(writer.handle);
    writer.set('acct-1', 100n);
    const first = reader.get('acct-1');
    assert.equal(first, 100n);
    assert.equal(reader.stats().readCache.misses, 1);
    assert.equal(reader.get('acct-1'), first);
    assert.equal(reader.stats().readCache.hits, 1, 'the second read was answered by the cache');
    writer.set('acct-1', 150n);
    assert.equal(reader.get('acct-1'), 150n, 'a completed write by another thread is never hidden');
    assert.equal(reader.stats().readCache.rereads, 1, 'the stale entry was re-read from the entry it names, without hashing');
    assert.equal(reader.get('acct-1'), 150n);
    assert.equal(reader.stats().readCache.hits, 2);
    writer.add('acct-1', -50n);
    assert.equal(reader.get('acct-1'), 100n);
    assert.equal(writer.compareAndSwap('acct-1', 100n, 7n), true);
    assert.equal(reader.get('acct-1'), 7n);
    assert.equal(reader.has('acct-1'), true);
    writer.delete('acct-1');
    assert.equal(reader.get('acct-1'), undefined, 'a deleted key is not served from the cache');
    assert.equal(reader.has('acct-1'), false);
    writer.close();
    reader.close();
  });

  test('a completed write by another worker is never hidden by a stale cached value (real worker)', async () => {
    const store = SharedInt64Store.create({ maxKeyLength: 16 });
    store.set('hot', 0n);
    store.set('steady', 42n);
    const progress = new SharedArrayBuffer(4);
    const seen = new Int32Array(progress);
    const writes = 3000;
    const worker = new Worker(new URL('./workers/cache-writer.ts', import.meta.url), { workerData: { handle: store.handle, progress, key: 'hot', writes } });
    store.supervise(worker);
    const exited = new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', () => resolve());
    });
    let last = 0n;
    let reads = 0;
    let repeats = 0;
    for (;;) {
      const published = Atomics.load(seen, 0); // writes 1..published have returned
      const value = store.get('hot')!;
      reads++;
      assert.ok(value >= BigInt(published), `read ${value} after write ${published} had completed: a stale cached value`);
      assert.ok(value >= last, `values went back from ${last} to ${value}`);
      if (value === last) repeats++;
      last = value;
      assert.equal(store.get('steady'), 42n);
      if (published === writes && value === BigInt(writes)) break;
    }
    await exited;
    const cache = store.stats().readCache;
    assert.ok(repeats > 0, 'the reader read some value more than once (cached reads between writes)');
    assert.ok(cache.hits > reads / 2, `cached reads answered ${cache.hits} of ${2 * reads} reads`);
    assert.ok(cache.rereads > 0, 'values changed under cached entries were re-read');
    assert.deepEqual(store.checkIntegrity().problems, []);
    store.close();
  });

  test('slot reuse: a deleted key whose entry now holds another key is a miss, never the other key\'s value', () => {
    const writer = SharedInt64Store.create({ maxKeyLength: 16 });
    const reader = SharedInt64Store.attach(writer.handle);
    writer.set('acct-a', 1n);
    assert.equal(reader.get('acct-a'), 1n);
    assert.equal(reader.get('acct-a'), 1n); // cached
    const before = locate(writer, 'acct-a');
    const bytesBefore = writer.stats().bytesUsed;
    writer.delete('acct-a');
    writer.set('acct-b', 2n); // takes the freed entry (and its version word) from the free list
    const reused = locate(writer, 'acct-b');
    assert.equal(reused.ref, before.ref, 'the entry was reused for another key');
    assert.equal(writer.stats().bytesUsed, bytesBefore);
    assert.ok(Atomics.load(reused.i32, reused.versionWord) > Atomics.load(before.i32, before.versionWord) - 1, 'versions only grow');
    assert.equal(reader.get('acct-a'), undefined, 'the cached entry names an entry that holds another key now');
    assert.equal(reader.get('acct-b'), 2n);
    // The same key back in the same entry: the cache must show the new value, not the old one.
    writer.delete('acct-b');
    writer.set('acct-a', 3n);
    assert.equal(locate(writer, 'acct-a').ref, before.ref);
    assert.equal(reader.get('acct-a'), 3n);
    assert.equal(reader.get('acct-b'), undefined);
    assert.deepEqual(writer.checkIntegrity().problems, []);
    writer.close();
    reader.close();
  });

  test('growth: cached entries stay valid while the table doubles (entries do not move), later writes are seen', () => {
    const writer = SharedInt64Store.create({ initialCapacity: 16, maxKeyLength: 16 });
    const reader = SharedInt64Store.attach(writer.handle);
    for (let i = 0; i < 50; i++) writer.set(`k${i}`, BigInt(i));
    for (let i = 0; i < 50; i++) assert.equal(reader.get(`k${i}`), BigInt(i));
    const growthsBefore = writer.stats().growths;
    for (let i = 50; i < 5000; i++) writer.set(`k${i}`, BigInt(i)); // the buffer and the table grow
    assert.ok(writer.stats().growths > growthsBefore);
    const hitsBefore = reader.stats().readCache.hits;
    for (let i = 0; i < 50; i++) assert.equal(reader.get(`k${i}`), BigInt(i));
    assert.equal(reader.stats().readCache.hits - hitsBefore, 50, 'every cached key still validated after growth');
    for (let i = 0; i < 50; i++) writer.add(`k${i}`, 1000n);
    for (let i = 0; i < 5000; i++) assert.equal(reader.get(`k${i}`), BigInt(i < 50 ? i + 1000 : i));
    assert.deepEqual(reader.checkIntegrity().problems, []);
    writer.close();
    reader.close();
  });

  test('a writer that died inside an in-place write: the cached value is not served, recovery makes the version even', () => {
    for (const valueStored of [false, true]) {
      const first = SharedInt64Store.create(); // owner slot 0
      const dead = SharedInt64Store.attach(first.handle); // owner slot 1: dies mid-write
      const reader = SharedInt64Store.attach(first.handle); // owner slot 2: has the value cached
      first.set('acct', 1n);
      assert.equal(reader.get('acct'), 1n);
      assert.equal(reader.get('acct'), 1n);
      // What the dead writer left: the bucket locked by it, the version odd, maybe the new value.
      const at = locate(first, 'acct');
      at.i32[at.root + B_LOCK] = (at.i32[HEADER_WORDS + 1 * OWNER_WORDS + O_INCARNATION]! << 10) | 2;
      const version = Atomics.add(at.i32, at.versionWord, 1) + 1;
      if (valueStored) Atomics.store(at.i64, (at.ref + E_VALUE) >> 1, 2n);
      const expected = valueStored ? 2n : 1n;
      assert.equal(reader.get('acct'), expected, 'the read sees what the table holds, not the cache');
      // The worker is reported dead (supervise() does this on exit); the reader's own slot is spared.
      assert.ok(reader.recoverThread(0) >= 1);
      assert.equal(Atomics.load(at.i32, at.versionWord), version + 1, 'recovery made the version even, above the cached one');
      assert.equal(reader.get('acct'), expected);
      assert.deepEqual(reader.checkIntegrity().problems, []);
      reader.set('acct', 5n); // the lock was released
      assert.equal(reader.get('acct'), 5n);
      reader.close();
      void dead;
    }
  });
});

describe('read cache: versions never wrap', () => {
  test('an entry whose version is exhausted is retired: its key moves to a fresh entry, the old one is never reused', () => {
    const writer = SharedInt64Store.create({ maxKeyLength: 16 });
    const reader = SharedInt64Store.attach(writer.handle);
    writer.set('acct', 1n);
    assert.equal(reader.get('acct'), 1n);
    const old = locate(writer, 'acct');
    // As if the key had been written ~2^29 times (white box: the version word of its entry).
    Atomics.store(old.i32, old.versionWord, VERSION_RETIRE_AT);
    assert.equal(reader.get('acct'), 1n, 'a moved version is re-read, the value is unchanged');
    writer.set('acct', 2n);
    const moved = locate(writer, 'acct');
    assert.notEqual(moved.ref, old.ref, 'the write went to a fresh entry');
    assert.notEqual(moved.versionWord, old.versionWord);
    assert.equal(reader.get('acct'), 2n);
    assert.equal(Atomics.load(old.i32, old.versionWord) & 1, 1, 'the retired entry is odd (unlinked)');
    // The retired entry went to the free list; the allocator drops it instead of reusing it.
    writer.delete('acct');
    writer.set('x1', 10n);
    writer.set('x2', 20n);
    writer.set('x3', 30n);
    for (const key of ['x1', 'x2', 'x3']) assert.notEqual(locate(writer, key).ref, old.ref, `${key} did not get the retired entry`);
    assert.equal(reader.get('acct'), undefined);
    assert.equal(reader.get('x2'), 20n);
    assert.deepEqual(writer.checkIntegrity().problems, []);
    writer.close();
    reader.close();
  });
});

describe('recovery of a writer that died after freeing an entry', () => {
  test('an entry it pushed on the free list, since reused by another thread, is not freed a second time', () => {
    const live = SharedInt64Store.create({ maxKeyLength: 16 }); // owner slot 0
    const dead = SharedInt64Store.attach(live.handle); // owner slot 1
    const reader = SharedInt64Store.attach(live.handle, { readCacheKeys: 0 }); // owner slot 2, attached elsewhere in real life
    dead.set('gone', 1n);
    const at = locate(live, 'gone');
    const { i32 } = at;
    // Another key in another bucket, for the live thread to insert while 'gone's bucket is locked.
    const mask = i32[i32[H_TABLE]! + T_MASK]!;
    const rootOf = (key: string): number => hashKey(key, i32[H_SEED0]!, i32[H_SEED1]!) & mask;
    let other = 'other-0';
    for (let n = 1; rootOf(other) === rootOf('gone'); n++) other = `other-${n}`;
    // What `dead.delete('gone')` leaves when it dies after #freeEntry, before clearing its intent
    // (white box, the steps of remove() in order): bucket locked, intent recorded, version odd,
    // unlinked, SEQ moved, count down, pushed on the free list and marked freed (-ref).
    const owner = HEADER_WORDS + 1 * OWNER_WORDS;
    const countBefore = i32[owner + O_COUNT]!;
    i32[at.root + B_LOCK] = (i32[owner + O_INCARNATION]! << 10) | 2;
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
    i32[at.ref + E_HASH] = i32[H_FREE_HEAD]!;
    i32[H_FREE_HEAD] = at.ref;
    i32[owner + O_INTENT_FREE] = -at.ref;
    // Before anyone notices the death, the live thread reuses the freed entry.
    live.set(other, 5n);
    assert.equal(locate(live, other).ref, at.ref, 'the freed entry was reused');
    // Now the worker is reported dead (supervise() on exit). The reader's own slot is spared;
    // the live store's slot (same thread id here) is recovered too, harmlessly: it holds nothing.
    reader.recoverThread(0);
    assert.equal(reader.get('gone'), undefined);
    assert.equal(reader.get(other), 5n);
    reader.set('third', 7n);
    assert.notEqual(locate(live, 'third').ref, at.ref, 'the reused entry was not handed out again');
    assert.equal(reader.get(other), 5n, 'the other key kept its entry');
    assert.equal(reader.size, 2);
    assert.deepEqual(reader.checkIntegrity().problems, []);
    reader.close();
  });
});

describe('read cache: bounds and options', () => {
  test('only keys found enter it; it is emptied when full; readCacheKeys 0 turns it off', () => {
    const writer = SharedInt64Store.create({ maxKeyLength: 16 });
    const reader = SharedInt64Store.attach(writer.handle, { readCacheKeys: 4 });
    for (let i = 0; i < 100; i++) assert.equal(reader.get(`absent-${i}`), undefined);
    assert.equal(reader.stats().readCache.keys, 0, 'misses of absent keys are not cached: a client cannot fill it with keys nobody wrote');
    for (let i = 0; i < 10; i++) writer.set(`k${i}`, BigInt(i));
    for (let i = 0; i < 10; i++) assert.equal(reader.get(`k${i}`), BigInt(i));
    assert.ok(reader.stats().readCache.keys <= 4, 'never more than readCacheKeys');
    assert.equal(reader.stats().readCache.limit, 4);
    const off = SharedInt64Store.attach(writer.handle, { readCacheKeys: 0 });
    for (let r = 0; r < 3; r++) assert.equal(off.get('k1'), 1n);
    assert.deepEqual({ ...off.stats().readCache, misses: 0 }, { keys: 0, limit: 0, hits: 0, rereads: 0, misses: 0 });
    assert.throws(() => SharedInt64Store.attach(writer.handle, { readCacheKeys: -1 }), (e) => e instanceof ConfigurationError);
    assert.throws(() => SharedInt64Store.create({ readCacheKeys: 1.5 }), (e) => e instanceof ConfigurationError);
    // A closed attachment refuses reads even of keys it had cached.
    reader.close();
    assert.throws(() => reader.get('k9'), (e) => e instanceof SharedStoreClosedError && e.code === 'GOVMAP_SHARED_STORE_CLOSED');
    writer.close();
    off.close();
  });

  test('records: a hit is a new object each time (a caller changing it changes nothing else), and another thread\'s replace is seen', () => {
    const layout = { balance: 'int64', limit: 'int64' } as const;
    const writer = SharedRecordStore.create({ layout });
    const reader = SharedRecordStore.attach(writer.handle, layout);
    writer.set('a', { balance: 10n, limit: 5n });
    const one = reader.get('a')!;
    const two = reader.get('a')!;
    assert.equal(reader.stats().readCache.hits, 1);
    assert.notEqual(one, two);
    (two as { balance: bigint }).balance = 999n;
    assert.deepEqual(reader.get('a'), { balance: 10n, limit: 5n });
    writer.set('a', { balance: 11n, limit: 5n }); // copy-on-write: a new entry, the old one odd and freed
    assert.deepEqual(reader.get('a'), { balance: 11n, limit: 5n });
    writer.delete('a');
    assert.equal(reader.get('a'), undefined);
    assert.deepEqual(writer.checkIntegrity().problems, []);
    writer.close();
    reader.close();
  });
});

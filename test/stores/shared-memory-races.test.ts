/**
 * Races whose window is a few instructions wide, met by running more busy threads than cores:
 * the OS then preempts a thread at arbitrary points, and while it is off the CPU the others run
 * for a whole time slice. Each test runs for a bounded time and requires the race to have been
 * exercised (enough reads and writes), and checks one property a user would see broken:
 *
 * - a reader that found a key's entry reads that key's value, never that of another key which
 *   reused the entry after a delete (the seqlock validation, the SEQ bump of a delete, the
 *   second version load of a cached entry's re-read);
 * - a read that starts after another thread's read returned v never returns an older value
 *   (an in-place write makes the version odd before it stores the value, so no cached copy of
 *   the old value validates once the new one can be read from the table).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { SharedInt64Store } from '../../src/stores/index.ts';
import { CONTROL_WORDS, FOUND, READS, STOP, VIOLATIONS, WRITES } from './workers/race-worker.ts';
import type { Role } from './workers/race-worker.ts';

const workerUrl = new URL('./workers/race-worker.ts', import.meta.url);
/** Per test, at most (a violation ends it at once): 4 threads on a 2-core machine meet each race below within 1–2 s. */
const DURATION_MS = Number(process.env.GOVMAP_SHARED_RACE_MS ?? 4000);

interface Outcome {
  violations: string[];
  control: Int32Array;
}

/** Runs the threads for `ms` (stopping at the first violation), then stops and joins them. */
async function race(store: SharedInt64Store, threads: ReadonlyArray<{ role: Role; readCacheKeys?: number }>, ms: number): Promise<Outcome> {
  const control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
  const violations: string[] = [];
  const failures: unknown[] = [];
  const workers = await Promise.all(
    threads.map(async ({ role, readCacheKeys }) => {
      const worker = new Worker(workerUrl, { workerData: { role, handle: store.handle, control: control.buffer, readCacheKeys } });
      store.supervise(worker);
      worker.on('error', (error) => failures.push(error));
      worker.on('message', (message: unknown) => {
        if (typeof message === 'object' && message !== null && 'violation' in message) violations.push(String(message.violation));
      });
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      return worker;
    }),
  );
  const exited = workers.map((w) => new Promise((resolve) => w.once('exit', resolve)));
  const deadline = performance.now() + ms;
  while (performance.now() < deadline && Atomics.load(control, VIOLATIONS) === 0) await sleep(20);
  Atomics.store(control, STOP, 1);
  await Promise.all(exited);
  assert.deepEqual(failures, [], 'no thread failed');
  return { violations, control };
}

describe('shared-memory reads under preemption (more busy threads than cores)', () => {
  test('a key whose entry is reused by another key after a delete is never read as the other key', { timeout: 60_000 }, async (t) => {
    const store = SharedInt64Store.create({ initialCapacity: 16, maxKeyLength: 8 });
    try {
      const { violations, control } = await race(
        store,
        [{ role: 'reuse-writer' }, { role: 'reuse-reader', readCacheKeys: 0 }, { role: 'reuse-reader' }, { role: 'reuse-reader' }],
        DURATION_MS,
      );
      t.diagnostic(`${Atomics.load(control, WRITES)} writer cycles, ${Atomics.load(control, READS)} reads (${Atomics.load(control, FOUND)} found A)`);
      assert.deepEqual(violations, []);
      assert.equal(Atomics.load(control, VIOLATIONS), 0);
      assert.ok(Atomics.load(control, WRITES) >= 1000 && Atomics.load(control, FOUND) >= 1000, 'the writer and the readers really ran together');
      assert.deepEqual(store.checkIntegrity().problems, []);
    } finally {
      store.close();
    }
  });

  test('a read never returns a value older than one another thread has already read', { timeout: 60_000 }, async (t) => {
    const store = SharedInt64Store.create({ initialCapacity: 16, maxKeyLength: 8 });
    store.set('C', 0n); // present from the start: every read of it finds a value
    try {
      const { violations, control } = await race(
        store,
        [{ role: 'counter-writer' }, { role: 'table-reader', readCacheKeys: 0 }, { role: 'cache-reader' }, { role: 'cache-reader' }],
        DURATION_MS,
      );
      t.diagnostic(`${Atomics.load(control, WRITES)} writes, ${Atomics.load(control, READS)} checked reads`);
      assert.deepEqual(violations, []);
      assert.equal(Atomics.load(control, VIOLATIONS), 0);
      assert.ok(Atomics.load(control, WRITES) >= 1000 && Atomics.load(control, READS) >= 1000, 'the writer and the readers really ran together');
    } finally {
      store.close();
    }
  });
});

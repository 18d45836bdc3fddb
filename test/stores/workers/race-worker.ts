/**
 * Threads for the shared-memory race tests (test/stores/shared-memory-races.test.ts). More busy
 * threads than cores, so the OS preempts each of them at arbitrary instructions, including the
 * few between a reader's lookup and its validation, or between a writer's two steps: a race
 * whose window is a few nanoseconds wide is then met many times a second.
 *
 * Roles:
 * - `reuse-writer`: cycles set(A, 1), set(A, 3) (in place), delete(A), set(B, 2), set(B, 4),
 *   delete(B). A and B take turns in the same entry (the free list is LIFO).
 * - `reuse-reader`: reads A; it must be absent, 1 or 3 — never B's 2 or 4.
 * - `counter-writer`: sets C (present, 0) to 1, 2, 3, … (in-place int64 writes).
 * - `table-reader`: reads C with its read cache off and publishes each value it read.
 * - `cache-reader`: loads what was published, then reads C (read cache on): a read that starts
 *   after another read returned v must not return less than v (the writes only go up).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';

export const STOP = 0;
export const VIOLATIONS = 1;
export const PUBLISHED = 2;
/** Per role: work done (cycles or reads). */
export const WRITES = 3;
export const READS = 4;
export const FOUND = 5;
export const CONTROL_WORDS = 6;

export type Role = 'reuse-writer' | 'reuse-reader' | 'counter-writer' | 'table-reader' | 'cache-reader';

interface Data {
  readonly role: Role;
  readonly handle: SharedMapHandle;
  readonly control: SharedArrayBuffer;
  readonly readCacheKeys?: number;
}

function run(data: Data, port: NonNullable<typeof parentPort>): void {
  const control = new Int32Array(data.control);
  const store = SharedInt64Store.attach(data.handle, data.readCacheKeys === undefined ? {} : { readCacheKeys: data.readCacheKeys });
  const violation = (message: string): void => {
    if (Atomics.add(control, VIOLATIONS, 1) === 0) port.postMessage({ violation: message });
  };
  port.postMessage('ready');
  let reads = 0;
  switch (data.role) {
    // The loops do their shared bookkeeping once per 256 operations: every instruction outside
    // the store's own code dilutes the chance that a preemption lands inside a race window.
    case 'reuse-writer':
      while (Atomics.load(control, STOP) === 0) {
        for (let i = 0; i < 256; i++) {
          store.set('A', 1n);
          store.set('A', 3n);
          store.delete('A');
          store.set('B', 2n);
          store.set('B', 4n);
          store.delete('B');
        }
        Atomics.add(control, WRITES, 256);
      }
      break;
    case 'reuse-reader':
      while (Atomics.load(control, STOP) === 0) {
        let found = 0;
        for (let i = 0; i < 256; i++) {
          const value = store.get('A');
          if (value === undefined) continue;
          if (value !== 1n && value !== 3n) violation(`A read as ${value}: the value of B, which reused A's entry`);
          found++;
        }
        Atomics.add(control, READS, 256);
        Atomics.add(control, FOUND, found);
      }
      break;
    case 'counter-writer':
      for (let v = 1; Atomics.load(control, STOP) === 0; ) {
        for (let i = 0; i < 256; i++, v++) store.set('C', BigInt(v));
        Atomics.store(control, WRITES, v - 1);
      }
      break;
    case 'table-reader':
      while (Atomics.load(control, STOP) === 0) {
        const value = store.get('C');
        if (value !== undefined) Atomics.store(control, PUBLISHED, Number(value));
      }
      break;
    case 'cache-reader':
      while (Atomics.load(control, STOP) === 0) {
        const before = Atomics.load(control, PUBLISHED);
        const value = store.get('C');
        if (value === undefined || value < BigInt(before)) violation(`C read as ${value} after another thread's read of it had returned ${before}`);
        if ((++reads & 255) === 0) Atomics.add(control, READS, 256);
      }
      break;
  }
  store.close();
  port.postMessage('done');
}

if (parentPort !== null) run(workerData as Data, parentPort);

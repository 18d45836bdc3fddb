/**
 * One role of the shared-memory stress test, run until the shared STOP word is set (or until
 * the test kills the thread):
 * - `counter`: governed +1 updates on the counted keys, bracketed by shared attempted / done
 *   counters, with an observer counting audited writes; record rewrites that keep a record's
 *   fields equal; inserts and deletes of its own keys (structural writes with intents).
 * - `reader`: checks, without end, that no counted value ever goes down, that fixed keys always
 *   hold their value (through every growth) and that no record is ever seen torn.
 * - `grower`: inserts (and deletes half of) fresh keys, so the table and the buffer keep growing.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { GovernedMap, reject } from '../../../src/map/index.ts';
import { SharedInt64Store, SharedRecordStore } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';

export const COUNTED = 32;
export const FIXED = 256;
export const RECORDS = 16;
export const TRIPLE = { a: 'int64', b: 'int64', c: 'int64' } as const;

/** Int32 words of the shared control buffer. */
export const STOP = 0;
export const VIOLATIONS = 1;
export const READS = 2;
export const ATTEMPTED = 16;
export const DONE = ATTEMPTED + COUNTED;
export const AUDITED = DONE + COUNTED;
export const CONTROL_WORDS = AUDITED + COUNTED;

interface Data {
  readonly role: 'counter' | 'reader' | 'grower';
  readonly balances: SharedMapHandle;
  readonly records: SharedMapHandle;
  readonly control: SharedArrayBuffer;
}

if (parentPort !== null && workerData !== null && (workerData as Partial<Data>).role !== undefined) run(workerData as Data);

function run(data: Data): void {
  const control = new Int32Array(data.control);
  const balances = SharedInt64Store.attach(data.balances);
  const records = SharedRecordStore.attach(data.records, TRIPLE);
  const stopped = (): boolean => Atomics.load(control, STOP) !== 0;
  const violation = (what: string): void => {
    if (Atomics.add(control, VIOLATIONS, 1) < 5) parentPort!.postMessage({ violation: what });
  };
  parentPort!.postMessage('ready');

  if (data.role === 'counter') {
    const counted = new GovernedMap<string, bigint>({
      name: 'counted',
      store: balances,
      validate: (_k, next) => (next >= 0n ? true : reject('BALANCE_UNDERFLOW')),
      updateRetries: 1000,
      observers: [
        {
          onOperation: (_map, op, key, outcome) => {
            if (op === 'STORE' && outcome === 'ok') Atomics.add(control, AUDITED + Number((key as string).slice(1)), 1);
          },
        },
      ],
    });
    let n = 0;
    while (!stopped()) {
      n++;
      const i = n % COUNTED;
      Atomics.add(control, ATTEMPTED + i, 1);
      counted.update(`c${i}`, (value) => value! + 1n);
      Atomics.add(control, DONE + i, 1);
      const r = n % RECORDS;
      records.set(`r${r}`, { a: BigInt(n), b: BigInt(n), c: BigInt(-n) });
      // Structural churn: each thread inserts and deletes keys of its own.
      const own = `t${threadId}-${n % 64}`;
      if (balances.has(own)) balances.delete(own);
      else balances.set(own, BigInt(n));
    }
  } else if (data.role === 'reader') {
    const last = new Array<bigint>(COUNTED).fill(0n);
    let reads = 0;
    while (!stopped()) {
      for (let i = 0; i < COUNTED; i++) {
        const value = balances.get(`c${i}`);
        if (value === undefined || value < last[i]!) violation(`counted c${i} read ${value} after ${last[i]}`);
        else last[i] = value;
      }
      for (let i = 0; i < FIXED; i++) {
        if (balances.get(`f${i}`) !== BigInt(i)) violation(`fixed f${i} read ${balances.get(`f${i}`)}`);
      }
      for (let i = 0; i < RECORDS; i++) {
        const record = records.get(`r${i}`);
        if (record === undefined || record.a !== record.b || record.c !== -record.a) violation(`record r${i} torn: ${JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
      }
      reads += COUNTED + FIXED + RECORDS;
      if ((reads & 0xfff) < COUNTED + FIXED + RECORDS) Atomics.store(control, READS, reads);
    }
    Atomics.store(control, READS, reads);
  } else {
    // First pass: 150,000 inserts (the table doubles many times); then alternate passes of
    // deletes and re-inserts (freed entries reused).
    for (let n = 0; !stopped(); n++) {
      const key = `g${threadId}-${n % 150_000}`;
      if (!balances.delete(key)) balances.set(key, BigInt(n));
    }
  }
  balances.close();
  records.close();
  parentPort!.postMessage('stopped');
}

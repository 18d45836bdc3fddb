/**
 * Writer for the shared-memory range test: sets keys r0, r1, … r(keys-1) to 1, then all of them
 * to 2, and so on, one `set` at a time in key order, until `control[STOP]` is set. At every
 * instant the values therefore read r0 >= r1 >= … >= r(keys-1) >= r0 - 1: a snapshot that breaks
 * this was not taken at one instant. Publishes the number of rounds written in `control[ROUNDS]`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';

export const STOP = 0;
export const ROUNDS = 1;

interface Data {
  readonly handle: SharedMapHandle;
  readonly control: SharedArrayBuffer;
  readonly keys: number;
}

if (parentPort !== null) {
  const data = workerData as Data;
  const store = SharedInt64Store.attach(data.handle);
  const control = new Int32Array(data.control);
  const names = Array.from({ length: data.keys }, (_, i) => `r${i}`);
  parentPort.postMessage('ready');
  for (let round = 1; Atomics.load(control, STOP) === 0; round++) {
    for (const name of names) store.set(name, BigInt(round));
    Atomics.store(control, ROUNDS, round);
  }
  store.close();
}

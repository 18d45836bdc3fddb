/**
 * Writer for the read-cache test: writes 1, 2, … `writes` to one key of a shared map and,
 * after each write has returned, publishes its number in `progress[0]`. A reader that sees
 * progress p and then reads the key must get at least p: a completed write is never hidden by
 * a stale cached value. Pauses between writes so the reader reads each value several times.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';

interface Data {
  readonly handle: SharedMapHandle;
  readonly progress: SharedArrayBuffer;
  readonly key: string;
  readonly writes: number;
}

const data = workerData as Data;
const store = SharedInt64Store.attach(data.handle);
const progress = new Int32Array(data.progress);
let sink = 0;
for (let v = 1; v <= data.writes; v++) {
  store.set(data.key, BigInt(v));
  Atomics.store(progress, 0, v);
  for (let i = 0; i < 2000; i++) sink = (sink + i) | 0;
}
store.close();
parentPort!.postMessage(sink);

/**
 * A worker that attaches to a shared map, says so, and then only waits: the test plays the part
 * of its half-done write (white box) and terminates it, as a crash mid-write would.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../../../src/stores/index.ts';
import type { SharedMapHandle } from '../../../src/stores/index.ts';

const store = SharedInt64Store.attach((workerData as { handle: SharedMapHandle }).handle);
parentPort!.postMessage('attached');
// Keeps the store (and its owner slot) alive until terminate().
setInterval(() => void store.size, 1000);
